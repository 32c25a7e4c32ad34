#include "coherent_server.h"

#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "spawn.h"

void coherent_server_start(struct coherent_server *s, uint64_t size, const char *deadline_ms)
{
	strcpy(s->dir, "/tmp/vmm-coherent-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(s->dir));
	snprintf(s->sock, sizeof(s->sock), "%s/sock", s->dir);
	snprintf(s->file, sizeof(s->file), "%s/object", s->dir);
	int fd = open(s->file, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	close(fd);
	char *argv[6] = {(char *)harness_build_path("coherent_pager")};
	int n = 1;
	if (deadline_ms) {
		argv[n++] = "--deadline-ms";
		argv[n++] = (char *)deadline_ms;
	}
	argv[n++] = s->sock;
	argv[n++] = s->file;
	argv[n] = NULL;
	s->pid = spawn_background(argv);
	ck_assert_int_gt(s->pid, 0);
	ck_assert_int_eq(spawn_wait_socket(s->sock, 10), 0);
}

void coherent_server_stop(struct coherent_server *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
	}
	s->pid = -1;
	unlink(s->sock);
	unlink(s->file);
	rmdir(s->dir);
}

uint64_t coherent_server_random(uint64_t *state)
{
	*state ^= *state << 13;
	*state ^= *state >> 7;
	*state ^= *state << 17;
	return *state;
}
