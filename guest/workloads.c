/*
 * The user-mode program (CPL3, IOPL=3): reads the PVH start info, runs the workloads
 * named on the command line on every CPU, and exits through the debug-exit port.
 *
 * Command line: space-separated tokens, run in order:
 *   hello          print a greeting (cpu 0)
 *   seed=N         seed for the patterns of the workloads that follow (default 1)
 *   touch=SIZE     write a pattern of (address, seed) to every page of SIZE bytes of free
 *                  memory, split over all CPUs, then verify every page (each CPU checks
 *                  another CPU's share)
 *   spin[=SIZE]    rewrite and re-verify SIZE bytes (default 16M) forever, one round at a time
 *   rounds=SIZE,N  the same for N (decimal) rounds, a sync point after each, then go on
 *   dup=GPA,LEN    write the same non-zero page over every page of the range
 *   sync=N         report sync point N on the test port (the host may act on it)
 *   idle           wait for ever without touching memory (until stopped from outside)
 *   await=GPA      wait until the 8 bytes at GPA become non-zero (the host writes them, e.g.
 *                  with vm-write, once it has changed the guest's memory), then go on
 *   forktest=SIZE  fill SIZE, sync point 1, wait for a fork, then check parent and own pages
 *   sharetest=GPA,N  the page at GPA shared by N VMs (the host forks N - 1 children after
 *                  sync point 1, the page inherited "share"): each sees all N marks and
 *                  counts, and its next page (not shared) holds its own mark only
 *   crash          execute an invalid instruction in user mode (tests the exception report)
 *   sum=GPA,LEN    print "sum GPA LEN: 0x<FNV-1a 64>" of guest-physical [GPA, GPA+LEN)
 *   fill=GPA,LEN   write the (address, seed) pattern over [GPA, GPA+LEN) (whole pages)
 *   check=GPA,LEN  verify that pattern there ("check: N pages ok" or the first bad address)
 *   poke=GPA       write one byte at GPA (e.g. into read-only memory)
 *   scan=GPA,LEN   read one word of every page of [GPA, GPA+LEN) in order
 *   rscan=GPA,LEN  read 2048 random pages of the range, timing each read with rdtsc;
 *                  print "rscan: 2048 reads p50 X p99 Y max Z cycles"
 * GPA and LEN: 0x-hex or a SIZE. sum, fill, check and poke run on cpu 0.
 * SIZE: digits with K, M or G; a bare number means MiB (abi_parse_size).
 */
#include <stdbool.h>

#include "guest/abi.h"
#include "guest/kernel.h"
#include "guest/lib.h"

#define PAGE_SIZE 4096ull
#define WORDS_PER_PAGE (PAGE_SIZE / 8)

struct barrier {
	unsigned count;      /* CPUs arrived in this generation */
	unsigned generation; /* bumped by the last CPU to arrive */
};

/* State shared by all CPUs of the guest. */
static struct barrier barrier;
static uint64_t first_bad_addr;   /* lowest mismatching address seen, 0 if none */
static uint64_t first_bad_expect; /* expected and found words at first_bad_addr */
static uint64_t first_bad_found;
static unsigned ncpus_total;

static void barrier_wait(void)
{
	unsigned gen = __atomic_load_n(&barrier.generation, __ATOMIC_ACQUIRE);
	if (__atomic_add_fetch(&barrier.count, 1, __ATOMIC_ACQ_REL) == ncpus_total) {
		__atomic_store_n(&barrier.count, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&barrier.generation, gen + 1, __ATOMIC_RELEASE);
		return;
	}
	while (__atomic_load_n(&barrier.generation, __ATOMIC_ACQUIRE) == gen)
		cpu_relax();
}

static void say(const char *a, uint64_t n, const char *b)
{
	struct line l = {.len = 0};
	line_str(&l, a);
	line_u64(&l, n);
	line_str(&l, b);
	line_flush(&l);
}

static void page_fill(uint64_t addr, uint64_t seed)
{
	uint64_t key = abi_page_key(addr, seed);
	volatile uint64_t *w = (volatile uint64_t *)addr;
	for (uint64_t i = 0; i < WORDS_PER_PAGE; i++)
		w[i] = key + i;
}

