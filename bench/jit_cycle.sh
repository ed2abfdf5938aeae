#!/usr/bin/env bash
# One just-in-time access cycle through tracegate, side by side with a direct new
# PostgreSQL connection (and, optionally, a new connection through pgbouncer).
#
# Starts a throwaway PostgreSQL 15, tracegate with its grants API (HTTPS, the local
# development issuer, a policy rule for the group ai-agents) and pgbouncer (session mode),
# then, for each CLIENTS value, runs bench/jit_cycle_client against the targets in turn:
#   direct     new connection (SCRAM) -> one query -> close
#   tracegate  POST /v1/grants -> new connection with the one-time credential (SCRAM) ->
#              one query -> close   (the gateway's backend pool serves the query)
#   pgbouncer  new connection through pgbouncer (session mode, SCRAM) -> one query -> close
# Prints a table and the target checks (DESIGN.md "Performance targets": p50 <= 3 ms;
# faster than the direct new-connection cycle), runs build*/src/identity/validator_bench if
# it exists (uncached RS256 validations/s per core), and writes bench/results/jit_cycle.json.
# The servers are set up by bench/lib/setup.sh (shared with pg_overhead.sh). See
# bench/README.md.
#
#   sudo bench/jit_cycle.sh                 # CLIENTS="1 8", DURATION=10 s per run, ~2 min
#   DURATION=5 bench/jit_cycle.sh           # quick run
# shellcheck source-path=SCRIPTDIR disable=SC2034  # some variables are read by lib/setup.sh
set -euo pipefail

BENCH_NAME=jit_cycle
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
source "$BENCH_DIR/lib/setup.sh"

# ---- knobs (env) -------------------------------------------------------------------------
DURATION=${DURATION:-10}            # seconds per measured run
WARMUP=${WARMUP:-1}                 # unrecorded seconds at the start of every run
CLIENTS=${CLIENTS:-"1 8"}
TARGETS=${TARGETS:-"direct tracegate pgbouncer"}
NTRACES=${NTRACES:-200}
PAYLOAD_BYTES=${PAYLOAD_BYTES:-2048}
TRACEGATE_WORKERS=${TRACEGATE_WORKERS:-2}
TRACEGATE_POOL=${TRACEGATE_POOL:-40}   # raised to the largest CLIENTS value if smaller
PGBOUNCER_POOL=${PGBOUNCER_POOL:-40}
PG_SSLMODE=${PG_SSLMODE:-disable}   # sslmode of the client -> tracegate Postgres hop
READY_TIMEOUT=${READY_TIMEOUT:-20}
MAX_ERROR_RATE=${MAX_ERROR_RATE:-0.01}
STRICT=${STRICT:-0}                 # 1 = exit 3 when a target is missed
OUT_JSON=${OUT_JSON:-$BENCH_DIR/results/jit_cycle.json}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PGBOUNCER_BIN=${PGBOUNCER_BIN:-$(command -v pgbouncer || echo /usr/sbin/pgbouncer)}
GEN_TRACES=${GEN_TRACES:-$REPO_DIR/scripts/gen_traces.py}
RUN_USER=${RUN_USER:-postgres}      # unprivileged user for initdb/postgres/pgbouncer
VALIDATOR_BENCH_ARGS=${VALIDATOR_BENCH_ARGS:-}   # extra args, e.g. --benchmark_min_time=0.5

# The newest build wins: several build dirs may exist and an old one may lack the grants API.
TRACEGATE_BIN=${TRACEGATE_BIN:-$(newest_executable "$REPO_DIR"/build*/tracegate \
                                 "$REPO_DIR"/build*/src/app/tracegate)}
CLIENT_BIN=${CLIENT_BIN:-$(newest_executable "$REPO_DIR"/build*/bench/jit_cycle_client)}
VALIDATOR_BENCH=${VALIDATOR_BENCH:-$(newest_executable "$REPO_DIR"/build*/src/identity/validator_bench)}

