# vmm: a KVM virtual machine monitor whose guest memory is managed the Mach way.
#
#   make          build build/vmm and build/guest.elf
#   make run      install missing build dependencies, build, boot the demo guest
#   make test     the same set-up, then every test (unit suites also under ASan+UBSan)
#   make bench    benchmarks, each figure beside its peer or physical limit
#   make fuzz     run the fuzz targets (FUZZ_SECONDS each, default 20)
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
LIBS      = -pthread -lxxhash -ljansson
TESTLIBS  = $(shell pkg-config --libs check 2>/dev/null) $(LIBS)

DEMO_CMDLINE ?= hello touch=128M
DEMO_ARGS    ?= -m 256M -c 2

MMU_SRC    := $(wildcard mmu/*.c) $(wildcard pagers/*.c)
VMM_SRC    := $(filter-out vmm/main.c,$(wildcard vmm/*.c vmm/*/*.c))
TEST_SRC   := $(wildcard tests/check_*.c)
SUITES     := $(patsubst tests/check_%.c,%,$(TEST_SRC))
BENCH_SRC  := $(wildcard tools/bench_*.c)
TOOL_SRC   := $(filter-out $(BENCH_SRC) $(wildcard tools/fuzz_*.c),$(wildcard tools/*.c))
FUZZ_SRC   := $(wildcard tools/fuzz_*.c)
GUEST_SRC  := $(wildcard guest/*.c) $(wildcard guest/*.S)

obj = $(patsubst %.c,$(B)/$(1)/%.o,$(patsubst %.S,$(B)/$(1)/%.o,$(2)))

.PHONY: all run test unit-asan bench fuzz deps clean FORCE
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
$(B)/plain/libvmm.a: $(call obj,plain,$(VMM_SRC))
$(B)/asan/libvmm.a: $(call obj,asan,$(VMM_SRC))
$(B)/%.a:
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

HOSTLIBS = $(B)/$(1)/libvmm.a $(B)/$(1)/libmmu.a

# Static (PIE, so still randomized): no dynamic linking before main (about half a
# millisecond of every start here) and no shared-library pages in the VMM's memory.
$(B)/vmm: $(B)/plain/vmm/main.o $(call HOSTLIBS,plain)
	$(CC) -static-pie -o $@ $^ $(LIBS)

$(B)/%: $(B)/plain/tools/%.o $(call HOSTLIBS,plain)
	$(CC) -o $@ $^ $(LIBS)

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

# The sanitizer pass covers the unit suites; the plain pass runs everything and prints
# the closing summary line.
unit-asan: $(B)/asan/run_tests
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 $(B)/asan/run_tests --unit-only

test: all $(B)/run_tests unit-asan
	@tools/deps.sh test
	$(B)/run_tests

# ---- benchmarks and fuzzing ------------------------------------------------------------
$(B)/bench/%: $(B)/plain/tools/%.o $(call HOSTLIBS,plain)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ $(LIBS)
bench: all $(patsubst tools/%.c,$(B)/bench/%,$(BENCH_SRC))
	@tools/deps.sh bench || echo "bench: QEMU could not be installed; its columns will be empty"
	tools/bench.sh $(B)

FUZZ_SECONDS ?= 20
FUZZ_CFLAGS := $(CSTD) -g -O1 -I. -fsanitize=fuzzer,address,undefined
$(B)/fuzz/%: tools/%.c $(MMU_SRC) $(VMM_SRC)
	@tools/deps.sh fuzz
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^ $(LIBS)
fuzz: $(patsubst tools/%.c,$(B)/fuzz/%,$(FUZZ_SRC))
	@for f in $^; do echo "fuzz: $$f for $(FUZZ_SECONDS)s"; \
		mkdir -p $(B)/fuzz/corpus-$$(basename $$f); \
		$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $(B)/fuzz/corpus-$$(basename $$f) \
		2>&1 | grep -E 'stat::number_of_executed_units|ERROR|SUMMARY' || exit 1; done

clean:
	rm -rf $(B)

-include $(shell find $(B) -name '*.d' 2>/dev/null)