/* Returns true when the page holds its pattern; otherwise records the first mismatch. */
static bool page_check(uint64_t addr, uint64_t seed)
{
	uint64_t key = abi_page_key(addr, seed);
	const volatile uint64_t *w = (const volatile uint64_t *)addr;
	for (uint64_t i = 0; i < WORDS_PER_PAGE; i++) {
		if (w[i] != key + i) {
			uint64_t bad = addr + i * 8, seen = 0;
			/* Keep the lowest address over all CPUs. */
			while (!__atomic_compare_exchange_n(&first_bad_addr, &seen, bad, false, __ATOMIC_ACQ_REL,
							    __ATOMIC_ACQUIRE)) {
				if (seen != 0 && seen < bad)
					return false;
			}
			first_bad_expect = key + i;
			first_bad_found = w[i];
			return false;
		}
	}
	return true;
}

/* Pages [first, last) of @npages that @cpu handles when split over all CPUs. */
static void share(uint64_t npages, unsigned cpu, uint64_t *first, uint64_t *last)
{
	*first = npages * cpu / ncpus_total;
	*last = npages * (cpu + 1) / ncpus_total;
}

static int touch(uint64_t bytes, uint64_t seed, unsigned cpu)
{
	uint64_t npages = (bytes + PAGE_SIZE - 1) / PAGE_SIZE, first, last;
	share(npages, cpu, &first, &last);
	for (uint64_t p = first; p < last; p++)
		page_fill(ABI_FREE_BASE + p * PAGE_SIZE, seed);
	barrier_wait();
	share(npages, (cpu + 1) % ncpus_total, &first, &last);
	for (uint64_t p = first; p < last; p++)
		if (!page_check(ABI_FREE_BASE + p * PAGE_SIZE, seed))
			break;
	barrier_wait();
	if (first_bad_addr) {
		if (cpu == 0) {
			struct line l = {.len = 0};
			line_str(&l, "touch: mismatch at ");
			line_hex(&l, first_bad_addr);
			line_str(&l, ": expected ");
			line_hex(&l, first_bad_expect);
			line_str(&l, ", found ");
			line_hex(&l, first_bad_found);
			line_str(&l, "\n");
			line_flush(&l);
		}
		return ABI_STATUS_VERIFY_FAILED;
	}
	if (cpu == 0)
		say("touch: ", npages, " pages ok\n");
	return ABI_STATUS_OK;
}

/* Rewrite and re-verify SIZE bytes @nrounds times (0: until stopped). Each CPU works on its
 * own share; cpu 0 reports each round on the test port (a sync point when counted). */
static void spin(uint64_t bytes, uint64_t seed, unsigned cpu, uint64_t nrounds)
{
	uint64_t npages = (bytes + PAGE_SIZE - 1) / PAGE_SIZE, first, last;
	share(npages, cpu, &first, &last);
	if (cpu == 0 && !nrounds)
		say("spin: rewriting ", npages, " pages until stopped\n");
	for (uint64_t round = 0; !nrounds || round < nrounds; round++) {
		for (uint64_t p = first; p < last; p++)
			page_fill(ABI_FREE_BASE + p * PAGE_SIZE, seed + round);
		for (uint64_t p = first; p < last; p++) {
			if (!page_check(ABI_FREE_BASE + p * PAGE_SIZE, seed + round)) {
				struct line l = {.len = 0};
				line_str(&l, "spin: mismatch at ");
				line_hex(&l, first_bad_addr);
				line_str(&l, "\n");
				line_flush(&l);
				guest_exit(ABI_STATUS_VERIFY_FAILED);
			}
		}
		if (cpu == 0)
			outl(ABI_PORT_TEST, ABI_SYNC(nrounds ? ABI_SYNC_POINT : ABI_SYNC_ROUND, round));
	}
	barrier_wait();
	if (cpu == 0)
		say("rounds: ", nrounds, " rounds ok\n");
}

/* Report sync point 1 (ready) and wait until a fork changes the identity port's
 * generation; the identity then (ABI_ID_INDEX: 0 in the parent, K in child K). */
static unsigned await_fork(void)
{
	unsigned gen0 = ABI_ID_GENERATION(inl(ABI_PORT_ID));
	outl(ABI_PORT_TEST, ABI_SYNC(ABI_SYNC_POINT, 1));
	unsigned id;
	while (ABI_ID_GENERATION(id = inl(ABI_PORT_ID)) == gen0)
		cpu_relax();
	return id;
}

