# syncpool - build, test, benchmark, install.
#
#   make                 build/libsyncpool.a and build/libsyncpool.so (SONAME libsyncpool.so.0)
#   make test            deps, the Check suites (pool suite again without rseq),
#                        the examples, the benchmark-shim smoke run, a staged install
#   make test-tsan       the same suites, library and tests under ThreadSanitizer
#   make test-asan       the same suites under AddressSanitizer + UndefinedBehaviorSanitizer
#   make bench           deps, every benchmark, then the comparison table, JSON and plots
#                        under bench/results/ (BENCH_FILTER=regex runs a subset)
#   make install PREFIX=/usr/local [DESTDIR=...]
#   make deps            install the Debian packages the above need (as root)
#
# Sources are found by wildcard: a new module is a new sync/<m>.c or pool/<m>.c,
# its suite tests/test_<m>.c and its benchmark bench/bench_<m>.c - no edit here.

VERSION_MAJOR := 0
VERSION       := 0.1.0

CC      ?= cc
CXX     ?= c++
PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
# SAN: empty, thread, or address (address also enables UBSan).
SAN     ?=
BENCH_FILTER ?= .
BENCH_MIN_TIME ?=
# Repetitions of every benchmark; the table shows each one's median (the
# development VM moves by up to +-30% from run to run).
BENCH_REPS ?= 3
RESULTS ?= bench/results

OPT      ?= -O2
WARN     := -Wall -Wextra -Werror
SANFLAGS :=
ifeq ($(SAN),thread)
  SANFLAGS := -fsanitize=thread
  OPT      := -O1
endif
ifeq ($(SAN),address)
  SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
  OPT      := -O1
endif

CPPFLAGS_ALL := -D_GNU_SOURCE -Iinclude $(CPPFLAGS)
CFLAGS_ALL   := -std=c11 $(OPT) -g $(WARN) -fPIC -fvisibility=hidden -pthread $(SANFLAGS) $(CFLAGS)
CXXFLAGS_ALL := -std=c++17 $(OPT) -g $(WARN) -pthread $(SANFLAGS) $(CXXFLAGS)
LIBS         := -ljemalloc -pthread

