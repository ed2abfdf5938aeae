#!/usr/bin/env bash
# The cost of session recording (the audit log): pgbench fetching one 8 KB JSONB trace by id
# through a grant session (statement gate) with recording off, batched and strict, side by
# side with direct PostgreSQL; how many bytes the log grows by per transaction and per
# session; and one fdatasync on the filesystem the log is written to.
#
#   direct              pgbench -> PostgreSQL
#   tracegate+off       pgbench as a grant's one-time user, `audit: {enabled: false}`
#   tracegate+batched   the same, `audit: {durability: batched}`: synced every flush_interval
#   tracegate+strict    the same, `audit: {durability: strict}`: a response is released only
#                       once its record is on disk (group commit across sessions)
#
# Every target runs its clients as one pgbench process of one connection each (a grant
# carries one session at a time), as masking.sh's e2e part does. The recording mode is a
# gateway setting, so tracegate is restarted for every tracegate target of every repetition
# (fresh state database and audit directory $WORK/tracegate/audit-<mode>); targets are
# interleaved per repetition in an order that rotates. pgbench writes a per-transaction log
# (-l) so that the report has p50/p99. Servers and data come from bench/lib/setup.sh; the
# table goes to stdout and everything to bench/results/recording.json. See bench/README.md.
#
#   bench/recording.sh                                    # REPS=3 x DURATION=10 s, ~6 min
#   DURATION=3 REPS=1 WARMUP=1 CLIENTS=8 bench/recording.sh   # quick check, ~1 min
#   TARGETS="direct tracegate+strict" CLIENTS="8 16 32" bench/recording.sh
# shellcheck source-path=SCRIPTDIR disable=SC2034  # some variables are read by lib/setup.sh
set -euo pipefail

BENCH_NAME=recording
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
source "$BENCH_DIR/lib/setup.sh"

# ---- knobs (env) -------------------------------------------------------------------------
DURATION=${DURATION:-10}            # seconds per measured pgbench run
WARMUP=${WARMUP:-3}                 # seconds of warm-up after each (re)start, per target
REPS=${REPS:-3}                     # repetitions; the median is reported
CLIENTS=${CLIENTS:-"8 32"}          # client counts (one pgbench process each)
PROTOCOLS=${PROTOCOLS:-extended}    # pgbench -M
TARGETS=${TARGETS:-"direct tracegate+off tracegate+batched tracegate+strict"}
NTRACES=${NTRACES:-500}
PAYLOAD_BYTES=${PAYLOAD_BYTES:-8192}
FLUSH_INTERVAL=${FLUSH_INTERVAL:-10ms}          # audit.flush_interval (batched)
CHECKPOINT_INTERVAL=${CHECKPOINT_INTERVAL:-1s}  # audit.checkpoint_interval
AUDIT_EXTRA=${AUDIT_EXTRA:-}        # more lines under audit: (recording targets), 2-space indent
FSYNC_SAMPLES=${FSYNC_SAMPLES:-200} # the fdatasync probe: samples of (write + fdatasync)
FSYNC_BYTES=${FSYNC_BYTES:-4096}    # bytes appended before each fdatasync
TRACEGATE_WORKERS=${TRACEGATE_WORKERS:-2}
TRACEGATE_POOL=${TRACEGATE_POOL:-40}
READY_TIMEOUT=${READY_TIMEOUT:-20}
PERF=${PERF-$(command -v perf || true)}  # counts the gateway's fdatasync calls ("" = don't)
STRICT=${STRICT:-0}
OUT_JSON=${OUT_JSON:-$BENCH_DIR/results/recording.json}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
GEN_TRACES=${GEN_TRACES:-$REPO_DIR/scripts/gen_traces.py}
RUN_USER=${RUN_USER:-postgres}

if [[ -z ${TRACEGATE_BIN:-} ]]; then
  TRACEGATE_BIN=$REPO_DIR/build/tracegate
  for c in "$REPO_DIR/build/tracegate" "$REPO_DIR/build/src/app/tracegate" \
           "$REPO_DIR"/build*/src/app/tracegate "$REPO_DIR"/build*/tracegate; do
    if [[ -x $c ]]; then TRACEGATE_BIN=$c; break; fi
  done
