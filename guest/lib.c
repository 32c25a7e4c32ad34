#include "guest/lib.h"

#include <stddef.h>

#include "guest/abi.h"

bool console_port_available;

_Static_assert(offsetof(struct line, buf) == offsetof(struct abi_console_msg, text), "line is a console message");

void line_flush(struct line *l)
{
	if (console_port_available) {
		/* Identity mapped and below 4 GiB: the address is the guest-physical one. */
		outl(ABI_PORT_CONSOLE, (uint32_t)(uintptr_t)l);
	} else {
		const char *s = l->buf;
		size_t n = l->len;
		__asm__ volatile("rep outsb" : "+S"(s), "+c"(n) : "d"((uint16_t)ABI_PORT_SERIAL) : "memory");
	}
	l->len = 0;
}

void line_str(struct line *l, const char *s)
{
	while (*s && l->len < sizeof(l->buf))
		l->buf[l->len++] = *s++;
}

void line_u64(struct line *l, uint64_t v)
{
	char tmp[20];
	int n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n && l->len < sizeof(l->buf))
		l->buf[l->len++] = tmp[--n];
}

void line_hex(struct line *l, uint64_t v)
{
	static const char digits[] = "0123456789abcdef";
	line_str(l, "0x");
	for (int shift = 60; shift >= 0; shift -= 4)
		if (l->len < sizeof(l->buf))
			l->buf[l->len++] = digits[(v >> shift) & 0xf];
}

void guest_exit(uint32_t status)
{
	outl(ABI_PORT_EXIT, status);
	for (;;)
		cpu_relax();
}

size_t str_len(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

bool str_eq(const char *s, size_t len, const char *word)
{
	size_t i = 0;
	for (; i < len; i++)
		if (word[i] != s[i])
			return false;
	return word[i] == '\0';
}

bool str_u64(const char *s, size_t len, uint64_t *v)
{
	uint64_t r = 0;
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9' || r > (UINT64_MAX - 9) / 10)
			return false;
		r = r * 10 + (uint64_t)(s[i] - '0');
	}
	*v = r;
	return true;
}

/* The compiler may emit calls to these four even in freestanding code. */
void *memset(void *d, int c, size_t n)
{
	unsigned char *p = d;
	while (n--)
		*p++ = (unsigned char)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	unsigned char *dp = d;
	const unsigned char *sp = s;
	while (n--)
		*dp++ = *sp++;
	return d;
}

void *memmove(void *d, const void *s, size_t n)
{
	unsigned char *dp = d;
	const unsigned char *sp = s;
	if (dp < sp)
		return memcpy(d, s, n);
	while (n--)
		dp[n] = sp[n];
	return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;
	for (size_t i = 0; i < n; i++)
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	return 0;
}
