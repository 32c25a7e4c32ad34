/* Freestanding helpers for the guest, usable at CPL0 and CPL3 (IOPL=3 allows port I/O). */
#ifndef GUEST_LIB_H
#define GUEST_LIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint32_t inl(uint16_t port)
{
	uint32_t v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline void cpu_relax(void)
{
	__asm__ volatile("pause" ::: "memory");
}

/* Use vmm's console port instead of COM1 (set once at boot when started by vmm). */
extern bool console_port_available;

/* A line being formatted; line_flush writes it to the console and empties it.
 * The length word lets the line go to vmm's console port as it is (abi_console_msg). */
struct line {
	uint32_t len;
	char buf[240];
};
void line_str(struct line *l, const char *s);
void line_u64(struct line *l, uint64_t v);
void line_hex(struct line *l, uint64_t v);
void line_flush(struct line *l);

/* End the VM with @status through the isa-debug-exit port. */
void __attribute__((noreturn)) guest_exit(uint32_t status);

size_t str_len(const char *s);
/* True when [s, s + len) equals the NUL-terminated @word. */
bool str_eq(const char *s, size_t len, const char *word);
/* Parse decimal digits in [s, s + len); false if empty, non-digit or overflowing. */
bool str_u64(const char *s, size_t len, uint64_t *v);

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);

#endif
