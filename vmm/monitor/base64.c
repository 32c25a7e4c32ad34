#include "vmm/monitor/base64.h"

#include <stdbool.h>
#include <string.h>

static const char base64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t base64_encoded_len(size_t len)
{
	return (len + 2) / 3 * 4;
}

void base64_encode(const uint8_t *in, size_t len, char *out)
{
	size_t i = 0;
	for (; i + 3 <= len; i += 3, out += 4) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[0] = base64_alphabet[v >> 18];
		out[1] = base64_alphabet[(v >> 12) & 63];
		out[2] = base64_alphabet[(v >> 6) & 63];
		out[3] = base64_alphabet[v & 63];
	}
	if (i < len) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
		out[0] = base64_alphabet[v >> 18];
		out[1] = base64_alphabet[(v >> 12) & 63];
		out[2] = i + 1 < len ? base64_alphabet[(v >> 6) & 63] : '=';
		out[3] = '=';
		out += 4;
	}
	*out = '\0';
}

static int base64_value(char c)
{
	const char *p = c ? strchr(base64_alphabet, c) : NULL;
	return p ? (int)(p - base64_alphabet) : -1;
}

long base64_decode(const char *in, uint8_t *out, size_t cap)
{
	size_t len = strlen(in), n = 0;
	if (len % 4)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		for (int k = 0; k < 4; k++)
			v[k] = base64_value(in[i + k]);
		bool last = i + 4 == len;
		int pad = last && in[i + 3] == '=' ? (in[i + 2] == '=' ? 2 : 1) : 0;
		if (v[0] < 0 || v[1] < 0 || (pad < 2 && v[2] < 0) || (pad < 1 && v[3] < 0))
			return -1;
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)(pad < 2 ? v[2] : 0) << 6 |
			     (uint32_t)(pad < 1 ? v[3] : 0);
		size_t bytes = 3 - (size_t)pad;
		if (n + bytes > cap)
			return -1;
		out[n++] = (uint8_t)(w >> 16);
		if (bytes > 1)
			out[n++] = (uint8_t)(w >> 8);
		if (bytes > 2)
			out[n++] = (uint8_t)w;
	}
	return (long)n;
}