fi

check_uints DURATION WARMUP REPS NTRACES PAYLOAD_BYTES FSYNC_SAMPLES FSYNC_BYTES \
            TRACEGATE_WORKERS TRACEGATE_POOL READY_TIMEOUT
((DURATION > 0 && REPS > 0 && NTRACES > 0 && FSYNC_SAMPLES > 0)) ||
  die "DURATION, REPS, NTRACES and FSYNC_SAMPLES must be > 0"
MAX_CLIENTS=0
for c in $CLIENTS; do
  [[ $c =~ ^[1-9][0-9]*$ ]] || die "CLIENTS: '$c' is not a positive integer"
  ((c > MAX_CLIENTS)) && MAX_CLIENTS=$c
done
((MAX_CLIENTS > 0)) || die "CLIENTS is empty"
for p in $PROTOCOLS; do
  [[ $p =~ ^(simple|extended|prepared)$ ]] || die "PROTOCOLS: unknown protocol '$p'"
done
for t in $TARGETS; do
  [[ $t =~ ^(direct|tracegate\+(off|batched|strict))$ ]] ||
    die "TARGETS: unknown target '$t' (direct tracegate+off tracegate+batched tracegate+strict)"
done
for v in FLUSH_INTERVAL CHECKPOINT_INTERVAL; do
  [[ ${!v} =~ ^[0-9]+(ms|s|m)$ ]] || die "$v must be a duration such as 10ms or 1s, got '${!v}'"
done
if ((MAX_CLIENTS > TRACEGATE_POOL)); then
  warn "CLIENTS up to $MAX_CLIENTS but TRACEGATE_POOL=$TRACEGATE_POOL: sessions will queue" \
       "for backend connections"
fi

# ---- PostgreSQL, data ----------------------------------------------------------------------
bench_start pgbench openssl
RESULTS=$WORK/results
mkdir -p "$RESULTS"
: >"$RESULTS/runs.tsv"
: >"$RESULTS/starts.tsv"
PG_SHARED_BUFFERS=512MB
PG_EXTRA_CONF="shared_preload_libraries = ''"
pg_setup
load_traces
psql_admin -d "$DB" <<SQL
CREATE EXTENSION IF NOT EXISTS pg_prewarm;
VACUUM ANALYZE;
SQL
grant_read_access
psql_admin -d "$DB" -At -c "select sum(pg_prewarm(c.oid)) from pg_class c
  join pg_namespace s on s.oid = c.relnamespace
  where c.relkind in ('r','i','t') and s.nspname in ('public','pg_toast')" >/dev/null
# The fetched trace, the one every grant is for: the middle one by id.
ONE_TRACE_ID=$(psql_admin -At -d "$DB" -c \
  "select id from traces order by id offset (select count(*) / 2 from traces) limit 1")
[[ $ONE_TRACE_ID =~ ^[A-Za-z0-9._:-]+$ ]] || die "unexpected trace id '$ONE_TRACE_ID'"
ONE_ROW_BYTES=$(psql_admin -At -d "$DB" -c \
  "select octet_length(t::text) from traces t where id = '$ONE_TRACE_ID'")
log "traces: $NTRACES ($DATA_SOURCE); fetched: $ONE_TRACE_ID ($ONE_ROW_BYTES bytes as text)"

