/*
 * Fuzz target: working set files (working_set_parse) on arbitrary bytes. A file that
 * parses is exactly its header and the pages it lists, no more than its RAM holds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/memory/working_set.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct working_set ws;
	if (working_set_parse(data, size, &ws) != 0)
		return 0;
	if (ws.count > (ws.ram_size / 4096) || size != WORKING_SET_HEADER + 8 * ws.count)
		abort();
	for (uint64_t i = 0; i < ws.count; i++) {
		uint64_t v;
		memcpy(&v, data + WORKING_SET_HEADER + 8 * i, 8);
		if (v != ws.pages[i])
			abort();
	}
	working_set_free(&ws);
	return 0;
}