/*
 * forktest: fill @bytes with the pattern, report sync point 1 (ready), and wait until a
 * fork changes the identity port's generation. Then VM k (0 = the parent) rewrites MiB k
 * of the range with its own pattern and checks the whole range: its MiB holds its own
 * pattern, every other page the parent's: a child sees the parent's pages plus only its
 * own writes. cpu 0 does the work; the others wait.
 */
#define FORK_CHUNK (1ull << 20)
static int forktest(uint64_t bytes, uint64_t seed, unsigned cpu)
{
	uint64_t first = ABI_FREE_BASE, end = ABI_FREE_BASE + bytes;
	int status = ABI_STATUS_OK;
	if (cpu == 0) {
		for (uint64_t a = first; a < end; a += PAGE_SIZE)
			page_fill(a, seed);
		unsigned id = await_fork();
		unsigned k = ABI_ID_INDEX(id);
		uint64_t mine = first + k * FORK_CHUNK;
		for (uint64_t a = mine; a < mine + FORK_CHUNK && a < end; a += PAGE_SIZE)
			page_fill(a, seed + 1000 + k);
		uint64_t n = 0;
		for (uint64_t a = first; a < end; a += PAGE_SIZE, n++) {
			bool own = a >= mine && a < mine + FORK_CHUNK;
			if (!page_check(a, own ? seed + 1000 + k : seed)) {
				struct line l = {.len = 0};
				line_str(&l, "fork: vm ");
				line_u64(&l, k);
				line_str(&l, ": mismatch at ");
				line_hex(&l, first_bad_addr);
				line_str(&l, "\n");
				line_flush(&l);
				status = ABI_STATUS_VERIFY_FAILED;
				break;
			}
		}
		if (status == ABI_STATUS_OK) {
			struct line l = {.len = 0};
			line_str(&l, "fork: vm ");
			line_u64(&l, k);
			line_str(&l, " generation ");
			line_u64(&l, ABI_ID_GENERATION(id));
			line_str(&l, ": ");
			line_u64(&l, n);
			line_str(&l, " pages ok\n");
			line_flush(&l);
		}
	}
	barrier_wait();
	return status;
}

/*
 * sharetest: the page at @gpa is inherited "share" by the forks the host makes after sync
 * point 1 (@n VMs in all, the parent included); the page after it is not shared. Once a
 * fork changed the identity port's generation, VM k (0 = the parent) writes its mark into
 * word k of the shared page and into its own next page, adds SHARE_ADDS to the counter in
 * the shared page's last word one locked add at a time, then waits (at most
 * SHARE_WAIT_CYCLES) until every mark is there and the counter holds all the adds: each
 * VM sees the others' writes at once, and none of their private ones. cpu 0 does the work.
 */
#define SHARE_MARK 0x5348415245000000ull /* "SHARE" */
#define SHARE_ADDS 1000u
#define SHARE_WAIT_CYCLES (1ull << 38)
static uint64_t rdtsc(void);
static int sharetest(uint64_t gpa, uint64_t n, unsigned cpu)
{
	if (cpu != 0)
		return ABI_STATUS_OK;
	uint64_t *shared = (uint64_t *)gpa;
	volatile uint64_t *own = (volatile uint64_t *)(gpa + PAGE_SIZE);
	unsigned k = ABI_ID_INDEX(await_fork());
	uint64_t mark = SHARE_MARK | k;
	__atomic_store_n(&shared[k], mark, __ATOMIC_SEQ_CST);
	*own = mark;
	for (unsigned i = 0; i < SHARE_ADDS; i++)
		__atomic_fetch_add(&shared[WORDS_PER_PAGE - 1], 1, __ATOMIC_SEQ_CST);
	uint64_t t0 = rdtsc(), seen, count;
	for (;;) {
		seen = 0;
		for (uint64_t j = 0; j < n; j++)
			seen += __atomic_load_n(&shared[j], __ATOMIC_SEQ_CST) == (SHARE_MARK | j);
		count = __atomic_load_n(&shared[WORDS_PER_PAGE - 1], __ATOMIC_SEQ_CST);
		if ((seen == n && count == n * SHARE_ADDS) || rdtsc() - t0 > SHARE_WAIT_CYCLES)
			break;
		cpu_relax();
	}
	bool ok = seen == n && count == n * SHARE_ADDS && *own == mark;
	struct line l = {.len = 0};
	line_str(&l, "share: vm ");
	line_u64(&l, k);
	line_str(&l, ok ? ": " : ": FAILED: ");
	line_u64(&l, seen);
	line_str(&l, " of ");
	line_u64(&l, n);
	line_str(&l, " marks, count ");
	line_u64(&l, count);
	line_str(&l, *own == mark ? ", own page ok\n" : ", own page changed\n");
	line_flush(&l);
	return ok ? ABI_STATUS_OK : ABI_STATUS_VERIFY_FAILED;
}

