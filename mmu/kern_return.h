/*
 * Mach's kern_return_t codes (vm_param.h) as the rest of the program speaks them: errno.
 * kern_return_name (vm_param.h) names a code for messages; kern_return_errno is the one
 * conversion to -errno, so that every caller reports the same failure the same way.
 */
#ifndef MMU_KERN_RETURN_H
#define MMU_KERN_RETURN_H

#include "mmu/vm_param.h"

/*
 * -errno for @kr, 0 for KERN_SUCCESS:
 *   KERN_INVALID_ADDRESS     -EFAULT     nothing mapped there
 *   KERN_PROTECTION_FAILURE  -EACCES     access beyond the protection
 *   KERN_NO_SPACE            -ENOMEM     no room in the map (as mmap says it)
 *   KERN_RESOURCE_SHORTAGE   -ENOMEM     out of memory
 *   KERN_MEMORY_ERROR,
 *   KERN_MEMORY_FAILURE      -EIO        a pager (or the pmap) could not deliver the data
 *   KERN_ABORTED             -ECANCELED  a caller's callback asked to stop
 *   KERN_INVALID_ARGUMENT, KERN_FAILURE, any other  -EINVAL
 */
int kern_return_errno(kern_return_t kr);

#endif
