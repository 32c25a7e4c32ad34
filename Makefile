# vmm: a KVM virtual machine monitor whose guest memory is managed the Mach way.
#
#   make          build build/vmm and build/guest.elf
#   make run      install missing build dependencies, build, boot the demo guest
#   make test     the same set-up, then every test (most also under ASan+UBSan), fuzzing briefly
#   make bench    benchmarks, each figure beside its peer or physical limit
#   make fuzz     run the fuzz targets (FUZZ_SECONDS each, default 20) from tools/corpus
#   make soak     10^8 differential operations, then the KVM fork/snapshot suites in a loop
#   make install  build if needed, then copy into $(DESTDIR)$(PREFIX) (PREFIX default /usr/local):
#                 bin/vmm, bin/vmm-pager-server (build/pager_server), bin/vmm-coherent-pager
#                 (build/coherent_pager), bin/vmm-rados (build/rados_server,
#                 the RADOS helper vmm starts for a store on Ceph), share/man/man1/vmm.1 and
#                 share/bash-completion/completions/vmm (tools/vmm-completion.bash)
#   make uninstall  remove exactly those six files (same PREFIX and DESTDIR)
#   make clean

B        := build
CC       := gcc
PKGS     := check libxxhash jansson
WARN     := -Wall -Wextra -Werror
CSTD     := -std=c11 -D_GNU_SOURCE
OPT      ?= -O2
INCLUDES ?= -I.
CFLAGS   := $(CSTD) $(OPT) -g $(WARN) $(INCLUDES) -MMD -MP -pthread
SANFLAGS := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LIBS      = -pthread -lxxhash -ljansson -lexpat
TESTLIBS  = $(shell pkg-config --libs check 2>/dev/null) $(LIBS)

DEMO_CMDLINE ?= hello touch=128M
DEMO_ARGS    ?= -m 256M -c 2