# ---- one fdatasync, on the filesystem the audit log goes to --------------------------------
# FSYNC_SAMPLES x (append FSYNC_BYTES, fdatasync) to a new file in $WORK/tracegate, each pair
# timed (5 more before them, not counted): what one group commit costs at the least. The log's
# writer appends too, so the file grows as it does.
FSYNC_PATH=$WORK/tracegate
FSYNC_FS=$(df --output=fstype "$FSYNC_PATH" 2>/dev/null | tail -n1 || echo "?")
FSYNC_DEV=$(df -P "$FSYNC_PATH" 2>/dev/null | awk 'NR == 2 {print $1 " on " $6}')
FSYNC_STATS=$(python3 - "$FSYNC_PATH/fdatasync.probe" "$FSYNC_SAMPLES" "$FSYNC_BYTES" <<'PY'
import os, statistics, sys, time
path, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
buf = os.urandom(size)
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
us = []
try:
    for i in range(n + 5):
        t0 = time.perf_counter_ns()
        os.write(fd, buf)
        os.fdatasync(fd)
        if i >= 5:
            us.append((time.perf_counter_ns() - t0) / 1000)
finally:
    os.close(fd)
    os.unlink(path)
us.sort()
print(f"{statistics.median(us):.1f} {us[int(0.9 * (len(us) - 1))]:.1f} {us[0]:.1f} {us[-1]:.1f}")
PY
) || { warn "the fdatasync probe failed"; FSYNC_STATS=""; }
FSYNC_P50_US="" FSYNC_P90_US="" FSYNC_MIN_US="" FSYNC_MAX_US=""
if [[ -n $FSYNC_STATS ]]; then
  read -r FSYNC_P50_US FSYNC_P90_US FSYNC_MIN_US FSYNC_MAX_US <<<"$FSYNC_STATS"
  log "fdatasync ($FSYNC_FS, $FSYNC_DEV): write ${FSYNC_BYTES} B + fdatasync, $FSYNC_SAMPLES" \
      "samples: median $FSYNC_P50_US us, p90 $FSYNC_P90_US us, min $FSYNC_MIN_US us"
  if [[ $FSYNC_FS == tmpfs || $FSYNC_FS == ramfs ]] ||
     awk -v m="$FSYNC_P50_US" 'BEGIN{exit !(m < 20)}'; then
    warn "$FSYNC_PATH is on $FSYNC_FS and fdatasync takes $FSYNC_P50_US us: it does not reach a" \
         "disk, so strict recording looks cheaper than it is (TMPDIR=<dir on disk> moves \$WORK)"
  fi
fi

# ---- tracegate, one recording mode per start -----------------------------------------------
GRANT_TTL_S=$(( (DURATION > WARMUP ? DURATION : WARMUP) + 120 ))
GRANT_USES=8
GRANT_RETRIES=3

# shellcheck disable=SC2317  # invoked through start_tracegate
tg_smoke() {  # one query as the static user, then one grant session fetching the trace
  local out cred user pw
  if ! out=$(PGPASSWORD=$CLIENT_PASSWORD PGSSLMODE=disable PGCONNECT_TIMEOUT=10 \
      psql -X -At -h 127.0.0.1 -p "$TG_PORT" -U "$CLIENT_USER" -d "$DB" \
      -c "select count(*) from traces where id = '$ONE_TRACE_ID'" 2>&1) || [[ $out != 1 ]]; then
    log "tracegate smoke test (static user) failed: $out"
    return 1
  fi
  cred=$(request_grants "$ONE_TRACE_ID" 1 "recording smoke test") ||
    { log "tracegate smoke test: the grant request failed"; return 1; }
  read -r user pw <<<"$cred"
  if out=$(PGPASSWORD=$pw PGSSLMODE=disable PGCONNECT_TIMEOUT=10 psql -X -At -h 127.0.0.1 \
      -p "$TG_PORT" -U "$user" -d "$DB" \
      -c "select count(*) from (SELECT t.* FROM traces t WHERE t.id = '$ONE_TRACE_ID') s" 2>&1) &&
     [[ $out == 1 ]]; then
    return 0
  fi
  log "tracegate smoke test (grant user $user) failed: $out"
  return 1
}

audit_block() {  # mode -> the audit: section of the gateway's config (TG_AUDIT)
  if [[ $1 == off ]]; then
    printf 'audit:\n  enabled: false\n'
    return
  fi
  printf 'audit:\n  enabled: true\n  durability: %s\n  dir: %s\n' "$1" "$WORK/tracegate/audit-$1"
  printf '  flush_interval: %s\n  checkpoint_interval: %s\n' "$FLUSH_INTERVAL" \
    "$CHECKPOINT_INTERVAL"
  [[ -n $AUDIT_EXTRA ]] && printf '%s\n' "$AUDIT_EXTRA"
  return 0
}

