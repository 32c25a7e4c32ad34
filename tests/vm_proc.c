#include "vm_proc.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "spawn.h"
#include "vmm/error.h"
#include "vmm/monitor/qmp_client.h"

void vm_proc_start(struct vm_proc *v, const char *dir, ...)
{
	if (v->pid > 0 || v->c || v->own_dir)
		vm_proc_cleanup(v, !v->own_dir); /* a caller's directory stays */
	memset(v, 0, sizeof(*v));
	if (dir) {
		snprintf(v->dir, sizeof(v->dir), "%s", dir);
	} else {
		strcpy(v->dir, "/tmp/vmm-proc-XXXXXX");
		ck_assert_ptr_nonnull(mkdtemp(v->dir));
		v->own_dir = true;
	}
	snprintf(v->sock, sizeof(v->sock), "%s/vm.sock", v->dir);
	snprintf(v->out, sizeof(v->out), "%s/out", v->dir);
	snprintf(v->err, sizeof(v->err), "%s/err", v->dir);
	unlink(v->sock);
	char vmm[4096];
	snprintf(vmm, sizeof(vmm), "%s", harness_build_path("vmm"));
	char *argv[48];
	int n = 0;
	argv[n++] = vmm;
	va_list ap;
	va_start(ap, dir);
	char *a = va_arg(ap, char *);
	argv[n++] = a; /* the verb */
	argv[n++] = "--monitor";
	argv[n++] = v->sock;
	while ((a = va_arg(ap, char *)) && n < 46)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	v->pid = fork();
	ck_assert_int_ge(v->pid, 0);
	if (v->pid == 0) {
		int o = open(v->out, O_WRONLY | O_CREAT | O_TRUNC, 0644), e = open(v->err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(o, STDOUT_FILENO);
		dup2(e, STDERR_FILENO);
		execv(vmm, argv);
		_exit(127);
	}
	if (spawn_wait_socket(v->sock, VM_PROC_TIMEOUT_MS / 1000) != 0) {
		char *err = vm_proc_output(v, true);
		ck_abort_msg("the VM's monitor did not come up: %s", err);
	}
	ck_assert_msg(qmp_client_connect(&v->c, v->sock, VM_PROC_TIMEOUT_MS) == 0, "%s", error_message());
}

/* How the VM process stands, for a failure's message: "running", or how it ended (left
 * for vm_proc_wait to reap). */
static const char *vm_proc_state(const struct vm_proc *v, char *buf, size_t size)
{
	siginfo_t info = {0};
	if (v->pid <= 0 || waitid(P_PID, (id_t)v->pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0)
		snprintf(buf, size, "not a child");
	else if (info.si_pid == 0)
		snprintf(buf, size, "running");
	else if (info.si_code == CLD_EXITED)
		snprintf(buf, size, "exited with status %d", info.si_status);
	else
		snprintf(buf, size, "killed by signal %d (%s)%s", info.si_status, strsignal(info.si_status),
			 info.si_code == CLD_DUMPED ? ", core dumped" : "");
	return buf;
}

int vm_proc_timeout_ms(void)
{
	const char *f = getenv("CK_TIMEOUT_MULTIPLIER");
	int factor = f ? atoi(f) : 1;
	return 60000 * (factor >= 1 && factor <= 100 ? factor : 1);
}

json_t *vm_proc_execute(struct vm_proc *v, const char *command, json_t *args)
{
	json_t *ret = NULL;
	if (qmp_client_execute(v->c, command, args, &ret, VM_PROC_TIMEOUT_MS) != 0) {
		char msg[512], state[96];
		snprintf(msg, sizeof(msg), "%s", error_message());
		char *err = vm_proc_output(v, true);
		ck_abort_msg("%s: %s (the VM: %s): %s", command, msg, vm_proc_state(v, state, sizeof(state)), err);
	}
	return ret ? ret : json_object();
}

json_t *vm_proc_call(struct vm_proc *v, const char *command, json_t *args)
{
	json_t *ret = vm_proc_execute(v, command, args);
	json_decref(args);
	return ret;
}

void vm_proc_release(struct vm_proc *v, long long gpa)
{
	json_t *args = json_pack("{s:I,s:s}", "addr", (json_int_t)gpa, "data", "AQ==");
	json_decref(vm_proc_execute(v, "vm-write", args));
	json_decref(args);
}

json_t *vm_proc_wait_event(struct vm_proc *v, const char *name, const char *key, long long min)
{
	for (;;) {
		json_t *ev;
		int r = qmp_client_next_event(v->c, &ev, VM_PROC_TIMEOUT_MS);
		if (r != 0) {
			char *out = vm_proc_output(v, false), *err = vm_proc_output(v, true);
			ck_abort_msg("waiting for %s: %s\nVM stdout: %s\nVM stderr: %s", name, strerror(-r), out, err);
		}
		json_t *data = json_object_get(ev, "data");
		if (strcmp(json_string_value(json_object_get(ev, "event")), name) == 0 &&
		    (!key || json_integer_value(json_object_get(data, key)) >= min))
			return ev;
		json_decref(ev);
	}
}

void vm_proc_wait_sync(struct vm_proc *v, unsigned n)
{
	if (qmp_client_wait_sync(v->c, n, VM_PROC_TIMEOUT_MS) != 0) {
		char msg[512], state[96];
		snprintf(msg, sizeof(msg), "%s", error_message());
		char *err = vm_proc_output(v, true), *out = vm_proc_output(v, false);
		size_t len = strlen(out);
		ck_abort_msg("the guest never reached sync point %u (%s; the VM: %s): %s\nits console, the end: %s", n,
			     msg, vm_proc_state(v, state, sizeof(state)), err, out + (len > 1500 ? len - 1500 : 0));
	}
}

int vm_proc_wait(struct vm_proc *v)
{
	qmp_client_close(v->c);
	v->c = NULL;
	int st = 0;
	ck_assert_int_eq(waitpid(v->pid, &st, 0), v->pid);
	v->pid = 0;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

char *vm_proc_output(const struct vm_proc *v, bool err)
{
	FILE *f = fopen(err ? v->err : v->out, "r");
	char *buf = calloc(1, 1 << 20);
	if (f) {
		size_t n = fread(buf, 1, (1 << 20) - 1, f);
		buf[n] = '\0';
		fclose(f);
	}
	return buf;
}

void vm_proc_wait_output(const struct vm_proc *v, bool err, const char *needle, unsigned count)
{
	for (int i = 0; i < VM_PROC_TIMEOUT_MS / 10; i++) {
		char *text = vm_proc_output(v, err);
		unsigned seen = 0;
		for (const char *p = text; (p = strstr(p, needle)); p++)
			seen++;
		free(text);
		if (seen >= count)
			return;
		struct timespec t = {0, 10000000L};
		nanosleep(&t, NULL);
	}
	char *text = vm_proc_output(v, err);
	ck_abort_msg("waited for %u lines with '%s'; got: %s", count, needle, text);
}

void vm_proc_expect_forks_checked(const struct vm_proc *v, unsigned vms, unsigned generation, unsigned pages)
{
	char *out = vm_proc_output(v, false);
	for (unsigned k = 0; k < vms; k++) {
		char want[96];
		snprintf(want, sizeof(want), "fork: vm %u generation %u: %u pages ok", k, generation, pages);
		ck_assert_msg(strstr(out, want), "missing '%s' in: %s", want, out);
	}
	free(out);
}

void vm_proc_cleanup(struct vm_proc *v, bool keep_dir)
{
	qmp_client_close(v->c);
	v->c = NULL;
	if (v->pid > 0) {
		kill(v->pid, SIGKILL);
		waitpid(v->pid, NULL, 0);
	}
	v->pid = 0;
	if (!keep_dir && v->dir[0]) {
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", v->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", v->dir);
	}
	v->own_dir = false;
}
