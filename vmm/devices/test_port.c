/* The test/sync port: the guest's structured messages to the host (guest/abi.h, ABI_SYNC). */
#include <stdio.h>
#include <string.h>

#include "guest/abi.h"
#include "vmm/devices/devices.h"
#include "vmm/monitor/monitor.h"
#include "vmm/vm.h"
#include "vmm/vm_state.h"

/* The port's state (see devices.h for the legend). */
struct test_port {
	atomic_uint_fast64_t messages; /* (a) total writes */
	atomic_uint_fast32_t last;     /* (a) last value written */
	int verbose;                   /* (c) print each message on stderr (-v -v) */
	struct vm *vm;                 /* (c) for events on its monitor */
};

static const char *test_port_code_name(unsigned code)
{
	switch (code) {
	case ABI_SYNC_POINT: return "sync";
	case ABI_SYNC_PASS: return "pass";
	case ABI_SYNC_FAIL: return "fail";
	case ABI_SYNC_ROUND: return "round";
	default: return "unknown";
	}
}

static int test_port_io(void *opaque, uint16_t port, bool is_write, uint8_t *data, unsigned size, unsigned count)
{
	struct test_port *t = opaque;
	(void)port;
	if (!is_write || size != 4) {
		if (!is_write)
			memset(data, 0xff, (size_t)size * count);
		return is_write ? -1 : 0;
	}
	for (unsigned i = 0; i < count; i++) {
		uint32_t v;
		memcpy(&v, data + 4 * i, 4);
		atomic_fetch_add(&t->messages, 1);
		atomic_store(&t->last, v);
		if (t->verbose)
			fprintf(stderr, "vmm: guest %s %u\n", test_port_code_name(ABI_SYNC_CODE(v)), ABI_SYNC_ARG(v));
		/* Rounds are too frequent for events; sync points, passes and failures are not. */
		/* The monitor may come up while the guest runs (vm_monitor_start publishes it). */
		struct monitor *m = __atomic_load_n(&t->vm->monitor, __ATOMIC_ACQUIRE);
		if (m && ABI_SYNC_CODE(v) != ABI_SYNC_ROUND)
			monitor_emit_event(m, "GUEST_SYNC",
					   json_pack("{s:s,s:i}", "code", test_port_code_name(ABI_SYNC_CODE(v)), "arg",
						     (int)ABI_SYNC_ARG(v)));
	}
	return 0;
}

static int test_port_attach(struct vm *vm, void *state)
{
	struct test_port *t = state;
	atomic_init(&t->messages, 0);
	atomic_init(&t->last, 0);
	t->verbose = vm->cfg.verbose > 1;
	t->vm = vm;
	return ioport_register(&vm->ports, ABI_PORT_TEST, ABI_PORT_TEST_LEN, test_port_io, t, "test port");
}

static void test_port_stats(const void *state, void (*emit)(void *arg, const char *key, uint64_t value), void *arg)
{
	struct test_port *t = (struct test_port *)state; /* atomic loads take no const */
	/* Named vm.* as before the devices reported their own. */
	emit(arg, "vm.test_port_messages", atomic_load(&t->messages));
	emit(arg, "vm.test_port_last", atomic_load(&t->last));
}

static void test_port_save(const void *state, struct vm_state *s)
{
	struct test_port *t = (struct test_port *)state;
	s->test_messages = atomic_load(&t->messages);
	s->test_last = (uint32_t)atomic_load(&t->last);
}

static void test_port_load(void *state, const struct vm_state *s)
{
	struct test_port *t = state;
	atomic_store(&t->messages, s->test_messages);
	atomic_store(&t->last, s->test_last);
}

const struct ioport_device test_port_device = {
	.name = "test port",
	.state_size = sizeof(struct test_port),
	.attach = test_port_attach,
	.stats = test_port_stats,
	.save = test_port_save,
	.load = test_port_load,
};
