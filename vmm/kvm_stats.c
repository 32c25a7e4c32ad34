#include "vmm/kvm_stats.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

struct kvm_stats {
	int fd;
	struct kvm_stats_header hdr;
	uint8_t *desc;     /* num_desc descriptors, each sizeof(kvm_stats_desc) + name_size bytes */
	size_t desc_size;  /* bytes of one descriptor */
	uint64_t *data;    /* the data block, re-read at each kvm_stats_read */
	size_t data_words;
};

struct kvm_stats *kvm_stats_open(int fd)
{
	int sfd = ioctl(fd, KVM_GET_STATS_FD, NULL);
	if (sfd < 0)
		return NULL;
	struct kvm_stats *s = calloc(1, sizeof(*s));
	if (!s || pread(sfd, &s->hdr, sizeof(s->hdr), 0) != (ssize_t)sizeof(s->hdr) || s->hdr.name_size > 4096 ||
	    s->hdr.num_desc > 4096)
		goto fail;
	s->fd = sfd;
	s->desc_size = sizeof(struct kvm_stats_desc) + s->hdr.name_size;
	s->desc = calloc(s->hdr.num_desc, s->desc_size);
	if (!s->desc ||
	    pread(sfd, s->desc, s->hdr.num_desc * s->desc_size, s->hdr.desc_offset) != (ssize_t)(s->hdr.num_desc * s->desc_size))
		goto fail;
	/* The data block ends after the last descriptor's data. */
	for (uint32_t i = 0; i < s->hdr.num_desc; i++) {
		const struct kvm_stats_desc *d = (const void *)(s->desc + i * s->desc_size);
		size_t end = d->offset / sizeof(uint64_t) + d->size;
		if (end > s->data_words)
			s->data_words = end;
	}
	s->data = calloc(s->data_words ? s->data_words : 1, sizeof(uint64_t));
	if (!s->data)
		goto fail;
	return s;
fail:
	if (s)
		free(s->desc);
	free(s);
	close(sfd);
	return NULL;
}

void kvm_stats_close(struct kvm_stats *s)
{
	if (!s)
		return;
	if (s->fd >= 0)
		close(s->fd);
	free(s->desc);
	free(s->data);
	free(s);
}

/* The data block as it is now (a frozen one keeps its last figures). */
static int kvm_stats_refresh(struct kvm_stats *s)
{
	ssize_t want = (ssize_t)(s->data_words * sizeof(uint64_t));
	if (s->fd >= 0 && pread(s->fd, s->data, (size_t)want, s->hdr.data_offset) != want)
		return -errno;
	return 0;
}

void kvm_stats_freeze(struct kvm_stats *s)
{
	if (!s || s->fd < 0)
		return;
	kvm_stats_refresh(s);
	close(s->fd);
	s->fd = -1;
}

int kvm_stats_read(struct kvm_stats *s, const char *prefix,
		   void (*emit)(void *arg, const char *key, uint64_t value), void *arg)
{
	int r = kvm_stats_refresh(s);
	if (r)
		return r;
	char key[256];
	for (uint32_t i = 0; i < s->hdr.num_desc; i++) {
		const struct kvm_stats_desc *d = (const void *)(s->desc + i * s->desc_size);
		uint64_t sum = 0;
		for (uint32_t k = 0; k < d->size; k++)
			sum += s->data[d->offset / sizeof(uint64_t) + k];
		snprintf(key, sizeof(key), "%s%.*s", prefix, (int)s->hdr.name_size, d->name);
		emit(arg, key, sum);
	}
	return 0;
}
