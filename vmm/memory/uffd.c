#include "vmm/memory/uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vmm/error.h"

int uffd_open(struct uffd *u, uint64_t features)
{
	u->fd = -1;
	u->features = 0;
	u->ioctls = 0;
	int fd = -1, dev_err = 0;
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		dev_err = errno;
		close(dev);
	} else {
		dev_err = errno;
	}
	if (fd < 0) {
		/* Without UFFD_USER_MODE_ONLY the syscall needs CAP_SYS_PTRACE or
		 * vm.unprivileged_userfaultfd=1; it still sees faults taken by KVM. */
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
		if (fd < 0)
			return error_set(errno, "cannot open a userfaultfd: /dev/userfaultfd: %s; userfaultfd(2): %s "
						"(give this user access to /dev/userfaultfd, or set sysctl vm.unprivileged_userfaultfd=1)",
					 strerror(dev_err), strerror(errno));
	}
	struct uffdio_api api = {.api = UFFD_API, .features = features};
	if (ioctl(fd, UFFDIO_API, &api) != 0) {
		int err = errno;
		close(fd);
		return error_set(err, "userfaultfd lacks features 0x%llx this VMM needs: %s",
				 (unsigned long long)features, strerror(err));
	}
	u->fd = fd;
	u->features = api.features;
	return 0;
}

void uffd_close(struct uffd *u)
{
	if (u->fd >= 0)
		close(u->fd);
	u->fd = -1;
}

int uffd_register(struct uffd *u, void *addr, size_t len, unsigned catch)
{
	struct uffdio_register reg = {
		.range = {.start = (uint64_t)(uintptr_t)addr, .len = len},
		.mode = ((catch & UFFD_CATCH_MISSING) ? UFFDIO_REGISTER_MODE_MISSING : 0) |
			((catch & UFFD_CATCH_WP) ? UFFDIO_REGISTER_MODE_WP : 0) |
			((catch & UFFD_CATCH_MINOR) ? UFFDIO_REGISTER_MODE_MINOR : 0),
	};
	if (ioctl(u->fd, UFFDIO_REGISTER, &reg) != 0)
		return error_set_errno(errno, "cannot register %zu MiB of guest RAM with userfaultfd", len >> 20);
	u->ioctls = reg.ioctls;
	return 0;
}

int uffd_copy(struct uffd *u, void *dst, const void *src, size_t len, bool wp, size_t *done)
{
	*done = 0;
	while (*done < len) {
		struct uffdio_copy c = {
			.dst = (uint64_t)(uintptr_t)dst + *done,
			.src = (uint64_t)(uintptr_t)src + *done,
			.len = len - *done,
			.mode = wp ? UFFDIO_COPY_MODE_WP : 0,
		};
		if (ioctl(u->fd, UFFDIO_COPY, &c) == 0) {
			*done = len;
			return 0;
		}
		int err = errno;
		if (c.copy > 0)
			*done += (size_t)c.copy;
		else if (err != EAGAIN) /* EAGAIN: the mapping changed under us, try again */
			return -err;
	}
	return 0;
}

int uffd_continue(struct uffd *u, void *dst, size_t len, bool wp, size_t *done)
{
	*done = 0;
	while (*done < len) {
		struct uffdio_continue c = {
			.range = {.start = (uint64_t)(uintptr_t)dst + *done, .len = len - *done},
			.mode = wp ? UFFDIO_CONTINUE_MODE_WP : 0,
		};
		if (ioctl(u->fd, UFFDIO_CONTINUE, &c) == 0) {
			*done = len;
			return 0;
		}
		int err = errno;
		if (c.mapped > 0)
			*done += (size_t)c.mapped;
		else if (err != EAGAIN)
			return -err;
	}
	return 0;
}

bool uffd_can_continue_wp(struct uffd *u)
{
	/* The kernel's answer, once per process: a restore asks before it opens its segment
	 * and again as its guest memory maps it. 0 unknown, 1 yes, 2 no. */
	static _Atomic int known;
	int k = atomic_load(&known);
	if (k)
		return k == 1;
	void *page = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED)
		return false;
	struct uffdio_continue c = {
		.range = {.start = (uint64_t)(uintptr_t)page, .len = 4096},
		.mode = UFFDIO_CONTINUE_MODE_WP | UFFDIO_CONTINUE_MODE_DONTWAKE,
	};
	int r = ioctl(u->fd, UFFDIO_CONTINUE, &c) != 0 ? errno : 0;
	munmap(page, 4096);
	/* Only ENOENT and EINVAL say what the kernel knows; anything else is asked again. */
	if (r == ENOENT || r == EINVAL)
		atomic_store(&known, r == ENOENT ? 1 : 2);
	return r == ENOENT;
}

int uffd_zeropage(struct uffd *u, void *dst, size_t len)
{
	struct uffdio_zeropage z = {.range = {.start = (uint64_t)(uintptr_t)dst, .len = len}};
	if (ioctl(u->fd, UFFDIO_ZEROPAGE, &z) != 0 && errno != EEXIST)
		return -errno;
	return uffd_wake(u, dst, len);
}

int uffd_wake(struct uffd *u, void *addr, size_t len)
{
	struct uffdio_range r = {.start = (uint64_t)(uintptr_t)addr, .len = len};
	return ioctl(u->fd, UFFDIO_WAKE, &r) == 0 ? 0 : -errno;
}

int uffd_writeprotect(struct uffd *u, void *addr, size_t len, bool protect)
{
	struct uffdio_writeprotect w = {
		.range = {.start = (uint64_t)(uintptr_t)addr, .len = len},
		.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};
	/* EAGAIN: the mappings were changing (the whole range is tried again: protecting twice
	 * is harmless). */
	while (ioctl(u->fd, UFFDIO_WRITEPROTECT, &w) != 0)
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
	return 0;
}