LIB_SRCS := $(sort $(wildcard sync/*.c pool/*.c))
LIB_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRCS))
HEADERS  := include/syncpool.h $(sort $(wildcard include/syncpool/*.h))
INT_HDRS := $(wildcard sync/*.h pool/*.h)

TEST_SRCS := $(sort $(wildcard tests/*.c))
TEST_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(filter-out tests/shim_smoke.c tests/install_smoke.c,$(TEST_SRCS)))
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt -lm)

BENCH_SRCS := $(sort $(wildcard bench/bench_*.c))
BENCH_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(BENCH_SRCS)) $(BUILD)/obj/bench/spbench.o
BENCH_LIBS := -lbenchmark -lck -lstdc++ -lm

EXAMPLE_SRCS := $(sort $(wildcard examples/*.c))
EXAMPLES     := $(patsubst examples/%.c,$(BUILD)/examples/%,$(EXAMPLE_SRCS))

STATIC := $(BUILD)/libsyncpool.a
SHARED := $(BUILD)/libsyncpool.so.$(VERSION)

.PHONY: all lib test test-run test-noinline test-tsan test-asan test-valgrind bench bench-run bench-build examples install \
        install-check user-sanitizer-check shim-check deps clean

all: lib
lib: $(STATIC) $(BUILD)/libsyncpool.so

$(BUILD)/obj/%.o: %.c $(HEADERS) $(INT_HDRS) tests/sptest.h bench/spbench.h bench/fairness.h Makefile
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS_ALL) $(OBJ_DEFS) -Isync -Ipool -Itests -Ibench $(CFLAGS_ALL) -c $< -o $@

# The library's own sources call the exported lock functions, not the
# headers' inline fast paths: those announce acquire/release to a user's
# ThreadSanitizer (see sync/sanitizer.h), which inline code in the
# uninstrumented library could not.
$(LIB_OBJS): OBJ_DEFS := -DSP_BUILDING_LIBRARY_=1

$(BUILD)/obj/bench/spbench.o: bench/spbench.cc bench/spbench.h Makefile
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS_ALL) -Ibench $(CXXFLAGS_ALL) -c $< -o $@

$(STATIC): $(LIB_OBJS)
	@mkdir -p $(@D)
	rm -f $@
	ar rcs $@ $^

$(SHARED): $(LIB_OBJS)
	$(CC) -shared $(CFLAGS_ALL) -Wl,-soname,libsyncpool.so.$(VERSION_MAJOR) -Wl,--no-undefined \
	    -Wl,-z,nodelete -o $@ $^ $(LIBS)

$(BUILD)/libsyncpool.so: $(SHARED)
	ln -sf libsyncpool.so.$(VERSION) $(BUILD)/libsyncpool.so.$(VERSION_MAJOR)
	ln -sf libsyncpool.so.$(VERSION) $@

# ---------------------------------------------------------------- tests

$(BUILD)/tests/run: $(TEST_OBJS) $(STATIC)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -o $@ $(TEST_OBJS) $(STATIC) $(CHECK_LIBS) $(LIBS) -lm

# The suites, then the pool suite again with glibc's rseq registration off,
# so the per-CPU fallback path is tested too.
test-run: $(BUILD)/tests/run
	$(BUILD)/tests/run
	CK_RUN_SUITE=pool GLIBC_TUNABLES=glibc.pthread.rseq=0 $(BUILD)/tests/run

# The suites under valgrind, which cannot follow restartable sequences (glibc's
# rseq registration fails there): the pool's fallback path, and every module,
# under memcheck.
test-valgrind: $(BUILD)/tests/run
	CK_TIMEOUT_MULTIPLIER=10 valgrind -q --error-exitcode=9 --suppressions=tests/valgrind.supp \
	    $(BUILD)/tests/run

test: deps lib test-run examples shim-check bench-build install-check user-sanitizer-check
	@for e in $(EXAMPLES); do echo "== $$e --test"; $$e --test || exit 1; done
	@echo "make test: all passed"

# The suites again with every inline fast path off: the tests then call the
# exported functions, which must behave the same.
NO_INLINE := -DSP_POOL_NO_INLINE -DSP_MUTEX_NO_INLINE -DSP_RWMUTEX_NO_INLINE \
             -DSP_SEMA_NO_INLINE -DSP_WAITGROUP_NO_INLINE -DSP_ONCE_NO_INLINE
test-noinline: deps
	$(MAKE) BUILD=build/noinline CFLAGS="$(NO_INLINE)" test-run

test-tsan: deps
	$(MAKE) BUILD=build/tsan SAN=thread test-run CK_TIMEOUT_MULTIPLIER=4 \
	    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 atexit_sleep_ms=0"

test-asan: deps
	$(MAKE) BUILD=build/asan SAN=address test-run CK_TIMEOUT_MULTIPLIER=3 \
	    ASAN_OPTIONS="detect_leaks=1:abort_on_error=0" UBSAN_OPTIONS="print_stacktrace=1"

export CK_TIMEOUT_MULTIPLIER TSAN_OPTIONS ASAN_OPTIONS UBSAN_OPTIONS

# The benchmark shim's own check: a C benchmark with threads, arguments and
# counters runs for a moment and its JSON must hold every registered run.
$(BUILD)/bench/shim_smoke: $(BUILD)/obj/tests/shim_smoke.o $(BUILD)/obj/bench/spbench.o
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS_ALL) -o $@ $^ -lbenchmark -pthread

shim-check: $(BUILD)/bench/shim_smoke
	$(BUILD)/bench/shim_smoke --benchmark_min_time=0.001 \
	    --benchmark_out=$(BUILD)/bench/shim_smoke.json --benchmark_out_format=json >/dev/null
	python3 bench/report.py $(BUILD)/bench/shim_smoke.json --verify \
	    'smoke/spin/threads:1' 'smoke/spin/threads:2' 'smoke/arg/16/threads:1' \
	    'smoke/arg/64/threads:1' --counter smoke/spin/threads:2=per_thread_ops \
	    --counter smoke/spin/threads:2=wall_ns_per_op \
	    --counter smoke/arg/16/threads:1=bytes_rate

# ---------------------------------------------------------------- examples

examples: $(EXAMPLES)

$(BUILD)/examples/%: $(BUILD)/obj/examples/%.o $(STATIC) $(BUILD)/obj/bench/spbench.o
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS_ALL) -o $@ $< $(STATIC) $(BUILD)/obj/bench/spbench.o $(BENCH_LIBS) $(LIBS)

# ---------------------------------------------------------------- benchmarks

$(BUILD)/bench/spbench_run: $(BENCH_OBJS) $(STATIC)
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS_ALL) -o $@ $(BENCH_OBJS) $(STATIC) $(BENCH_LIBS) $(LIBS)

bench: deps
	$(MAKE) bench-run

# Built (and its registrations listed) by make test, so a benchmark that no
# longer compiles fails the tests, not the next person's make bench.
bench-build: $(BUILD)/bench/spbench_run
	$(BUILD)/bench/spbench_run --benchmark_list_tests > $(BUILD)/bench/list.txt
	@echo "bench-build: $$(wc -l < $(BUILD)/bench/list.txt) benchmark runs registered"

bench-run: $(BUILD)/bench/spbench_run
	@mkdir -p $(RESULTS)
	$(BUILD)/bench/spbench_run --benchmark_filter='$(BENCH_FILTER)' \
	    $(if $(BENCH_MIN_TIME),--benchmark_min_time=$(BENCH_MIN_TIME)) \
	    --benchmark_repetitions=$(BENCH_REPS) \
	    --benchmark_out=$(RESULTS)/bench.json --benchmark_out_format=json
	python3 bench/report.py $(RESULTS)/bench.json --out $(RESULTS)

# ---------------------------------------------------------------- install

# Regenerated on every install: PREFIX may differ from the last one.
$(BUILD)/syncpool.pc: syncpool.pc.in FORCE
	@mkdir -p $(@D)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

FORCE:

install: lib $(BUILD)/syncpool.pc
	install -d $(DESTDIR)$(PREFIX)/include/syncpool $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 include/syncpool.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 include/syncpool/*.h $(DESTDIR)$(PREFIX)/include/syncpool/
	install -m 644 $(STATIC) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(SHARED) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libsyncpool.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libsyncpool.so.$(VERSION_MAJOR)
	ln -sf libsyncpool.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libsyncpool.so
	install -m 644 $(BUILD)/syncpool.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/

# Stage an install, build a program against it through pkg-config (shared
# and --static), run both, and check the shared library exports only sp_*.
install-check: lib
	rm -rf $(BUILD)/stage
	$(MAKE) --no-print-directory install PREFIX=$(CURDIR)/$(BUILD)/stage >/dev/null
	PKG_CONFIG_PATH=$(CURDIR)/$(BUILD)/stage/lib/pkgconfig sh -c '\
	  $(CC) -std=c11 -Wall -Wextra -Werror tests/install_smoke.c -o $(BUILD)/stage/app_shared \
	     $$(pkg-config --cflags --libs syncpool) -Wl,-rpath,$(CURDIR)/$(BUILD)/stage/lib && \
	  $(CC) -std=c11 -Wall -Wextra -Werror tests/install_smoke.c -o $(BUILD)/stage/app_static \
	     $$(pkg-config --cflags syncpool) $(CURDIR)/$(BUILD)/stage/lib/libsyncpool.a \
	     $$(pkg-config --libs --static syncpool | sed "s/-lsyncpool//") && \
	  $(CXX) -x c++ -std=c++17 -Wall -Wextra -Wold-style-cast -Werror -fsyntax-only tests/install_smoke.c \
	     $$(pkg-config --cflags syncpool)'
	$(BUILD)/stage/app_shared
	$(BUILD)/stage/app_static
	PKG_CONFIG_PATH=$(CURDIR)/$(BUILD)/stage/lib/pkgconfig sh -c '\
	  $(CC) -std=c11 -O2 -Wall -Wextra -Werror -fPIC -shared tests/dlclose/plugin.c \
	     -o $(BUILD)/stage/plugin.so $$(pkg-config --cflags --libs syncpool) && \
	  $(CC) -std=c11 -O2 -Wall -Wextra -Werror tests/dlclose/main.c -o $(BUILD)/stage/dlclose \
	     $$(pkg-config --cflags --libs syncpool) -ldl -Wl,-rpath,$(CURDIR)/$(BUILD)/stage/lib'
	$(BUILD)/stage/dlclose $(CURDIR)/$(BUILD)/stage/plugin.so
	$(CC) -std=c11 -O2 -Wall -Wextra -Werror -Iinclude tests/dlclose/unload.c -o $(BUILD)/stage/unload -ldl -lpthread
	LD_PRELOAD=$$($(CC) -print-file-name=libjemalloc.so.2) $(BUILD)/stage/unload $(CURDIR)/$(BUILD)/stage/lib/libsyncpool.so
	@bad=$$(nm -D --defined-only $(BUILD)/libsyncpool.so | awk '$$2 ~ /[TDBRVW]/ {print $$3}' | grep -v '^sp_' || true); \
	 if [ -n "$$bad" ]; then echo "exported without sp_: $$bad"; exit 1; fi
	@echo "install-check: ok"

# User programs built with -fsanitize=thread or address against the staged
# install (shared and static, gcc and clang): nothing reported through our
# primitives, deliberate races next to them still reported, and a use of a
# pool object after Put reported by the user's ASan.
user-sanitizer-check: install-check
	sh tests/user_tsan/run.sh $(CURDIR)/$(BUILD)/stage $(CURDIR)/$(BUILD)/user_tsan
	sh tests/user_asan/run.sh $(CURDIR)/$(BUILD)/stage $(CURDIR)/$(BUILD)/user_asan

# ---------------------------------------------------------------- deps

DEB_PKGS := libjemalloc-dev check libsubunit-dev libbenchmark-dev libck-dev gnuplot-nox \
            pkg-config g++ clang python3 valgrind

deps:
	@missing=$$(dpkg-query -W -f='$${db:Status-Abbrev} $${Package}\n' $(DEB_PKGS) 2>/dev/null \
	    | awk '$$1 != "ii" {print $$2}'); \
	 for p in $(DEB_PKGS); do dpkg-query -W $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	 missing=$$(echo $$missing | tr ' ' '\n' | sort -u | tr '\n' ' '); \
	 if [ -n "$${missing% }" ]; then \
	   if [ "$$(id -u)" = 0 ]; then \
	     echo "deps: installing $$missing"; \
	     DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing || \
	       { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; }; \
	   else \
	     echo "deps: missing Debian packages; run as root:"; \
	     echo "  apt-get update && apt-get install -y $$missing"; exit 1; \
	   fi; \
	 fi

clean:
	rm -rf build
