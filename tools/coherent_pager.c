/*
 * coherent_pager: one file served to many VMs at once as one coherent memory object over
 * the external pager protocol, version 2: the netmemory server (pagers/netmemory.h) on a
 * unix socket, for ever.
 *
 * usage: coherent_pager [--deadline-ms N] SOCKET FILE
 *   --deadline-ms N  how long a client may take to answer a lock request (default 2000);
 *                    one that does not is dropped (logged). Keep it below the clients'
 *                    own exchange deadline (EXTPAGER_TIMEOUT_MS).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pagers/netmemory.h"

static void usage(int status)
{
	fprintf(status ? stderr : stdout, "usage: coherent_pager [--deadline-ms N] SOCKET FILE\n");
	if (!status)
		printf("Serve FILE to many VMs at once as one coherent memory object (external pager protocol 2).\n"
		       "  --deadline-ms N  time a client has to answer a lock request (default %d)\n"
		       "  -h, --help       show this help\n",
		       NETMEMORY_DEADLINE_MS);
	exit(status);
}

int main(int argc, char **argv)
{
	unsigned deadline_ms = NETMEMORY_DEADLINE_MS;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			usage(0);
		else if (i + 1 < argc && strcmp(argv[i], "--deadline-ms") == 0)
			deadline_ms = (unsigned)atoi(argv[++i]);
		else
			usage(2);
	}
	if (argc - i != 2 || deadline_ms == 0)
		usage(2);
	const char *sock_path = argv[i], *file = argv[i + 1];
	int fd = open(file, O_RDWR | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || st.st_size == 0) {
		fprintf(stderr, "coherent_pager: cannot serve %s: %s\n", file, fd < 0 ? strerror(errno) : "empty");
		return 1;
	}
	static struct netmemory server;
	if (netmemory_init(&server, "coherent_pager", fd, (uint64_t)st.st_size, deadline_ms) != 0) {
		fprintf(stderr, "coherent_pager: out of memory\n");
		return 1;
	}
	int r = netmemory_listen(&server, sock_path);
	if (r < 0) {
		fprintf(stderr, "coherent_pager: cannot listen on %s: %s\n", sock_path, strerror(-r));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	fprintf(stderr, "coherent_pager: serving %s (%llu bytes) on %s\n", file, (unsigned long long)st.st_size, sock_path);
	r = netmemory_run(&server, -1);
	fprintf(stderr, "coherent_pager: %s\n", strerror(-r));
	return 1;
}
