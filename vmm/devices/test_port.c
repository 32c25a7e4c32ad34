/* The test/sync port: the guest's structured messages to the host (guest/abi.h, ABI_SYNC). */
#include <stdio.h>
#include <string.h>

#include "guest/abi.h"
#include "vmm/devices/devices.h"
#include "vmm/monitor/monitor.h"
#include "vmm/vm.h"

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

static int test_port_attach(struct vm *vm)
{
	atomic_init(&vm->test_port.messages, 0);
	atomic_init(&vm->test_port.last, 0);
	vm->test_port.verbose = vm->cfg.verbose > 1;
	vm->test_port.vm = vm;
	return ioport_register(&vm->ports, ABI_PORT_TEST, ABI_PORT_TEST_LEN, test_port_io, &vm->test_port,
			       "test port");
}

static void test_port_stats(struct vm *vm, void (*emit)(void *arg, const char *key, uint64_t value), void *arg)
{
	/* Named vm.* as before the devices reported their own. */
	emit(arg, "vm.test_port_messages", atomic_load(&vm->test_port.messages));
	emit(arg, "vm.test_port_last", atomic_load(&vm->test_port.last));
}

const struct ioport_device test_port_device = {"test port", test_port_attach, test_port_stats};