/* An address or length: 0x-hex, or the SIZE syntax. */
static bool parse_number(const char *s, size_t len, uint64_t *v)
{
	if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		uint64_t r = 0;
		for (size_t i = 2; i < len; i++) {
			char c = s[i];
			unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0') : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
				   : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : 16;
			if (d > 15 || r >> 60)
				return false;
			r = r << 4 | d;
		}
		*v = r;
		return true;
	}
	unsigned long long b;
	if (abi_parse_size(s, len, &b) != 0)
		return false;
	*v = b;
	return true;
}

/* "GPA,LEN" (or "GPA" alone when @len is NULL). */
static bool parse_range(const char *arg, size_t arg_len, uint64_t *gpa, uint64_t *len)
{
	size_t comma = 0;
	while (comma < arg_len && arg[comma] != ',')
		comma++;
	if (!parse_number(arg, comma, gpa))
		return false;
	if (!len)
		return comma == arg_len;
	return comma < arg_len && parse_number(arg + comma + 1, arg_len - comma - 1, len) && *len > 0 &&
	       *gpa + *len > *gpa;
}

static void range_sum(uint64_t gpa, uint64_t len)
{
	uint64_t h = abi_fnv1a64(ABI_FNV_INIT, (const unsigned char *)gpa, len);
	struct line l = {.len = 0};
	line_str(&l, "sum ");
	line_hex(&l, gpa);
	line_str(&l, " ");
	line_u64(&l, len);
	line_str(&l, ": ");
	line_hex(&l, h);
	line_str(&l, "\n");
	line_flush(&l);
}

static int range_check(uint64_t gpa, uint64_t len, uint64_t seed)
{
	uint64_t first = gpa & ~(PAGE_SIZE - 1), end = gpa + len, n = 0;
	for (uint64_t a = first; a < end; a += PAGE_SIZE, n++) {
		if (!page_check(a, seed)) {
			struct line l = {.len = 0};
			line_str(&l, "check: mismatch at ");
			line_hex(&l, first_bad_addr);
			line_str(&l, "\n");
			line_flush(&l);
			return ABI_STATUS_VERIFY_FAILED;
		}
	}
	say("check: ", n, " pages ok\n");
	return ABI_STATUS_OK;
}

static uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi)::"memory");
	return (uint64_t)hi << 32 | lo;
}

static void range_scan(uint64_t gpa, uint64_t len)
{
	uint64_t acc = 0;
	for (uint64_t a = gpa & ~(PAGE_SIZE - 1); a < gpa + len; a += PAGE_SIZE)
		acc += *(const volatile uint64_t *)a;
	say("scan: ", len / PAGE_SIZE, acc == 1 ? " pages read.\n" : " pages read\n");
}

#define RSCAN_READS 2048
static uint64_t rscan_cycles[RSCAN_READS];

static void range_rscan(uint64_t gpa, uint64_t len)
{
	uint64_t pages = len / PAGE_SIZE, x = 0x9e3779b97f4a7c15ull;
	if (pages == 0)
		return;
	for (unsigned i = 0; i < RSCAN_READS; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint64_t a = (gpa & ~(PAGE_SIZE - 1)) + (x % pages) * PAGE_SIZE;
		uint64_t t0 = rdtsc();
		(void)*(const volatile uint64_t *)a;
		rscan_cycles[i] = rdtsc() - t0;
	}
	/* Insertion sort: 2048 entries, run once. */
	for (unsigned i = 1; i < RSCAN_READS; i++) {
		uint64_t v = rscan_cycles[i];
		unsigned j = i;
		for (; j > 0 && rscan_cycles[j - 1] > v; j--)
			rscan_cycles[j] = rscan_cycles[j - 1];
		rscan_cycles[j] = v;
	}
	struct line l = {.len = 0};
	line_str(&l, "rscan: 2048 reads p50 ");
	line_u64(&l, rscan_cycles[RSCAN_READS / 2]);
	line_str(&l, " p99 ");
	line_u64(&l, rscan_cycles[RSCAN_READS * 99 / 100]);
	line_str(&l, " max ");
	line_u64(&l, rscan_cycles[RSCAN_READS - 1]);
	line_str(&l, " cycles\n");
	line_flush(&l);
}

