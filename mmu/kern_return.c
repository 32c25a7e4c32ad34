/* Names of Mach's kern_return_t codes, for messages and test failures, and their errno. */
#include "mmu/kern_return.h"

#include <errno.h>

const char *kern_return_name(kern_return_t kr)
{
	switch (kr) {
	case KERN_SUCCESS: return "KERN_SUCCESS";
	case KERN_INVALID_ADDRESS: return "KERN_INVALID_ADDRESS";
	case KERN_PROTECTION_FAILURE: return "KERN_PROTECTION_FAILURE";
	case KERN_NO_SPACE: return "KERN_NO_SPACE";
	case KERN_INVALID_ARGUMENT: return "KERN_INVALID_ARGUMENT";
	case KERN_FAILURE: return "KERN_FAILURE";
	case KERN_RESOURCE_SHORTAGE: return "KERN_RESOURCE_SHORTAGE";
	case KERN_MEMORY_FAILURE: return "KERN_MEMORY_FAILURE";
	case KERN_MEMORY_ERROR: return "KERN_MEMORY_ERROR";
	case KERN_ABORTED: return "KERN_ABORTED";
	default: return "KERN_?";
	}
}

int kern_return_errno(kern_return_t kr)
{
	switch (kr) {
	case KERN_SUCCESS: return 0;
	case KERN_INVALID_ADDRESS: return -EFAULT;
	case KERN_PROTECTION_FAILURE: return -EACCES;
	case KERN_NO_SPACE:
	case KERN_RESOURCE_SHORTAGE: return -ENOMEM;
	case KERN_MEMORY_ERROR:
	case KERN_MEMORY_FAILURE: return -EIO;
	case KERN_ABORTED: return -ECANCELED;
	default: return -EINVAL;
	}
}