# audit_bytes dir: the log's size, the sum of its segment files (seg-*.tglog) in bytes
audit_bytes() {
  find "$1" -maxdepth 1 -name 'seg-*.tglog' -printf '%s\n' 2>/dev/null |
    awk '{s += $1} END{printf "%.0f\n", s}'
}
# audit_bytes_settled dir: the same once it has stopped growing (the end records of the
# run's sessions, a batched flush, a checkpoint): unchanged for 0.3 s, at most 3 s
audit_bytes_settled() {
  local prev cur same=0 i
  prev=$(audit_bytes "$1")
  for ((i = 0; i < 30 && same < 3; i++)); do
    sleep 0.1
    cur=$(audit_bytes "$1")
    if [[ $cur == "$prev" ]]; then same=$((same + 1)); else same=0; prev=$cur; fi
  done
  echo "$prev"
}
# sessions_since rfc3339: sessions the gateway's index has as started at or after it
sessions_since() {
  "$TRACEGATE_BIN" audit sessions -c "$TG_CONFIG" --since "$1" --limit 100000 --format json \
    2>/dev/null | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))' 2>/dev/null ||
    true
}

# The gateway's fdatasync + fsync calls over a run, from the syscall tracepoints (perf stat
# -p: every thread of the process, counting only, no sampling): syncs per transaction show
# whether strict mode commits sessions' records in groups. Skipped without perf, or when perf
# cannot count them (tracefs, perf_event_paranoid); the report then shows "-".
SYNC_EVENTS=syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync
SYNC_COUNTING=0
if [[ -n $PERF ]]; then
  if "$PERF" stat -x, -e "$SYNC_EVENTS" -o "$WORK/perf-check.txt" true >/dev/null 2>&1 &&
     grep -q 'sys_enter_fdatasync' "$WORK/perf-check.txt"; then
    SYNC_COUNTING=1
  else
    log "perf cannot count $SYNC_EVENTS; the gateway's syncs per run are not counted"
  fi