/* Size of the RAM that contains ABI_FREE_BASE, from the PVH memory map. */
static uint64_t free_bytes(const struct abi_pvh_start_info *si)
{
	if (si->version < 1)
		return 0;
	const struct abi_pvh_memmap_entry *e = (const void *)si->memmap_paddr;
	for (uint32_t i = 0; i < si->memmap_entries; i++)
		if (e[i].type == ABI_PVH_MEMMAP_RAM && e[i].addr <= ABI_FREE_BASE &&
		    e[i].addr + e[i].size > ABI_FREE_BASE)
			return e[i].addr + e[i].size - ABI_FREE_BASE;
	return 0;
}

/* All RAM the memory map lists, below and above the hole under 4 GiB. */
static uint64_t ram_bytes(const struct abi_pvh_start_info *si)
{
	if (si->version < 1)
		return 0;
	const struct abi_pvh_memmap_entry *e = (const void *)si->memmap_paddr;
	uint64_t sum = 0;
	for (uint32_t i = 0; i < si->memmap_entries; i++)
		if (e[i].type == ABI_PVH_MEMMAP_RAM)
			sum += e[i].size;
	return sum;
}

static void __attribute__((noreturn)) bad_cmdline(unsigned cpu, const char *why, const char *tok, size_t len)
{
	if (cpu == 0) {
		struct line l = {.len = 0};
		line_str(&l, "guest: ");
		line_str(&l, why);
		line_str(&l, ": '");
		for (size_t i = 0; i < len && l.len < sizeof(l.buf) - 2; i++)
			l.buf[l.len++] = tok[i];
		line_str(&l, "'\n");
		line_flush(&l);
		guest_exit(ABI_STATUS_BAD_CMDLINE);
	}
	for (;;)
		cpu_relax();
}

