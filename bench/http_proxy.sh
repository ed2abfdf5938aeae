#!/usr/bin/env bash
# The HTTP data path: wrk fetching the 30 KiB trace `bench-30k` straight from the test trace
# store, side by side with the same fetch through tracegate's HTTP listener with masking
# (recording at the gateway's default, strict; and with batched recording), plus the
# latency of the one-call fetch (GET /v1/connections/traces-http/traces/bench-30k) and of
# the two-call path (POST /v1/grants, then GET with the bearer).
#
# Starts the store (python3 tests/http_store.py, plain HTTP, Basic auth; generated traces,
# no ../shared needed), the development issuer and one or two gateways (plain-HTTP listener
# and API), all on 127.0.0.1 in a temporary directory removed on exit, runs the rows
# interleaved (order rotating per round), prints a table and the target checks (the issue:
# >= 0.8 x direct requests/s, p99 added <= 2 ms) and writes
# bench/results/http_proxy-<UTC timestamp>.json. The work is done by bench/http_proxy_lib.py
# (with tests/harness.py's HttpTraceStore and Gateway); wrk's scripts are bench/wrk/*.lua.
# See bench/README.md.
#
#   bench/http_proxy.sh                               # 3 rounds x 3 rows x 10 s, ~2 min
#   DURATION=3 ROUNDS=1 bench/http_proxy.sh           # quick check, ~25 s
#   CONNECTIONS=16 ROWS="direct masked" bench/http_proxy.sh
#   make bench-http DURATION=3 ROUNDS=1               # builds tracegate first
#
# Knobs (environment): CONNECTIONS (8) DURATION (10) ROUNDS (3) WARMUP (2) ROWS ("direct
# masked masked-batched") ONECALL_N (200) ONECALL_WARMUP (10) GRANT_USES (1000)
# GRANT_SAFETY (2.5) GRANT_RPS_GUESS (20000) TRACEGATE_BIN TRACEGATE_WORKERS (2)
# UPSTREAM_TIMEOUT (5s) WRK (wrk) WRK_TIMEOUT (5s) STORE_TRACES (5) READY_TIMEOUT (30)
# OUT_JSON STRICT (0) KEEP_WORK (0) TRACE_ID (bench-30k).
# Exit status: 0; 2 when a row failed (non-2xx answers, socket errors, a call refused);
# 3 with STRICT=1 when a target is missed; 1 when it could not run at all.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)

die() { printf '[http_proxy] FATAL: %s\n' "$*" >&2; exit 1; }

for b in python3 "${WRK:-wrk}"; do
  command -v "$b" >/dev/null || die "$b not found (apt-get install -y wrk python3)"
done
for f in tests/harness.py tests/http_store.py bench/http_proxy_lib.py bench/wrk/bearer.lua \
         bench/wrk/basic.lua bench/wrk/report.lua; do
  [[ -f $REPO_DIR/$f ]] || die "$REPO_DIR/$f is missing"
done

if [[ -z ${TRACEGATE_BIN:-} ]]; then
  TRACEGATE_BIN=$REPO_DIR/build/tracegate
  for c in "$REPO_DIR/build/tracegate" "$REPO_DIR/build/src/app/tracegate" \
           "$REPO_DIR"/build*/src/app/tracegate "$REPO_DIR"/build*/tracegate; do
    if [[ -x $c ]]; then TRACEGATE_BIN=$c; break; fi
  done
fi
export TRACEGATE_BIN TRACEGATE_ROOT=$REPO_DIR

# Python does the rest and cleans up after itself (exit, error, Ctrl-C, SIGTERM, SIGHUP):
# exec, so that signals reach it directly.
exec python3 "$BENCH_DIR/http_proxy_lib.py"