check_uints DURATION WARMUP NTRACES PAYLOAD_BYTES TRACEGATE_WORKERS TRACEGATE_POOL PGBOUNCER_POOL \
            READY_TIMEOUT
((DURATION > 0 && NTRACES > 0)) || die "DURATION and NTRACES must be > 0"
for c in $CLIENTS; do
  [[ $c =~ ^[1-9][0-9]*$ ]] || die "CLIENTS must be positive integers, got '$CLIENTS'"
  if ((c > TRACEGATE_POOL)); then TRACEGATE_POOL=$c; fi
done
[[ $PG_SSLMODE =~ ^(disable|require|verify-ca|verify-full|grant)$ ]] ||
  die "PG_SSLMODE must be disable, require, verify-ca, verify-full or grant"
[[ -n $CLIENT_BIN ]] ||
  die "jit_cycle_client not built: cmake --build <build dir> --target jit_cycle_client (or set CLIENT_BIN)"

# ---- PostgreSQL and the traces (bench/lib/setup.sh) ----------------------------------------
bench_start openssl
PG_SHARED_BUFFERS=128MB
pg_setup
load_traces
psql_admin -d "$DB" -c 'VACUUM ANALYZE' >/dev/null
grant_read_access
N_TRACES=$(psql_admin -At -d "$DB" -c 'select count(*) from traces')
# One loaded trace, chosen deterministically (the middle one by id); a literal in the query.
TRACE_ID=$(psql_admin -At -d "$DB" -c \
  "select id from traces order by id offset (select count(*) / 2 from traces) limit 1")
[[ $TRACE_ID =~ ^[A-Za-z0-9._:-]+$ ]] || die "unexpected trace id '$TRACE_ID'"
QUERY="select id, name from traces where id = '$TRACE_ID'"
log "traces: $N_TRACES rows ($DATA_SOURCE); query: $QUERY"

# ---- servers -----------------------------------------------------------------------------
want_target direct && ACTIVE_TARGETS+=(direct)

# run_client target clients seconds warmup [--once]: one jit_cycle_client run; JSON on stdout
run_client() {
  local target=$1 clients=$2 secs=$3 warm=$4; shift 4
  local args=(--label "$target" --clients "$clients" --seconds "$secs" --warmup "$warm"
              --query "$QUERY" --max-error-rate "$MAX_ERROR_RATE")
  case $target in
    direct | pgbouncer)
      local port=$PG_PORT
      [[ $target == pgbouncer ]] && port=$PGB_PORT
      args+=(--mode direct --dsn "host=127.0.0.1 port=$port user=$CLIENT_USER dbname=$DB sslmode=disable")
      ;;
    tracegate)
      args+=(--mode grant --api-url "https://127.0.0.1:$TG_API_PORT" --cacert "$TG_CERT"
             --token-file "$TOKEN_FILE" --connection traces-pg --trace-id "$TRACE_ID"
             --reason "jit_cycle benchmark" --sslmode "$PG_SSLMODE")
      ;;
  esac
  PGPASSWORD=$CLIENT_PASSWORD timeout --foreground -k 5 $((secs + warm + 60)) \
    "$CLIENT_BIN" "${args[@]}" "$@"
}
smoke_cycle() { run_client "$1" 1 1 0 --once >/dev/null; }

if want_target pgbouncer; then start_pgbouncer smoke_cycle pgbouncer || true; fi

# Grant sessions always pass the statement gate (src/sql/gate.h): it is told which tables
# hold traces, or it refuses the query's `traces` as an undeclared relation. Static users:
# none. Policy: one use, 30 s to redeem it.
if want_target tracegate; then
  if TG_GATE=1 TG_STATIC_USER=0 TG_RULE_TTL=30s TG_RULE_USES=1 \
       start_tracegate smoke_cycle tracegate; then
    ACTIVE_TARGETS+=(tracegate)
  fi
