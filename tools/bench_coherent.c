/*
 * Ping-pong of one page between two VMM processes through tools/coherent_pager, beside two
 * processes ping-ponging through one page of a shared memfd (the kernel keeping them
 * coherent: the peer, the floor). Each side waits for the counter at the start of the page
 * to reach its turn, then increments it; a round trip is two increments.
 *
 * Without KVM (this host has none) a host thread of each VMM touches its guest memory as a
 * vCPU would: userfaultfd, the fault thread, vm_fault, the external pager client; the
 * pager's lock requests reach the fault thread through the pager's event fd. Each round
 * trip costs each side a DATA_REQUEST (its copy was flushed), a DATA_UNLOCK (it was given
 * the page read-only) and the lock request those make the server send to the other side.
 *
 * usage: bench_coherent   (prints one line per figure; exit status 0 unless setup fails)
 */
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vmm/error.h"
#include "vmm/memory/guest_memory.h"

#define PS VM_PAGE_SIZE
#define OBJ_GPA (16ull << 20)
#define COHERENT_TRIPS 2000u
#define MEMFD_TRIPS 200000u

static char dir[64], sock_path[96], file_path[96];

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what)
{
	fprintf(stderr, "bench_coherent: %s failed%s%s\n", what, error_message()[0] ? ": " : "", error_message());
	exit(1);
}

/* Take turns with the other side on the counter at @counter: @me is 0 or 1; @trips round
 * trips. Seconds from the first turn to the last. */
static double ping_pong(volatile uint64_t *counter, unsigned me, unsigned trips)
{
	double t0 = now();
	for (uint64_t turn = me; turn < 2ull * trips; turn += 2) {
		while (__atomic_load_n(counter, __ATOMIC_ACQUIRE) != turn)
			sched_yield(); /* 2 cores here: a spinner would starve the fault threads */
		__atomic_store_n(counter, turn + 1, __ATOMIC_RELEASE);
	}
	return now() - t0;
}

static void on_error(void *arg, int err, const char *message)
{
	(void)arg;
	(void)err;
	fprintf(stderr, "bench_coherent: fault thread: %s\n", message);
	_exit(1);
}

/* One VMM's side: guest memory with the coherent object mapped shared, then the turns. */
static double coherent_side(unsigned me)
{
	struct guest_memory mem;
	struct guest_memory_config cfg;
	memset(&mem, 0, sizeof(mem));
	memset(&cfg, 0, sizeof(cfg));
	cfg.ram_size = 2ull << 20;
	cfg.files[cfg.nfiles++] = (struct guest_file_map){.path = sock_path, .gpa = OBJ_GPA, .mode = GUEST_MAP_SHARED,
							    .external = true, .size = PS};
	if (guest_memory_create(&mem, &cfg) != 0 || guest_memory_start(&mem, on_error, NULL) != 0)
		die("guest memory");
	double s = ping_pong(guest_memory_ptr(&mem, OBJ_GPA, PS), me, COHERENT_TRIPS);
	guest_memory_stop(&mem);
	guest_memory_destroy(&mem);
	return s;
}

/* Seconds per round trip with @side run by this process (0) and a child (1). */
static double both_sides(double (*side)(unsigned me, void *arg), void *arg, unsigned trips)
{
	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0)
		_exit(side(1, arg) > 0 ? 0 : 1);
	double s = side(0, arg);
	int status;
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		die("the other side");
	return s / trips;
}

static double coherent_side_arg(unsigned me, void *arg)
{
	(void)arg;
	return coherent_side(me);
}

static double memfd_side(unsigned me, void *arg)
{
	return ping_pong(arg, me, MEMFD_TRIPS);
}

/* Start coherent_pager on a one-page file; its pid. */
static pid_t start_server(void)
{
	const char *build = getenv("VMM_BUILD") ? getenv("VMM_BUILD") : "build";
	char server[4096];
	snprintf(server, sizeof(server), "%s/coherent_pager", build);
	strcpy(dir, "/tmp/vmm-bench-coherent-XXXXXX");
	if (!mkdtemp(dir))
		die("mkdtemp");
	snprintf(sock_path, sizeof(sock_path), "%s/sock", dir);
	snprintf(file_path, sizeof(file_path), "%s/object", dir);
	int fd = open(file_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, PS) != 0)
		die("object file");
	close(fd);
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 2);
		execl(server, server, sock_path, file_path, (char *)NULL);
		_exit(127);
	}
	/* Until it listens (a bounded wait: 10 s). */
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	strcpy(addr.sun_path, sock_path);
	for (int i = 0; i < 1000; i++) {
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int ok = s >= 0 && connect(s, (struct sockaddr *)&addr, sizeof(addr)) == 0;
		if (s >= 0)
			close(s);
		if (ok)
			return pid;
		usleep(10000);
	}
	kill(pid, SIGKILL);
	die("coherent_pager start");
	return -1;
}

int main(void)
{
	pid_t server = start_server();
	double coherent = both_sides(coherent_side_arg, NULL, COHERENT_TRIPS);
	kill(server, SIGKILL);
	waitpid(server, NULL, 0);
	unlink(sock_path);
	unlink(file_path);
	rmdir(dir);

	int fd = memfd_create("bench-coherent", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, PS) != 0)
		die("memfd");
	void *page = mmap(NULL, PS, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (page == MAP_FAILED)
		die("mmap");
	double memfd = both_sides(memfd_side, page, MEMFD_TRIPS);
	printf("page ping-pong between two processes, one round trip: coherent pager %.1f us, shared memfd %.3f us "
	       "(%.0fx)\n",
	       coherent * 1e6, memfd * 1e6, coherent / memfd);
	return 0;
}
