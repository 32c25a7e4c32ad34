/*
 * Loading a PVH guest: an x86-64 ELF executable whose segments are placed at their
 * physical addresses and whose XEN_ELFNOTE_PHYS32_ENTRY note gives the 32-bit entry.
 * Every field of the image is checked before use: images are untrusted input.
 */
#ifndef VMM_LOADER_H
#define VMM_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/memory/guest_memory.h"

/* Largest guest image accepted (the whole file is read into memory). */
#define LOADER_MAX_IMAGE (256ull << 20)

struct loader_result {
	uint64_t entry;       /* 32-bit PVH entry point (guest-physical) */
	uint64_t image_start; /* lowest guest-physical byte loaded */
	uint64_t image_end;   /* one past the highest byte loaded (including bss) */
};

/*
 * Read the file at @path into a new buffer (*data, free() it) of *size bytes.
 * Refuses non-regular files, empty files and files over LOADER_MAX_IMAGE.
 * Returns 0 or -errno with a message naming the file.
 */
int loader_read_file(const char *path, void **data, size_t *size);

/*
 * Check the ELF image in [image, image + size) against the layout of @mem (its regions; no
 * memory needs to exist yet): every field, segments wholly inside guest RAM regions and
 * clear of [reserved_gpa, reserved_gpa + reserved_len) (the VMM's boot information), the
 * PVH entry inside a loaded segment. @name names the image in error messages.
 * Returns 0 and fills @out, or -ENOEXEC with a one-line message.
 */
int loader_check_pvh(const void *image, size_t size, const char *name, const struct guest_memory *mem,
		     uint64_t reserved_gpa, uint64_t reserved_len, struct loader_result *out);

/*
 * loader_check_pvh, then write the loadable segments into @mem (guest_memory_write).
 * Guest RAM must be freshly zeroed: bss is not written. 0 or -errno with a message; a
 * failed check leaves guest memory untouched.
 */
int loader_load_pvh(const void *image, size_t size, const char *name, struct guest_memory *mem,
		    uint64_t reserved_gpa, uint64_t reserved_len, struct loader_result *out);

#endif
