# tracegate: the two commands that matter are `make run` and `make test`.
# Both install what is missing (scripts/install-deps.sh, Debian 12, as root), then build.

BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
JOBS       ?= $(shell nproc)
FUZZ_SECONDS ?= 60
# libFuzzer targets (clang). pgproxy's row_masker_fuzz is not among them: Debian's clang 14
# cannot compile pgproxy's Asio coroutines ("cannot represent a difference across
# sections"); its corpus is replayed by `make test` like every other fuzz target's.
FUZZ_TARGETS ?= config_fuzz jwks_fuzz jwt_fuzz json_mask_fuzz framing_fuzz messages_fuzz \
                scram_fuzz gate_fuzz gate_deep_fuzz

CMAKE_FLAGS ?= -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo

# `make test SANITIZE=1`: the whole suite, gateway included, under ASan + UBSan. Built at
# -O1 with line tables only (-g1: stack traces keep file:line) and without the benchmark
# binaries, which roughly halves its compile time on 2 cores against -O2 -g.
ifeq ($(SANITIZE),1)
BUILD := $(BUILD_ASAN)
CMAKE_FLAGS += -DTRACEGATE_SANITIZE=ON -DTRACEGATE_BENCHMARKS=OFF \
               "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" \
               "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG"
endif

.PHONY: all deps build build-only run test test-release test-asan format format-check bench bench-jit bench-gate bench-mask \
	bench-record bench-http fuzz clean

all: build

deps:
	./scripts/install-deps.sh

build: deps build-only

build-only:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

# Starts a throwaway PostgreSQL trace store with generated traces and tracegate in front
# of it, prints the psql command to connect; Ctrl-C stops everything.
run: build
	./scripts/demo.sh $(BUILD)

# Every test, as CI runs it (scripts/test-all.sh): formatting, then the release build and
# the whole suite (unit, fuzz-corpus replay, integration against real PostgreSQL, psql,
# pgbench, libpq, an OpenID provider), then the same suite built with ASan + UBSan; each
# phase's time is printed at the end. `make test SANITIZE=1` runs only the sanitizer half.
ifeq ($(SANITIZE),1)
TEST_PHASES ?= asan
else
TEST_PHASES ?= release asan
endif
test:
	JOBS=$(JOBS) PHASES="$(TEST_PHASES)" ./scripts/test-all.sh

# One half only: the release build's suite, or the sanitizer build's.
test-release:
	$(MAKE) test TEST_PHASES=release

test-asan:
	$(MAKE) test TEST_PHASES=asan

format:
	git ls-files '*.cpp' '*.h' | xargs clang-format -i

format-check:
	@git ls-files '*.cpp' '*.h' | xargs clang-format --dry-run --Werror

bench: build
	TRACEGATE_BIN=$(BUILD)/tracegate ./bench/pg_overhead.sh

# One just-in-time cycle (grant -> connect -> query -> close) vs a direct new connection.
bench-jit: build
	TRACEGATE_BIN=$(BUILD)/tracegate CLIENT_BIN=$(BUILD)/bench/jit_cycle_client ./bench/jit_cycle.sh

# Statement gate cost per statement (Google Benchmark, no servers): parse + classify (cold)
# vs the shape cache; JSON to bench/results/gate_bench.json. Builds only gate_bench.
# Extra flags: GATE_BENCH_ARGS='--benchmark_filter=Cached --benchmark_min_time=0.2'.
GATE_BENCH_ARGS ?=
bench-gate: deps
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS) --target gate_bench
	mkdir -p bench/results
	$(BUILD)/src/sql/gate_bench --benchmark_out=bench/results/gate_bench.json \
	  --benchmark_out_format=json $(GATE_BENCH_ARGS)

# Inline masking: the engine (masking_bench, MB/s per core, p50/p99 for 10 KB), a masked trace
# fetch against direct / pgbouncer / an unmasked grant (pgbench), and the gateway's RSS while a
# masked session streams ~1 GB; JSON to bench/results/masking.json. Builds only tracegate and
# masking_bench. Knobs as variables: make bench-mask DURATION=3 REPS=1 STREAM_MB=200 (quick).
bench-mask: deps
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS) --target tracegate masking_bench
	TRACEGATE_BIN=$(BUILD)/tracegate MASKING_BENCH=$(BUILD)/src/masking/masking_bench \
	  ./bench/masking.sh

# Session recording: an 8 KB trace fetch through a grant with the audit log off, batched and
# strict vs direct PostgreSQL (pgbench, 8 and 32 clients), p50/p99, bytes the log grows by per
# transaction and per session, one fdatasync; JSON to bench/results/recording.json. Builds
# only tracegate. Knobs as variables: make bench-record DURATION=3 REPS=1 CLIENTS=8 (quick).
bench-record: deps
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS) --target tracegate
	TRACEGATE_BIN=$(BUILD)/tracegate ./bench/recording.sh

# The HTTP data path: wrk fetching a 30 KB trace from the test store (tests/http_store.py)
# directly vs through tracegate's HTTP listener with masking (strict and batched recording),
# req/s, p50/p99, plus the one-call fetch's latency; JSON to
# bench/results/http_proxy-<timestamp>.json. Builds only tracegate. Knobs as variables:
# make bench-http DURATION=3 ROUNDS=1 (quick), CONNECTIONS=16, ROWS="direct masked".
bench-http: deps
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS) --target tracegate
	TRACEGATE_BIN=$(BUILD)/tracegate ./bench/http_proxy.sh

# Runs every libFuzzer target for FUZZ_SECONDS each (clang), from its committed corpus.
fuzz: deps
	CC=clang CXX=clang++ cmake -S . -B $(BUILD_FUZZ) $(CMAKE_FLAGS) -DTRACEGATE_FUZZ=ON \
	  -DTRACEGATE_SANITIZE=ON
	cmake --build $(BUILD_FUZZ) -j $(JOBS) --target $(FUZZ_TARGETS)
	./scripts/run-fuzzers.sh $(BUILD_FUZZ) $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)