fi
SYNC_PERF_PID=""
sync_count_start() {  # outfile
  SYNC_PERF_PID=""
  ((SYNC_COUNTING)) && [[ -n $TRACEGATE_PID ]] || return 0
  "$PERF" stat -x, -e "$SYNC_EVENTS" -p "$TRACEGATE_PID" -o "$1" >/dev/null 2>&1 &
  SYNC_PERF_PID=$!
}
sync_count_stop() {  # outfile -> SYNC_COUNT (empty when not counted); in the main shell
  SYNC_COUNT=""
  [[ -n $SYNC_PERF_PID ]] || return 0
  kill -INT "$SYNC_PERF_PID" 2>/dev/null || true
  wait "$SYNC_PERF_PID" 2>/dev/null || true  # perf writes its counts as it exits
  SYNC_PERF_PID=""
  SYNC_COUNT=$(awk -F, '$3 ~ /sys_enter_f(data)?sync/ && $1 ~ /^[0-9]+$/ {s += $1; n++}
                        END{if (n) printf "%d\n", s}' "$1" 2>/dev/null || true)
}

TG_MODE="" TG_START_NO=0
start_mode() {  # target rep: tracegate with the target's recording mode, fresh state and log
  local mode=${1#tracegate+} rc=0
  TG_START_NO=$((TG_START_NO + 1))
  rm -rf "$WORK/tracegate/audit-$mode"
  rm -f "$WORK/tracegate/state.db" "$WORK/tracegate/state.db-wal" "$WORK/tracegate/state.db-shm"
  audit_block "$mode" >"$RESULTS/audit-$mode.yaml"
  TG_STATIC_USER=1 TG_GATE=1 TG_AUDIT=$(audit_block "$mode") \
    TG_BACKEND_EXTRA="      statement_timeout: 0ms" \
    TG_RULE_TTL=${GRANT_TTL_S}s TG_MAX_TTL=${GRANT_TTL_S}s TG_RULE_MAX_SESSION=${GRANT_TTL_S}s \
    TG_RULE_USES=$GRANT_USES TG_RULE_MAX_ROWS=0 TG_RULE_MAX_BYTES=0 \
    start_tracegate tg_smoke || rc=$?
  if ((rc == 0)); then
    TG_MODE=$mode
    log "tracegate+$mode: pid $TRACEGATE_PID (start $TG_START_NO, rep $2)"
  else
    cp "$WORK/tracegate/tracegate.log" "$RESULTS/tracegate-$mode-$2.log" 2>/dev/null || true
    printf '%s\t%s\t%s\t0\t\t\n' "$1" "$2" "$TG_START_NO" >>"$RESULTS/starts.tsv"
  fi
  return $rc
}
stop_mode() {  # target rep: records whether it was still running, stops it, keeps its log
  local alive=0 t0 t1
  kill -0 "$TRACEGATE_PID" 2>/dev/null && alive=1
  ((alive)) || warn "tracegate ($1, rep $2) was no longer running after its runs"
  t0=$(date +%s%N)
  stop_pid "$TRACEGATE_PID" tracegate
  wait "$TRACEGATE_PID" 2>/dev/null || true
  t1=$(date +%s%N)
  cp "$WORK/tracegate/tracegate.log" "$RESULTS/tracegate-$TG_MODE-$2.log" 2>/dev/null || true
  printf '%s\t%s\t%s\t1\t%s\t%s\n' "$1" "$2" "$TG_START_NO" "$alive" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", (b - a) / 1e9}')" >>"$RESULTS/starts.tsv"
  TRACEGATE_PID="" TG_MODE=""
}

# ---- pgbench, one process per client -----------------------------------------------------
ONE_SCRIPT=$BENCH_DIR/trace_fetch_grant.sql
fetch_args() {  # protocol -> pgbench args (simple: the value carries its quotes)
  if [[ $1 == simple ]]; then echo "-f $ONE_SCRIPT -D tid='$ONE_TRACE_ID'"
  else echo "-f $ONE_SCRIPT -D tid=$ONE_TRACE_ID"; fi
}
port_of() { if [[ $1 == direct ]]; then echo "$PG_PORT"; else echo "$TG_PORT"; fi; }

# pgbench_client: bench/lib/setup.sh
# run_fetch log target protocol clients seconds txnlog(0|1): `clients` pgbench processes side
# by side, logs merged by lib/pgbench_merge.py; with txnlog=1 each also writes its
# per-transaction log (pgbench -l) to <log>.<i>.txn.<pid>, which the report reads for p50/p99
run_fetch() {
  local logf=$1 target=$2 proto=$3 clients=$4 secs=$5 txnlog=$6
  local port i rc=0 r retries=0 creds=() pids=() logs=() lopt=()
  port=$(port_of "$target")
  if [[ $target == tracegate+* ]]; then
    mapfile -t creds < <(request_grants "$ONE_TRACE_ID" "$clients" "recording benchmark" \
                           2>"$logf.grant-errors")
    if ((${#creds[@]} != clients)); then
      { echo "recording: requesting $clients grants failed:"; cat "$logf.grant-errors"; } >"$logf"
      rm -f "$logf.grant-errors"
      return 1
    fi
    rm -f "$logf.grant-errors"
    retries=$GRANT_RETRIES
  else
    for ((i = 0; i < clients; i++)); do creds+=("$CLIENT_USER $CLIENT_PASSWORD"); done
  fi
  for ((i = 0; i < clients; i++)); do
    logs+=("$logf.$i")
    lopt=()
    ((txnlog)) && lopt=(-l "--log-prefix=$logf.$i.txn")
    # shellcheck disable=SC2086,SC2046  # user and password: two words; the fetch args
    pgbench_client "$logf.$i" "$port" ${creds[i]} "$retries" "$proto" "$secs" \
      "${lopt[@]}" $(fetch_args "$proto") &
    pids+=($!)
  done
  for i in "${pids[@]}"; do
    r=0; wait "$i" || r=$?
    ((rc == 0)) && rc=$r
  done
  python3 "$BENCH_DIR/lib/pgbench_merge.py" "${logs[@]}" >"$logf" || { ((rc != 0)) || rc=1; }
  rm -f "${logs[@]}"
  return $rc
}

summary() {  # log -> "tps=… lat=… ms"
  awk '/^tps = /{if(t=="")t=$3} /^latency average = /{if(l=="")l=$4}
       /^number of failed transactions: /{if(f=="")f=$5}
       END{printf "tps=%s lat=%s ms%s", (t==""?"?":t), (l==""?"?":l),
           (f!="" && f!="0" ? " failed=" f : "")}' "$1"
}

RUN_TARGETS=()
for t in direct tracegate+off tracegate+batched tracegate+strict; do
  want_target "$t" && RUN_TARGETS+=("$t")
done
if [[ " ${RUN_TARGETS[*]} " == *" tracegate+"* && ! -x $TRACEGATE_BIN ]]; then
  warn "tracegate binary not found${TRACEGATE_BIN:+ at $TRACEGATE_BIN} (build it, or set" \
       "TRACEGATE_BIN=...); the tracegate targets are SKIPPED"
  for t in "${RUN_TARGETS[@]}"; do
    [[ $t == tracegate+* ]] && SKIP_REASON[$t]="binary not found at $TRACEGATE_BIN"
  done
fi
ROWS=()
for proto in $PROTOCOLS; do
  for c in $CLIENTS; do ROWS+=("fetch-$proto-$c|$proto|$c"); done
done
NT=${#RUN_TARGETS[@]}
((NT > 0)) || die "nothing to measure (TARGETS='$TARGETS')"
WARM_PROTO=${PROTOCOLS%% *}
est=$((REPS * NT * (${#ROWS[@]} * DURATION + WARMUP)))
log "${#ROWS[@]} rows x $NT targets (${RUN_TARGETS[*]}) x $REPS reps x ${DURATION}s, a" \
    "${WARMUP}s warm-up ($MAX_CLIENTS clients) per target and rep ≈ $((est / 60))m$((est % 60))s" \
    "plus a gateway start per tracegate target and rep"

STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for ((rep = 1; rep <= REPS; rep++)); do
  for ((k = 0; k < NT; k++)); do
    target=${RUN_TARGETS[$(((rep - 1 + k) % NT))]}
    [[ -n ${SKIP_REASON[$target]:-} ]] && continue
    mode=""
    if [[ $target == tracegate+* ]]; then
      mode=${target#tracegate+}
      if ! start_mode "$target" "$rep"; then
        SKIP_REASON[$target]="tracegate with audit ${mode} failed to start or to pass its smoke"
        SKIP_REASON[$target]+=" test (rep $rep; see the log above and the JSON)"
        unset 'SKIP_REASON[tracegate]'
        warn "$target: ${SKIP_REASON[$target]}; it is SKIPPED from here on"
        continue
      fi
    fi
    # The warm-up after each (re)start fills the gateway's backend pool for the largest
    # client count (a new PostgreSQL backend costs tens of ms of CPU) and its gate cache.
    if ((WARMUP > 0)); then
      log "warm-up $target (${WARMUP}s, $WARM_PROTO, $MAX_CLIENTS x 1 client)"
      run_fetch "$RESULTS/warmup-$target-$rep.log" "$target" "$WARM_PROTO" "$MAX_CLIENTS" \
        "$WARMUP" 0 ||
        log "  warm-up on $target failed:" \
            "$(grep -v '^$' "$RESULTS/warmup-$target-$rep.log" | tail -n 3 | tr '\n' ' ')"
    fi
    for row in "${ROWS[@]}"; do
      IFS='|' read -r rid proto clients <<<"$row"
      logf=$RESULTS/$rid-$target-$rep.log
      b0="" b1="" nsess="" syncs="" rc=0
      [[ -n $mode && $mode != off ]] && b0=$(audit_bytes_settled "$WORK/tracegate/audit-$mode")
      since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
      [[ -n $mode ]] && sync_count_start "$logf.syncs"
      run_fetch "$logf" "$target" "$proto" "$clients" "$DURATION" 1 || rc=$?
      if [[ -n $mode ]]; then sync_count_stop "$logf.syncs"; syncs=$SYNC_COUNT; fi
      if [[ -n $mode && $mode != off ]]; then
        b1=$(audit_bytes_settled "$WORK/tracegate/audit-$mode")
        nsess=$(sessions_since "$since")
      fi
      what="rep $rep/$REPS  $(printf '%-18s %-18s' "$rid" "$target")"
      if ((rc == 0)); then
        log "$what $(summary "$logf")${b1:+ log +$((b1 - b0)) bytes}${nsess:+, $nsess sessions}$(
            )${syncs:+, $syncs syncs}"
      else
        log "$what FAILED rc=$rc:" \
            "$(grep -iE 'error|fatal|abort|failed' "$logf" | head -n 2 | tr '\n' ' ')"
      fi
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rid" "$proto" "$clients" \
        "$target" "$rep" "$rc" "$b0" "$b1" "$nsess" "$( [[ -n $mode ]] && echo "$TG_START_NO")" \
        "$syncs" >>"$RESULTS/runs.tsv"
    done
    if [[ -n $mode ]]; then stop_mode "$target" "$rep"; fi
  done
done
FINISHED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# ---- report ------------------------------------------------------------------------------
SKIPPED=""
for t in "${!SKIP_REASON[@]}"; do SKIPPED+="$t"$'\t'"${SKIP_REASON[$t]}"$'\n'; done
mkdir -p "$(dirname "$OUT_JSON")"
rc=0
BENCH_STARTED_AT=$STARTED_AT BENCH_FINISHED_AT=$FINISHED_AT \
BENCH_LOAD_START=$LOAD_START BENCH_LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)" \
BENCH_TARGETS="${RUN_TARGETS[*]}" BENCH_SKIPPED=$SKIPPED \
BENCH_DURATION=$DURATION BENCH_WARMUP=$WARMUP BENCH_REPS=$REPS BENCH_CLIENTS=$CLIENTS \
BENCH_PROTOCOLS=$PROTOCOLS BENCH_NTRACES=$NTRACES BENCH_PAYLOAD_BYTES=$PAYLOAD_BYTES \
BENCH_TRACE_DATA=${DATA_SOURCE:-} BENCH_ONE_TRACE_ID=$ONE_TRACE_ID \
BENCH_ONE_ROW_BYTES=$ONE_ROW_BYTES BENCH_GRANT_TTL_S=$GRANT_TTL_S BENCH_GRANT_USES=$GRANT_USES \
BENCH_FLUSH_INTERVAL=$FLUSH_INTERVAL BENCH_CHECKPOINT_INTERVAL=$CHECKPOINT_INTERVAL \
BENCH_AUDIT_EXTRA=$AUDIT_EXTRA \
BENCH_FSYNC_P50_US=$FSYNC_P50_US BENCH_FSYNC_P90_US=$FSYNC_P90_US \
BENCH_FSYNC_MIN_US=$FSYNC_MIN_US BENCH_FSYNC_MAX_US=$FSYNC_MAX_US \
BENCH_FSYNC_SAMPLES=$FSYNC_SAMPLES BENCH_FSYNC_BYTES=$FSYNC_BYTES \
BENCH_FSYNC_FS=$FSYNC_FS BENCH_FSYNC_DEV=$FSYNC_DEV \
BENCH_TRACEGATE_WORKERS=$TRACEGATE_WORKERS BENCH_TRACEGATE_POOL=$TRACEGATE_POOL \
BENCH_PERF=$PERF BENCH_SYNC_COUNTING=$SYNC_COUNTING \
BENCH_PG_VERSION=${SERVER_VERSION:-} \
BENCH_PGBENCH_VERSION="$(pgbench --version 2>/dev/null | awk '{print $3}' || true)" \
BENCH_TRACEGATE_VERSION=$TRACEGATE_VERSION BENCH_TRACEGATE_BIN=$TRACEGATE_BIN \
BENCH_REPO_COMMIT="$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  python3 "$BENCH_DIR/lib/recording_report.py" --results "$RESULTS" --out "$OUT_JSON" \
    --strict "$STRICT" || rc=$?
exit "$rc"
