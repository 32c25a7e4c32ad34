/* Base64 (RFC 4648, with padding): how bytes travel in the monitor's JSON (vm-read, vm-write). */
#ifndef VMM_BASE64_H
#define VMM_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Characters base64_encode writes for @len bytes, NUL excluded. */
size_t base64_encoded_len(size_t len);

/* Encode @len bytes of @in into @out (base64_encoded_len(len) + 1 bytes, NUL-terminated). */
void base64_encode(const uint8_t *in, size_t len, char *out);

/* Decode the NUL-terminated @in into @out (room for @cap bytes): the byte count, or -1 when
 * @in is not base64 (bad character, bad length or padding) or does not fit. */
long base64_decode(const char *in, uint8_t *out, size_t cap);

#endif