MMU_SRC    := $(wildcard mmu/*.c)
PAGERS_SRC := $(wildcard pagers/*.c)
VMM_SRC    := $(filter-out vmm/cli/main.c,$(wildcard vmm/*.c vmm/*/*.c))
TEST_SRC   := $(wildcard tests/check_*.c)
SUITES     := $(patsubst tests/check_%.c,%,$(TEST_SRC))
BENCH_SRC  := $(wildcard tools/bench_*.c)
TOOL_SRC   := $(filter-out $(BENCH_SRC) $(wildcard tools/fuzz_*.c) tools/ceph_test_cluster.c,$(wildcard tools/*.c))
FUZZ_SRC   := $(wildcard tools/fuzz_*.c)
GUEST_SRC  := $(wildcard guest/*.c) $(wildcard guest/*.S)

obj = $(patsubst %.c,$(B)/$(1)/%.o,$(patsubst %.S,$(B)/$(1)/%.o,$(2)))

.PHONY: all run test test-asan test-kvm-emulated bench fuzz fuzz-brief soak deps install uninstall clean FORCE
all: $(B)/vmm $(B)/guest.elf $(patsubst tools/%.c,$(B)/%,$(TOOL_SRC))

# Set-up: the stamp is refreshed whenever the package list in tools/deps.sh changes.
deps: $(B)/.deps
$(B)/.deps: tools/deps.sh
	@mkdir -p $(B)
	@tools/deps.sh build
	@touch $@

# ---- host code: plain and sanitizer builds of the same sources ---------------------
$(B)/plain/%.o: %.c | $(B)/.deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@
$(B)/asan/%.o: %.c | $(B)/.deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SANFLAGS) -c $< -o $@

$(B)/plain/libmmu.a: $(call obj,plain,$(MMU_SRC))
$(B)/asan/libmmu.a: $(call obj,asan,$(MMU_SRC))
$(B)/plain/libpagers.a: $(call obj,plain,$(PAGERS_SRC))
$(B)/asan/libpagers.a: $(call obj,asan,$(PAGERS_SRC))
$(B)/plain/libvmm.a: $(call obj,plain,$(VMM_SRC))
$(B)/asan/libvmm.a: $(call obj,asan,$(VMM_SRC))
$(B)/%.a:
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# One archive per layer, linked from the top down: a layer that reached up (mmu/ naming a
# pager, a pager naming the VMM) would find its symbol unresolved.
HOSTLIBS = $(B)/$(1)/libvmm.a $(B)/$(1)/libpagers.a $(B)/$(1)/libmmu.a

# Static (PIE, so still randomized): no dynamic linking before main (about half a
# millisecond of every start here) and no shared-library pages in the VMM's memory.
$(B)/vmm: $(B)/plain/vmm/cli/main.o $(call HOSTLIBS,plain)
	$(CC) -static-pie -o $@ $^ $(LIBS)

$(B)/%: $(B)/plain/tools/%.o $(call HOSTLIBS,plain)
	$(CC) -o $@ $^ $(LIBS)
# The RADOS helper (vmm/store/rados.h) links librados, which has no static library: it is
# dynamically linked, and of the host code takes only the frames it shares with the client.
$(B)/rados_server: $(B)/plain/tools/rados_server.o $(B)/plain/vmm/store/rados_frame.o
	$(CC) -o $@ $^ -pthread -lrados
# The tests' Ceph cluster, kept running for tests elsewhere (tools/ceph_test_cluster.c;
# not in all: it links Check, which only make test installs).
$(B)/ceph_test_cluster: $(B)/plain/tools/ceph_test_cluster.o $(B)/plain/tests/ceph_cluster.o $(B)/plain/tests/spawn.o \
		$(call HOSTLIBS,plain) | $(B)/rados_server
	$(CC) -o $@ $(filter %.o %.a,$^) $(TESTLIBS)
# Reached only through that pattern, a tool's object would be an intermediate file that make
# deletes after linking, and then compiles and links again at every make all (or make run).
.SECONDARY: $(patsubst tools/%.c,$(B)/plain/tools/%.o,$(TOOL_SRC))

# ---- the guest: freestanding, linked at its physical load address -------------------
GUEST_CFLAGS := -std=c11 -O2 -g $(WARN) -I. -MMD -MP -ffreestanding -fno-pic -fno-pie -fno-stack-protector \
	-mno-red-zone -mgeneral-regs-only -fno-tree-loop-distribute-patterns -mcmodel=small -fno-asynchronous-unwind-tables -fcf-protection=none
GUEST_OBJ := $(call obj,guest,$(GUEST_SRC))
$(B)/guest/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_CFLAGS) -c $< -o $@
$(B)/guest/%.o: %.S
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_CFLAGS) -c $< -o $@
# The linker script goes through cpp: it builds the IDT at link time.
$(B)/guest/guest.ld: guest/guest.ld.in
	@mkdir -p $(dir $@)
	$(CC) -E -P -undef -x c $< -o $@
$(B)/guest.elf: $(GUEST_OBJ) $(B)/guest/guest.ld
	$(CC) -nostdlib -static -no-pie -Wl,-T,$(B)/guest/guest.ld -Wl,--build-id=none -Wl,-z,noexecstack \
		-o $@ $(GUEST_OBJ) -lgcc

# ---- tests ---------------------------------------------------------------------------
# Rewritten only when the list of suites changes (a removed suite must leave it too).
$(B)/tests/suites.inc: FORCE
	@mkdir -p $(dir $@)
	@printf '$(foreach s,$(SUITES),SUITE($(s))\n)' | sed 's/^ //' > $@.tmp
	@if cmp -s $@.tmp $@; then rm $@.tmp; else mv $@.tmp $@; fi
FORCE:

RUNNER_SRC := tests/runner.c $(filter-out tests/runner.c tests/check_%.c,$(wildcard tests/*.c)) $(TEST_SRC)
$(B)/plain/tests/runner.o $(B)/asan/tests/runner.o: $(B)/tests/suites.inc
$(B)/plain/tests/runner.o $(B)/asan/tests/runner.o: CFLAGS += -I$(B)/tests
$(B)/run_tests: $(call obj,plain,$(RUNNER_SRC)) $(call HOSTLIBS,plain)
	$(CC) -o $@ $^ $(TESTLIBS)
$(B)/asan/run_tests: $(call obj,asan,$(RUNNER_SRC)) $(call HOSTLIBS,asan)
	$(CC) $(SANFLAGS) -o $@ $^ $(TESTLIBS)

run: all
	$(B)/vmm run $(DEMO_ARGS) $(B)/guest.elf -p "$(DEMO_CMDLINE)"

# The sanitizer pass: every suite but the KVM ones, and of those a subset covering run,
# paging, snapshot/restore, fork and the monitor, whose VMM is built with the same
# sanitizers. It is dynamically linked (the sanitizer runtimes cannot be static-pie) and
# sits in a directory of its own beside the guest, because the suites find both through
# $$VMM_BUILD. Without /dev/kvm those suites print SKIP here as in the plain pass, which
# runs everything and prints the closing summary line.
ASAN_KVM_SUITES := kvm_run kvm_paging kvm_snapshot kvm_fork kvm_monitor kvm_rados
ASAN_SUITES     := $(filter-out kvm_%,$(SUITES)) $(ASAN_KVM_SUITES)
$(B)/asan/bin/vmm: $(B)/asan/vmm/cli/main.o $(call HOSTLIBS,asan)
	@mkdir -p $(dir $@)
	$(CC) $(SANFLAGS) -o $@ $^ $(LIBS)
$(B)/asan/bin/rados_server: $(B)/asan/tools/rados_server.o $(B)/asan/vmm/store/rados_frame.o
	@mkdir -p $(dir $@)
	$(CC) $(SANFLAGS) -o $@ $^ -pthread -lrados
$(B)/asan/bin/coherent_pager: $(B)/asan/tools/coherent_pager.o $(call HOSTLIBS,asan)
	@mkdir -p $(dir $@)
	$(CC) $(SANFLAGS) -o $@ $^ $(LIBS)
$(B)/asan/bin/guest.elf: $(B)/guest.elf
	@mkdir -p $(dir $@)
	ln -sf ../../guest.elf $@
# What the tests need besides the build (QEMU, socat), before either pass.
$(B)/.deps-test: tools/deps.sh
	@mkdir -p $(B)
	@tools/deps.sh test
	@touch $@
test-asan: all $(B)/asan/run_tests $(B)/asan/bin/vmm $(B)/asan/bin/rados_server $(B)/asan/bin/coherent_pager \
		$(B)/asan/bin/guest.elf | $(B)/.deps-test
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 VMM_BUILD=$(B)/asan/bin \
		$(B)/asan/run_tests $(ASAN_SUITES)

test: all $(B)/run_tests test-asan fuzz-brief | $(B)/.deps-test
	$(B)/run_tests

# For hosts without /dev/kvm: the suites that need it (and cli and domain_xml, whose tests
# boot guests), plainly and the sanitizer subset, inside a machine whose CPU is emulated in
# software and has KVM (tools/kvm_emulated.sh), with a Ceph cluster running on this host for
# kvm_rados (-c); the plain run boots Linux 6.12 (-n: restored pages shared host-wide), the
# sanitizer run Debian 12's 6.1 (they stay private there). Slow, and no timing from it means
# anything: it shows that the KVM code works, not how fast.
EMULATED_SUITES := $(filter kvm_%,$(SUITES)) cli domain_xml
test-kvm-emulated: all $(B)/run_tests $(B)/asan/run_tests $(B)/asan/bin/vmm $(B)/asan/bin/rados_server \
		$(B)/asan/bin/coherent_pager $(B)/asan/bin/guest.elf $(B)/ceph_test_cluster | $(B)/.deps-test
	tools/kvm_emulated.sh -c -n env CK_TIMEOUT_MULTIPLIER=4 $(B)/run_tests $(EMULATED_SUITES)
	tools/kvm_emulated.sh -c env ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		VMM_BUILD=$(B)/asan/bin CK_TIMEOUT_MULTIPLIER=4 $(B)/asan/run_tests $(ASAN_KVM_SUITES)

# ---- benchmarks and fuzzing ------------------------------------------------------------
$(B)/bench/%: $(B)/plain/tools/%.o $(call HOSTLIBS,plain)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ $(LIBS)
# The sandbox machine of the tests (tests/vm_sandbox.c) drives the map benchmark too.
$(B)/bench/bench_mmu: $(B)/plain/tools/bench_mmu.o $(B)/plain/tests/vm_sandbox.o $(call HOSTLIBS,plain)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ $(LIBS)
# The RADOS benchmark makes its cluster as the tests do (tests/ceph_cluster.c).
$(B)/bench/bench_rados: $(B)/plain/tools/bench_rados.o $(B)/plain/tests/ceph_cluster.o $(B)/plain/tests/spawn.o \
		$(call HOSTLIBS,plain) | $(B)/rados_server
	@mkdir -p $(dir $@)
	$(CC) -o $@ $(filter %.o %.a,$^) $(TESTLIBS)
bench: all $(patsubst tools/%.c,$(B)/bench/%,$(BENCH_SRC))
	@tools/deps.sh bench || echo "bench: QEMU could not be installed; its columns will be empty"
	tools/bench.sh $(B)

# Fuzzing: the host sources are built once with the fuzzer's coverage and the sanitizers
# (not once per target: five times sixty clang compiles is minutes on two cores), and each
# target links what it uses. tools/corpus/NAME holds a few dozen small inputs per target
# (a minimized set from earlier runs; an input that found a bug belongs there too); they
# seed every run and are never written: what a run finds new goes to a scratch directory
# in $(B)/fuzz/. A crash, leak or sanitizer report
# fails the run with its log, the input kept as $(B)/fuzz/NAME-crash-*.
FUZZ_SECONDS       ?= 20
FUZZ_BRIEF_SECONDS ?= 3
FUZZ_CFLAGS  := $(CSTD) -g -O1 -I. -MMD -MP -fsanitize=address,undefined
FUZZ_TARGETS := $(patsubst tools/%.c,$(B)/fuzz/%,$(FUZZ_SRC))
$(B)/.deps-fuzz: tools/deps.sh
	@mkdir -p $(B)
	@tools/deps.sh fuzz
	@touch $@
$(B)/fuzz/obj/%.o: %.c | $(B)/.deps $(B)/.deps-fuzz
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@
$(B)/fuzz/libhost.a: $(call obj,fuzz/obj,$(MMU_SRC) $(PAGERS_SRC) $(VMM_SRC))
$(FUZZ_TARGETS): $(B)/fuzz/%: $(B)/fuzz/obj/tools/%.o $(B)/fuzz/libhost.a
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $(filter %.o,$^) $(filter %.a,$^) $(LIBS)
$(B)/fuzz/fuzz_vm_map: $(B)/fuzz/obj/tests/vm_sandbox.o $(B)/fuzz/obj/tests/fake_pager.o
$(B)/fuzz/fuzz_vm_map: LIBS += $(shell pkg-config --libs check 2>/dev/null)

# $(call fuzz_run,SECONDS,SEED,SCRATCH): every target for SECONDS from the seed SEED (0:
# libFuzzer picks one and logs it) on tools/corpus/NAME (if there is one yet), new finds
# going to SCRATCH-NAME.
fuzz_run = for f in $(FUZZ_TARGETS); do n=$$(basename $$f); mkdir -p $(3)-$$n; \
	seeds=tools/corpus/$$n; [ -d $$seeds ] || seeds=; \
	if ! $$f -seed=$(2) -max_total_time=$(1) -print_final_stats=1 -artifact_prefix=$(B)/fuzz/$$n- \
		$(3)-$$n $$seeds >$(B)/fuzz/$$n.log 2>&1; then \
		tail -n 40 $(B)/fuzz/$$n.log; \
		echo "fuzz: $$n failed ($$(grep -m1 -o 'Seed: [0-9]*' $(B)/fuzz/$$n.log); log $(B)/fuzz/$$n.log)"; exit 1; fi; \
	echo "fuzz: $$n: $$(grep -o 'number_of_executed_units: *[0-9]*' $(B)/fuzz/$$n.log | grep -o '[0-9]*$$') inputs in $(1)s, no finding"; \
	done

fuzz: $(FUZZ_TARGETS)
	@$(call fuzz_run,$(FUZZ_SECONDS),0,$(B)/fuzz/corpus)

# The brief run inside make test: a fixed seed and a fresh scratch directory, so each run
# starts from the committed corpus alone.
fuzz-brief: $(FUZZ_TARGETS)
	@rm -rf $(B)/fuzz/brief-*
	@$(call fuzz_run,$(FUZZ_BRIEF_SECONDS),1,$(B)/fuzz/brief)

# ---- the soak: long runs of what the tests run briefly ---------------------------------
# The differential test of the Mach core for SOAK_OPS operations in all (its four runs
# share them), from a fresh seed each time (printed, and on a failure with the command
# that replays it); then the guest's fork and snapshot/restore suites in a loop for
# SOAK_KVM_SECONDS. Those need /dev/kvm: without it they print SKIP once and the loop ends.
SOAK_OPS         ?= 100000000
SOAK_SEED        ?= $(shell date +%s)
SOAK_KVM_SECONDS ?= 600
soak: all $(B)/run_tests
	VMM_DIFF_OPS=$$(( ($(SOAK_OPS) + 3) / 4 )) VMM_DIFF_SEED=$(SOAK_SEED) $(B)/run_tests vm_differential
	@end=$$(( $$(date +%s) + $(SOAK_KVM_SECONDS) )); round=0; \
	while [ $$(date +%s) -lt $$end ]; do round=$$((round + 1)); \
		out=$$($(B)/run_tests kvm_fork kvm_snapshot) || { echo "$$out"; echo "soak: KVM round $$round failed"; exit 1; }; \
		case "$$out" in *SKIP:*) echo "$$out"; echo "soak: SKIP: the KVM loop needs /dev/kvm"; exit 0 ;; esac; \
		echo "soak: KVM round $$round: $$(echo "$$out" | tail -n 1)"; \
	done

# ---- installing ------------------------------------------------------------------------
# The usual variables: PREFIX where the files go, DESTDIR a staging root in front of it (for
# packages; the files still expect to run from PREFIX). Up to date, install only copies.
# The pagers get a vmm- prefix: a bare pager_server would be a vague name in a shared bin
# folder.
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  := $(PREFIX)/bin
MAN1DIR := $(PREFIX)/share/man/man1
COMPDIR := $(PREFIX)/share/bash-completion/completions
INSTALLED := $(BINDIR)/vmm $(BINDIR)/vmm-pager-server $(BINDIR)/vmm-coherent-pager $(BINDIR)/vmm-rados \
	$(MAN1DIR)/vmm.1 $(COMPDIR)/vmm

install: $(B)/vmm $(B)/pager_server $(B)/coherent_pager $(B)/rados_server vmm/cli/vmm.1 tools/vmm-completion.bash
	install -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(MAN1DIR)" "$(DESTDIR)$(COMPDIR)"
	install -m 755 $(B)/vmm "$(DESTDIR)$(BINDIR)/vmm"
	install -m 755 $(B)/pager_server "$(DESTDIR)$(BINDIR)/vmm-pager-server"
	install -m 755 $(B)/coherent_pager "$(DESTDIR)$(BINDIR)/vmm-coherent-pager"
	install -m 755 $(B)/rados_server "$(DESTDIR)$(BINDIR)/vmm-rados"
	install -m 644 vmm/cli/vmm.1 "$(DESTDIR)$(MAN1DIR)/vmm.1"
	install -m 644 tools/vmm-completion.bash "$(DESTDIR)$(COMPDIR)/vmm"

uninstall:
	rm -f $(foreach f,$(INSTALLED),"$(DESTDIR)$(f)")

clean:
	rm -rf $(B)

-include $(shell find $(B) -name '*.d' 2>/dev/null)
