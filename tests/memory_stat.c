#include "memory_stat.h"

#include <check.h>
#include <stdbool.h>
#include <string.h>

#include "vmm/memory/guest_memory.h"

struct memory_stat_find {
	const char *key;
	uint64_t value;
	bool seen;
};

static void memory_stat_emit(void *arg, const char *key, uint64_t value)
{
	struct memory_stat_find *f = arg;
	if (strcmp(key, f->key) == 0) {
		f->value = value;
		f->seen = true;
	}
}

uint64_t memory_stat(struct guest_memory *m, const char *key)
{
	struct memory_stat_find f = {key, 0, false};
	guest_memory_stats(m, memory_stat_emit, &f);
	ck_assert_msg(f.seen, "no statistic %s", key);
	return f.value;
}