fi
want_target direct && { smoke_cycle direct || die "direct smoke cycle failed"; }
((${#ACTIVE_TARGETS[@]} > 0)) || die "nothing to measure (TARGETS='$TARGETS')"

# ---- runs --------------------------------------------------------------------------------
# Fixed order per CLIENTS value: direct, tracegate, pgbouncer (whichever are active).
ORDERED=()
for t in direct tracegate pgbouncer; do
  [[ " ${ACTIVE_TARGETS[*]} " == *" $t "* ]] && ORDERED+=("$t")
done
ACTIVE_TARGETS=("${ORDERED[@]}")
NT=${#ACTIVE_TARGETS[@]}
NC=$(wc -w <<<"$CLIENTS")
log "$NC client counts ($CLIENTS) x $NT targets (${ACTIVE_TARGETS[*]}) x $((DURATION + WARMUP))s" \
    "≈ $((NC * NT * (DURATION + WARMUP)))s"
STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for c in $CLIENTS; do
  for target in "${ACTIVE_TARGETS[@]}"; do
    out=$WORK/runs/$target-$c.json
    rc=0
    run_client "$target" "$c" "$DURATION" "$WARMUP" >"$out" 2>"$WORK/runs/$target-$c.err" || rc=$?
    if [[ -s $out ]]; then
      log "$(printf '%-10s %2s clients: ' "$target" "$c")$(python3 -c '
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print("%.1f cycles/s, p50 %.2f ms, p99 %.2f ms, %d errors"
      % (r["cycles_per_s"], r["p50_ms"], r["p99_ms"], r["errors"]))' "$out" 2>/dev/null)"
    fi
    if ((rc != 0)); then
      log "$target at $c clients FAILED (rc=$rc): $(tail -n 3 "$WORK/runs/$target-$c.err" | tr '\n' ' ')"
      if [[ $target == tracegate ]]; then
        echo "---- tracegate log (tail) ----" >&2; tail -n 30 "$WORK/tracegate/tracegate.log" >&2 || true
        kill -0 "$TRACEGATE_PID" 2>/dev/null || warn "tracegate (pid $TRACEGATE_PID) is no longer running"
      fi
    fi
    printf '%s\t%s\t%s\n' "$target" "$c" "$rc" >>"$WORK/runs.tsv"
  done
done
FINISHED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
TG_ALIVE=0
[[ -n $TRACEGATE_PID ]] && kill -0 "$TRACEGATE_PID" 2>/dev/null && TG_ALIVE=1
# gateway log lines at warn and above, for the report
[[ -f $WORK/tracegate/tracegate.log ]] && cp "$WORK/tracegate/tracegate.log" "$WORK/tracegate-final.log"

# Stop the servers: the validator benchmark should have the CPU to itself.
stop_pid "$TRACEGATE_PID" tracegate; TRACEGATE_PID=""
stop_pid "$PGBOUNCER_PID" pgbouncer; PGBOUNCER_PID=""

# ---- JWT validation (Google Benchmark, optional) -----------------------------------------
VB_JSON=$WORK/validator_bench.json
VB_NOTE=""
if [[ -n $VALIDATOR_BENCH ]]; then
  log "running $VALIDATOR_BENCH --benchmark_out_format=json"
  # --benchmark_out, not stdout: the validator logs (key loads) would interleave with the JSON.
  # shellcheck disable=SC2086
  if ! timeout 300 "$VALIDATOR_BENCH" --benchmark_out="$VB_JSON" --benchmark_out_format=json \
       $VALIDATOR_BENCH_ARGS >"$WORK/validator_bench.out" 2>"$WORK/validator_bench.err"; then
    VB_NOTE="validator_bench failed: $(tail -n 2 "$WORK/validator_bench.err" | tr '\n' ' ')"
    warn "$VB_NOTE"
    rm -f "$VB_JSON"
  fi
else
  VB_NOTE="validator_bench not built (no build*/src/identity/validator_bench); JWT validation not measured"
  log "$VB_NOTE"
fi

# ---- report ------------------------------------------------------------------------------
SKIPPED=""
for t in "${!SKIP_REASON[@]}"; do SKIPPED+="$t"$'\t'"${SKIP_REASON[$t]}"$'\n'; done
mkdir -p "$(dirname "$OUT_JSON")"
rc=0
BENCH_LIB=$BENCH_DIR/lib BENCH_WORK=$WORK \
BENCH_RUNS_DIR=$WORK/runs BENCH_RUNS_TSV=$WORK/runs.tsv BENCH_OUT=$OUT_JSON BENCH_STRICT=$STRICT \
BENCH_STARTED_AT=$STARTED_AT BENCH_FINISHED_AT=$FINISHED_AT \
BENCH_LOAD_START=$LOAD_START BENCH_LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)" \
BENCH_TARGETS="${ACTIVE_TARGETS[*]}" BENCH_SKIPPED=$SKIPPED BENCH_CLIENTS=$CLIENTS \
BENCH_DURATION=$DURATION BENCH_WARMUP=$WARMUP BENCH_NTRACES=$N_TRACES BENCH_QUERY=$QUERY \
BENCH_TRACE_DATA=$DATA_SOURCE BENCH_PG_SSLMODE=$PG_SSLMODE \
BENCH_TRACEGATE_WORKERS=$TRACEGATE_WORKERS BENCH_TRACEGATE_POOL=$TRACEGATE_POOL \
BENCH_PGBOUNCER_POOL=$PGBOUNCER_POOL BENCH_PG_VERSION=$SERVER_VERSION \
BENCH_PGBOUNCER_VERSION=$PGBOUNCER_VERSION BENCH_TRACEGATE_VERSION=$TRACEGATE_VERSION \
BENCH_TRACEGATE_BIN=$TRACEGATE_BIN BENCH_CLIENT_BIN=$CLIENT_BIN BENCH_TG_ALIVE=$TG_ALIVE \
BENCH_TG_LOG=$WORK/tracegate-final.log BENCH_VB_JSON=$VB_JSON BENCH_VB_BIN=$VALIDATOR_BENCH \
BENCH_VB_NOTE=$VB_NOTE \
BENCH_REPO_COMMIT="$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
python3 - <<'PY' || rc=$?
import json, os, platform, subprocess, sys

E = os.environ
runs_dir = E["BENCH_RUNS_DIR"]
clients = [int(c) for c in E["BENCH_CLIENTS"].split()]
targets = E["BENCH_TARGETS"].split()

rows, failed = [], []
if os.path.exists(E["BENCH_RUNS_TSV"]):
    for line in open(E["BENCH_RUNS_TSV"]):
        target, c, rc = line.rstrip("\n").split("\t")
        path = os.path.join(runs_dir, f"{target}-{c}.json")
        r = None
        try:
            with open(path) as fh:
                r = json.loads(fh.read().strip().splitlines()[-1])
        except (OSError, ValueError, IndexError):
            pass
        err = ""
        try:
            err = open(os.path.join(runs_dir, f"{target}-{c}.err")).read()[-2000:]
        except OSError:
            pass
        if rc != "0" or r is None:
            failed.append({"target": target, "clients": int(c), "rc": int(rc), "stderr": err,
                           "result": r})
        if r is not None:
            r["target"] = target
            r["exit_code"] = int(rc)
            rows.append(r)

def find(target, c):
    for r in rows:
        if r["target"] == target and r["clients"] == c:
            return r
    return None

def f(x, spec=".2f"):
    return "-" if x is None else format(x, spec)

hdr = (f"{'target':<10} {'clients':>7} {'cycles/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}"
       f" {'grant p50':>10} {'conn+q p50':>11} {'errors':>7}")
print()
print("JIT access cycle: grant (tracegate only) -> connect (SCRAM) -> one query -> close")
print(hdr)
print("-" * len(hdr))
for c in clients:
    for t in ["direct", "tracegate", "pgbouncer"]:
        r = find(t, c)
        if r is None:
            continue
        flag = "" if r["exit_code"] == 0 else "  FAILED"
        print(f"{t:<10} {c:>7} {f(r['cycles_per_s'], '.1f'):>9} {f(r['p50_ms']):>8} "
              f"{f(r['p90_ms']):>8} {f(r['p99_ms']):>8} {f(r.get('grant_p50_ms')):>10} "
              f"{f(r.get('connect_query_p50_ms')):>11} {r['errors']:>7}{flag}")
for line in E.get("BENCH_SKIPPED", "").splitlines():
    if line.strip():
        t, why = line.split("\t", 1)
        print(f"{t:<10} skipped: {why}")

# ---- JWT validation (validator_bench) ----
validator = {"binary": E.get("BENCH_VB_BIN") or None, "note": E.get("BENCH_VB_NOTE") or None,
             "benchmarks": []}
vb_path = E["BENCH_VB_JSON"]
if os.path.exists(vb_path):
    try:
        vb = json.load(open(vb_path))
        validator["context"] = vb.get("context", {})
        scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
        for b in vb.get("benchmarks", []):
            if b.get("run_type", "iteration") != "iteration":
                continue
            cpu_s = b.get("cpu_time", 0) * scale.get(b.get("time_unit", "ns"), 1e-9)
            threads = b.get("threads", 1)
            # items_per_second is per thread of CPU time when the benchmark sets items;
            # otherwise one iteration = one validation.
            per_core = b.get("items_per_second") or (1.0 / cpu_s if cpu_s > 0 else None)
            validator["benchmarks"].append({
                "name": b["name"], "threads": threads, "cpu_time": b.get("cpu_time"),
                "real_time": b.get("real_time"), "time_unit": b.get("time_unit"),
                "items_per_second": b.get("items_per_second"),
                "per_s_per_core": round(per_core, 1) if per_core else None})
    except (OSError, ValueError, KeyError) as e:
        validator["note"] = f"could not read validator_bench output: {e}"
print()
if validator["benchmarks"]:
    print("JWT validation (validator_bench, per core = 1 / CPU time per validation)")
    for b in validator["benchmarks"]:
        print(f"  {b['name']:<44} {f(b['per_s_per_core'], ',.0f'):>10} /s per core")
else:
    print(f"JWT validation: {validator['note'] or 'no numbers'}")

# ---- targets ----
checks = []
def check(name, ok, detail):
    checks.append({"target": name, "result": "SKIP" if ok is None else ("PASS" if ok else "MISS"),
                   "detail": detail})

c1 = min(clients)
tg1 = find("tracegate", c1)
check(f"JIT cycle p50 <= 3 ms through tracegate ({c1} client{'s' if c1 > 1 else ''})",
      None if tg1 is None or tg1["cycles"] == 0 else tg1["p50_ms"] <= 3.0,
      "no tracegate numbers" if tg1 is None else f"p50 {tg1['p50_ms']:.2f} ms")
for c in clients:
    tg, d = find("tracegate", c), find("direct", c)
    if tg is None or d is None or tg["cycles"] == 0 or d["cycles"] == 0:
        check(f"tracegate JIT cycle faster than a direct new connection ({c} clients)", None,
              "missing numbers")
        continue
    ok = tg["p50_ms"] < d["p50_ms"] and tg["cycles_per_s"] > d["cycles_per_s"]
    check(f"tracegate JIT cycle faster than a direct new connection ({c} clients)", ok,
          f"p50 {tg['p50_ms']:.2f} vs {d['p50_ms']:.2f} ms, "
          f"{tg['cycles_per_s']:.1f} vs {d['cycles_per_s']:.1f} cycles/s")
rs = [b for b in validator["benchmarks"] if "RS256" in b["name"] and "ncached" in b["name"]
      and b["threads"] == 1] or \
     [b for b in validator["benchmarks"] if "RS256" in b["name"] and b["threads"] == 1]
check(">= 20k uncached RS256 validations/s per core",
      None if not rs or not rs[0]["per_s_per_core"] else rs[0]["per_s_per_core"] >= 20000,
      f"{rs[0]['name']}: {rs[0]['per_s_per_core']:,.0f}/s" if rs else (validator["note"] or "no numbers"))
if E.get("BENCH_TG_ALIVE") != "1" and "tracegate" in targets:
    check("tracegate still running after the runs", False, "the gateway process was gone")

print()
for ck in checks:
    print(f"{ck['result']:<4}  {ck['target']}: {ck['detail']}")
if failed:
    print()
    for fr in failed:
        print(f"FAILED run: {fr['target']} at {fr['clients']} clients (exit {fr['rc']}): "
              f"{fr['stderr'].strip().splitlines()[-1] if fr['stderr'].strip() else ''}")

tg_log = []
try:
    tg_log = [l.rstrip("\n") for l in open(E["BENCH_TG_LOG"]) if l.strip()][-50:]
except OSError:
    pass
if tg_log and (failed or E.get("BENCH_TG_ALIVE") != "1"):
    print("\ntracegate log (last lines, level warn and above):")
    for l in tg_log[-20:]:
        print("  " + l)

def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=5).stdout.strip()
    except Exception:
        return ""
machine = {
    "nproc": os.cpu_count(), "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(),
    "mem_total": sh("grep MemTotal /proc/meminfo | awk '{print $2 \" kB\"}'"),
    "kernel": platform.release(), "os": sh(". /etc/os-release && echo $PRETTY_NAME"),
}
load_start, load_end = E["BENCH_LOAD_START"], E["BENCH_LOAD_END"]
print(f"\nmachine: {machine['nproc']} cores, {machine['cpu']}; load average {load_start} -> {load_end}")
out = {
    "benchmark": "jit_cycle",
    "started_at": E["BENCH_STARTED_AT"], "finished_at": E["BENCH_FINISHED_AT"],
    "repo_commit": E["BENCH_REPO_COMMIT"], "machine": machine,
    "load_average": {"start": load_start, "end": load_end},
    "versions": {"postgresql": E["BENCH_PG_VERSION"], "pgbouncer": E["BENCH_PGBOUNCER_VERSION"] or None,
                 "tracegate": E["BENCH_TRACEGATE_VERSION"] or None},
    "parameters": {"duration_s": int(E["BENCH_DURATION"]), "warmup_s": int(E["BENCH_WARMUP"]),
                   "clients": clients, "targets": targets, "query": E["BENCH_QUERY"],
                   "traces": int(E["BENCH_NTRACES"]), "trace_data": E["BENCH_TRACE_DATA"],
                   "tracegate_pg_sslmode": E["BENCH_PG_SSLMODE"],
                   "tracegate_workers": int(E["BENCH_TRACEGATE_WORKERS"]),
                   "tracegate_pool": int(E["BENCH_TRACEGATE_POOL"]),
                   "pgbouncer_pool": int(E["BENCH_PGBOUNCER_POOL"]),
                   "tracegate_bin": E["BENCH_TRACEGATE_BIN"], "client_bin": E["BENCH_CLIENT_BIN"]},
    "skipped": {l.split("\t", 1)[0]: l.split("\t", 1)[1]
                for l in E.get("BENCH_SKIPPED", "").splitlines() if "\t" in l},
    "runs": rows, "failed_runs": failed, "validator_bench": validator, "checks": checks,
    "tracegate_alive_after_runs": E.get("BENCH_TG_ALIVE") == "1",
    "tracegate_log_tail": tg_log,
}
sys.path.insert(0, E["BENCH_LIB"])
from result_paths import scrub  # machine paths out of the committed result
with open(E["BENCH_OUT"], "w") as fh:
    json.dump(scrub(out, work=E["BENCH_WORK"]), fh, indent=2)
    fh.write("\n")
print(f"wrote {E['BENCH_OUT']}")
if E["BENCH_STRICT"] == "1" and any(ck["result"] == "MISS" for ck in checks):
    sys.exit(3)
PY
exit "$rc"
