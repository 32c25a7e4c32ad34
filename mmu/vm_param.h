/*
 * Basic types and constants of the Mach VM core: page size, addresses, protections,
 * inheritance, attributes, and Mach's kern_return_t codes.
 *
 * Addresses in a vm_map are guest-physical; offsets are byte offsets in a memory object.
 */
#ifndef MMU_VM_PARAM_H
#define MMU_VM_PARAM_H

#include <stdbool.h>
#include <stdint.h>

#define VM_PAGE_SHIFT 12
#define VM_PAGE_SIZE ((uint64_t)1 << VM_PAGE_SHIFT)
#define VM_PAGE_MASK (VM_PAGE_SIZE - 1)

typedef uint64_t vm_addr_t;   /* an address in a vm_map (guest-physical) */
typedef uint64_t vm_size_t;   /* a length in bytes */
typedef uint64_t vm_offset_t; /* a byte offset in a memory object */

/* Protection bits (Mach's vm_prot_t). */
typedef unsigned vm_prot_t;
#define VM_PROT_NONE 0u
#define VM_PROT_READ 1u
#define VM_PROT_WRITE 2u
#define VM_PROT_EXECUTE 4u
#define VM_PROT_DEFAULT (VM_PROT_READ | VM_PROT_WRITE)
#define VM_PROT_ALL (VM_PROT_READ | VM_PROT_WRITE | VM_PROT_EXECUTE)

/* What a fork gives the child for an entry (Mach's vm_inherit_t, same values). */
typedef unsigned vm_inherit_t;
#define VM_INHERIT_SHARE 0u /* child maps the same object: writes are seen by both */
#define VM_INHERIT_COPY 1u  /* child gets a copy-on-write copy */
#define VM_INHERIT_NONE 2u  /* child has a hole there */
#define VM_INHERIT_DEFAULT VM_INHERIT_COPY

/* How copies of an entry are made (after Mach's memory_object_copy_strategy_t). */
enum vm_copy_strategy {
	VM_COPY_DELAY = 0, /* lazily: freeze the object, shadow it on the first write */
	VM_COPY_NONE = 1,  /* eagerly: copy the pages at copy time */
};

/* Caching of an entry's memory (carried and reported; the VMM may map it to a memory type). */
enum vm_cache_mode {
	VM_CACHE_WRITEBACK = 0,
	VM_CACHE_WRITETHROUGH = 1,
	VM_CACHE_UNCACHED = 2,
};

#define VM_CLUSTER_MAX 256u /* most pages one fault resolves / one data_request asks for */

/* Mach's kern_return_t codes (same numbers as osfmk/mach/kern_return.h). */
typedef int kern_return_t;
#define KERN_SUCCESS 0
#define KERN_INVALID_ADDRESS 1    /* address not mapped, or outside the map */
#define KERN_PROTECTION_FAILURE 2 /* access or protection beyond what is allowed */
#define KERN_NO_SPACE 3           /* no room for the range, or a fixed range is in use */
#define KERN_INVALID_ARGUMENT 4   /* unaligned, overflowing, zero, unknown values */
#define KERN_FAILURE 5            /* the operation could not be done otherwise */
#define KERN_RESOURCE_SHORTAGE 6  /* out of memory */
#define KERN_MEMORY_FAILURE 9     /* a pager failed to give data */
#define KERN_MEMORY_ERROR 10      /* a pager reported an error for the data */
#define KERN_ABORTED 14           /* a caller's callback asked to stop */

static inline bool vm_page_aligned(uint64_t x)
{
	return (x & VM_PAGE_MASK) == 0;
}

static inline uint64_t vm_trunc_page(uint64_t x)
{
	return x & ~VM_PAGE_MASK;
}

static inline uint64_t vm_atop(uint64_t x)
{
	return x >> VM_PAGE_SHIFT;
}

static inline uint64_t vm_ptoa(uint64_t p)
{
	return p << VM_PAGE_SHIFT;
}

/* The name of a kern_return_t ("KERN_NO_SPACE"), or "KERN_?" for an unknown code. */
const char *kern_return_name(kern_return_t kr);

#endif