void user_main(const struct abi_pvh_start_info *si, uint64_t cpu64, uint64_t ncpus)
{
	unsigned cpu = (unsigned)cpu64;
	ncpus_total = (unsigned)ncpus;
	const char *cmd = si->cmdline_paddr ? (const char *)si->cmdline_paddr : "";
	uint64_t avail = free_bytes(si), seed = 1;
	int status = ABI_STATUS_OK;

	for (const char *p = cmd; *p && status == ABI_STATUS_OK;) {
		while (*p == ' ')
			p++;
		const char *tok = p;
		while (*p && *p != ' ')
			p++;
		size_t len = (size_t)(p - tok), name_len = 0;
		if (len == 0)
			break;
		while (name_len < len && tok[name_len] != '=')
			name_len++;
		const char *arg = tok + name_len + 1;
		size_t arg_len = name_len < len ? len - name_len - 1 : 0;
		unsigned long long size = 16ull << 20;
		bool has_arg = name_len < len;

		if (str_eq(tok, len, "hello")) {
			if (cpu == 0) {
				struct line l = {.len = 0};
				line_str(&l, "hello from the vmm guest: ");
				line_u64(&l, ncpus);
				line_str(&l, ncpus == 1 ? " cpu, " : " cpus, ");
				line_u64(&l, (ram_bytes(si) + (1u << 20) - 1) >> 20); /* QEMU leaves out a few KiB */
				line_str(&l, " MiB RAM\n");
				line_flush(&l);
			}
		} else if (str_eq(tok, len, "crash")) {
			if (cpu == 0)
				__asm__ volatile("ud2");
		} else if ((str_eq(tok, name_len, "sum") || str_eq(tok, name_len, "fill") ||
			    str_eq(tok, name_len, "check") || str_eq(tok, name_len, "scan") ||
			    str_eq(tok, name_len, "rscan")) && has_arg) {
			uint64_t gpa, rlen;
			if (!parse_range(arg, arg_len, &gpa, &rlen))
				bad_cmdline(cpu, "bad range (use GPA,LEN)", tok, len);
			if (cpu == 0) {
				if (str_eq(tok, name_len, "scan"))
					range_scan(gpa, rlen);
				else if (tok[0] == 'r')
					range_rscan(gpa, rlen);
				else if (tok[0] == 's')
					range_sum(gpa, rlen);
				else if (tok[0] == 'f')
					for (uint64_t a = gpa & ~(PAGE_SIZE - 1); a < gpa + rlen; a += PAGE_SIZE)
						page_fill(a, seed);
				else
					status = range_check(gpa, rlen, seed);
			}
			barrier_wait();
		} else if (str_eq(tok, name_len, "dup") && has_arg) {
			uint64_t gpa, rlen;
			if (!parse_range(arg, arg_len, &gpa, &rlen))
				bad_cmdline(cpu, "bad range (use GPA,LEN)", tok, len);
			if (cpu == 0)
				for (uint64_t a = gpa & ~(PAGE_SIZE - 1); a < gpa + rlen; a += PAGE_SIZE)
					for (uint64_t i = 0; i < WORDS_PER_PAGE; i++)
						((volatile uint64_t *)a)[i] = 0x6475706475706475ull + i;
			barrier_wait();
		} else if (str_eq(tok, name_len, "sync") && has_arg) {
			uint64_t n;
			if (!str_u64(arg, arg_len, &n))
				bad_cmdline(cpu, "bad sync point", tok, len);
			barrier_wait();
			if (cpu == 0)
				outl(ABI_PORT_TEST, ABI_SYNC(ABI_SYNC_POINT, n));
		} else if (str_eq(tok, name_len, "await") && has_arg) {
			uint64_t gpa;
			if (!parse_range(arg, arg_len, &gpa, NULL))
				bad_cmdline(cpu, "bad address", tok, len);
			if (cpu == 0)
				while (!*(volatile uint64_t *)gpa)
					cpu_relax();
			barrier_wait();
		} else if (str_eq(tok, len, "idle")) {
			for (;;)
				cpu_relax();
		} else if (str_eq(tok, name_len, "poke") && has_arg) {
			uint64_t gpa;
			if (!parse_range(arg, arg_len, &gpa, NULL))
				bad_cmdline(cpu, "bad address", tok, len);
			if (cpu == 0)
				*(volatile uint8_t *)gpa = 0x5a;
			barrier_wait();
		} else if (str_eq(tok, name_len, "seed") && has_arg) {
			if (!str_u64(arg, arg_len, &seed))
				bad_cmdline(cpu, "bad seed", tok, len);
		} else if (str_eq(tok, name_len, "touch") || str_eq(tok, name_len, "spin") ||
			   str_eq(tok, name_len, "forktest")) {
			bool is_spin = tok[0] == 's';
			if ((has_arg || !is_spin) && abi_parse_size(arg, arg_len, &size) != 0)
				bad_cmdline(cpu, "bad size", tok, len);
			if (size > avail)
				bad_cmdline(cpu, "size exceeds free guest memory", tok, len);
			barrier_wait();
			if (is_spin)
				spin(size, seed, cpu, 0);
			status = tok[0] == 'f' ? forktest(size, seed, cpu) : touch(size, seed, cpu);
		} else if (str_eq(tok, name_len, "sharetest") && has_arg) {
			size_t comma = 0;
			while (comma < arg_len && arg[comma] != ',')
				comma++;
			uint64_t gpa, n;
			if (comma == arg_len || !parse_number(arg, comma, &gpa) || (gpa & (PAGE_SIZE - 1)) ||
			    !str_u64(arg + comma + 1, arg_len - comma - 1, &n) || n == 0 || n >= WORDS_PER_PAGE)
				bad_cmdline(cpu, "bad sharetest (use GPA,N: a page address, 1 to 511 VMs)", tok, len);
			barrier_wait();
			status = sharetest(gpa, n, cpu);
		} else if (str_eq(tok, name_len, "rounds") && has_arg) {
			uint64_t nrounds;
			size_t comma = 0;
			while (comma < arg_len && arg[comma] != ',')
				comma++;
			if (comma == arg_len || abi_parse_size(arg, comma, &size) != 0 ||
			    !str_u64(arg + comma + 1, arg_len - comma - 1, &nrounds) || nrounds == 0)
				bad_cmdline(cpu, "bad rounds (use SIZE,N)", tok, len);
			if (size > avail)
				bad_cmdline(cpu, "size exceeds free guest memory", tok, len);
			barrier_wait();
			spin(size, seed, cpu, nrounds);
		} else {
			bad_cmdline(cpu, "unknown workload", tok, len);
		}
	}
	barrier_wait();
	if (cpu == 0)
		guest_exit((uint32_t)status);
	for (;;)
		cpu_relax();
}
