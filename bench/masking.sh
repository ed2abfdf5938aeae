#!/usr/bin/env bash
# The cost of inline masking: the engine on one core, a masked trace fetch end to end, and the
# gateway's memory while a masked session streams about 1 GB.
#
#   engine  masking_bench (Google Benchmark, no servers): MB/s per core over the framework
#           traces as they are, with planted PII, and generated traces with dense PII; p50/p99
#           for a 10 KB trace; a memcpy of the same bytes as the ceiling
#   e2e     pgbench fetching one 8 KB JSONB trace (with an email and a card planted in it) by
#           id, interleaved per repetition: direct PostgreSQL, pgbouncer, tracegate+gate (a
#           grant, no masking) and tracegate+gate+mask (a grant whose rule has
#           masking_profile: default), every target as one pgbench process per client
#   stream  psql through a masked grant: SELECT t.input, generate_series(1, N) ... ≈ STREAM_MB,
#           output to /dev/null; the gateway's RSS (VmRSS sampled, VmHWM reset before the
#           stream) and the stream's MB/s, next to the same stream direct and unmasked
#
# Servers and data come from bench/lib/setup.sh (shared with pg_overhead.sh); the table goes
# to stdout and everything to bench/results/masking.json. See bench/README.md.
#
#   bench/masking.sh                                     # REPS=3 x DURATION=10 s, ~4 min
#   DURATION=3 REPS=1 STREAM_MB=200 bench/masking.sh     # quick check, ~2 min
#   PARTS=engine bench/masking.sh                        # the engine only (no root needed)
# shellcheck source-path=SCRIPTDIR disable=SC2034  # some variables are read by lib/setup.sh
set -euo pipefail

BENCH_NAME=masking
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
source "$BENCH_DIR/lib/setup.sh"

# ---- knobs (env) -------------------------------------------------------------------------
PARTS=${PARTS:-"engine e2e stream"}
DURATION=${DURATION:-10}            # seconds per measured pgbench run
WARMUP=${WARMUP:-3}                 # seconds per warm-up run per target (0 = none)
REPS=${REPS:-3}                     # repetitions; the median is reported
CLIENTS=${CLIENTS:-8}               # client counts of the fetch rows (one pgbench each)
PROTOCOLS=${PROTOCOLS:-extended}    # pgbench -M of the fetch rows
TARGETS=${TARGETS:-"direct pgbouncer tracegate+gate tracegate+gate+mask"}
NTRACES=${NTRACES:-500}
PAYLOAD_BYTES=${PAYLOAD_BYTES:-8192}
STREAM_MB=${STREAM_MB:-1000}        # MB (10^6 bytes) of result rows per stream
STREAM_TARGETS=${STREAM_TARGETS:-"direct tracegate+gate tracegate+gate+mask"}
STREAM_TIMEOUT=${STREAM_TIMEOUT:-600}
ENGINE_MIN_TIME=${ENGINE_MIN_TIME:-0.5}   # --benchmark_min_time per benchmark
ENGINE_REPS=${ENGINE_REPS:-3}             # --benchmark_repetitions (median reported)
MASKING_BENCH_ARGS=${MASKING_BENCH_ARGS:-}
TRACEGATE_WORKERS=${TRACEGATE_WORKERS:-2}
TRACEGATE_POOL=${TRACEGATE_POOL:-40}
PGBOUNCER_POOL=${PGBOUNCER_POOL:-40}
READY_TIMEOUT=${READY_TIMEOUT:-20}
STRICT=${STRICT:-0}
OUT_JSON=${OUT_JSON:-$BENCH_DIR/results/masking.json}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PGBOUNCER_BIN=${PGBOUNCER_BIN:-$(command -v pgbouncer || echo /usr/sbin/pgbouncer)}
GEN_TRACES=${GEN_TRACES:-$REPO_DIR/scripts/gen_traces.py}
RUN_USER=${RUN_USER:-postgres}

if [[ -z ${TRACEGATE_BIN:-} ]]; then
  TRACEGATE_BIN=$REPO_DIR/build/tracegate
  for c in "$REPO_DIR/build/tracegate" "$REPO_DIR/build/src/app/tracegate" \
           "$REPO_DIR"/build*/src/app/tracegate "$REPO_DIR"/build*/tracegate; do
    if [[ -x $c ]]; then TRACEGATE_BIN=$c; break; fi
  done
fi
MASKING_BENCH=${MASKING_BENCH:-$(newest_executable "$REPO_DIR"/build*/src/masking/masking_bench)}

check_uints DURATION WARMUP REPS NTRACES PAYLOAD_BYTES STREAM_MB STREAM_TIMEOUT ENGINE_REPS \
            TRACEGATE_WORKERS TRACEGATE_POOL PGBOUNCER_POOL READY_TIMEOUT
((DURATION > 0 && REPS > 0 && NTRACES > 0 && ENGINE_REPS > 0)) ||
  die "DURATION, REPS, NTRACES and ENGINE_REPS must be > 0"
for p in $PARTS; do
  [[ $p =~ ^(engine|e2e|stream)$ ]] || die "PARTS: unknown part '$p' (engine e2e stream)"
done
for t in $TARGETS $STREAM_TARGETS; do
  [[ $t =~ ^(direct|pgbouncer|tracegate\+gate|tracegate\+gate\+mask)$ ]] ||
    die "TARGETS/STREAM_TARGETS: unknown target '$t'"
done
want_part() { [[ " $PARTS " == *" $1 "* ]]; }
NEED_SERVERS=0
if want_part e2e || want_part stream; then NEED_SERVERS=1; fi

RESULTS=""  # WORK/results: what the report reads
ENGINE_JSON="" ENGINE_NOTE=""

# ---- engine: masking_bench -----------------------------------------------------------------
# Runs before any server starts. Everything it needs is the binary (built by `make
# bench-mask`, or `cmake --build <dir> --target masking_bench`).
run_engine() {
  if [[ -z $MASKING_BENCH || ! -x $MASKING_BENCH ]]; then
    ENGINE_NOTE="masking_bench not built (cmake --build <dir> --target masking_bench)"
    warn "engine: $ENGINE_NOTE; the engine rows are SKIPPED"
    return 0
  fi
  local cache build_type=""
  cache=$(cd "$(dirname "$MASKING_BENCH")/../.." && pwd)/CMakeCache.txt
  [[ -f $cache ]] && build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$cache")
  ENGINE_NOTE="$MASKING_BENCH${build_type:+ ($build_type)}"
  log "engine: $MASKING_BENCH, $ENGINE_REPS x ${ENGINE_MIN_TIME}s per benchmark"
  ENGINE_JSON=$RESULTS/engine.json
  local filter='^BM_(MaskTraceCorpus|MaskTraceCorpusPlanted|MaskDensePii|MemcpyCorpus'
  filter+='|Trace10KB|Trace10KBPlanted|MaskText)$'
  # shellcheck disable=SC2086  # MASKING_BENCH_ARGS: extra flags, split on purpose
  if ! "$MASKING_BENCH" --benchmark_filter="$filter" \
      --benchmark_min_time="$ENGINE_MIN_TIME" --benchmark_repetitions="$ENGINE_REPS" \
      --benchmark_report_aggregates_only=true \
      --benchmark_out="$ENGINE_JSON" --benchmark_out_format=json $MASKING_BENCH_ARGS \
      >"$RESULTS/engine.log" 2>&1; then
    tail -n 20 "$RESULTS/engine.log" >&2
    ENGINE_NOTE+=": failed (see above)"
    warn "engine: masking_bench failed; the engine rows are SKIPPED"
    ENGINE_JSON=""
  fi
}

if ((NEED_SERVERS)); then
  bench_start pgbench openssl
else
  LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
  if python3 -c "import os, sys
sys.exit(0 if os.getloadavg()[0] > 0.5 * len(os.sched_getaffinity(0)) else 1)"; then
    warn "load average is $LOAD_START on $(nproc) cores: something else is running"
  fi
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/$BENCH_NAME.XXXXXX")
  trap 'rc=$?; [[ ${KEEP_WORK:-0} == 1 ]] || rm -rf "$WORK"; exit $rc' EXIT
fi
RESULTS=$WORK/results
mkdir -p "$RESULTS"
: >"$RESULTS/runs.tsv"
: >"$RESULTS/stream.tsv"
if want_part engine; then run_engine; fi

# ---- PostgreSQL, data, servers -------------------------------------------------------------
PLANT_EMAIL=jane.doe@example.com
PLANT_CARD="4111 1111 1111 1111"
PLANT_TEXT="Please refund to card $PLANT_CARD and send the receipt to $PLANT_EMAIL"
ONE_TRACE_ID="" ONE_ROW_BYTES="" INPUT_BYTES="" PLANT_CHECK="" TG_RSS_START_KB=""
GRANT_TTL_S=$(( (DURATION > WARMUP ? DURATION : WARMUP) + STREAM_TIMEOUT + 120 ))
GRANT_USES=8
GRANT_RETRIES=3
MASKED_GROUP=ai-agents-masked

sql_quote() { printf "'%s'" "${1//\'/\'\'}"; }

# shellcheck disable=SC2317  # invoked through start_pgbouncer / start_tracegate
smoke_test() {  # port name: one authenticated query over TCP as the client user
  local out
  if out=$(PGPASSWORD=$CLIENT_PASSWORD PGSSLMODE=disable PGCONNECT_TIMEOUT=10 \
      psql -X -At -h 127.0.0.1 -p "$1" -U "$CLIENT_USER" -d "$DB" \
      -c "select count(*) from traces where id = '$ONE_TRACE_ID'" 2>&1) && [[ $out == 1 ]]; then
    return 0
  fi
  log "$2 smoke test failed: $out"
  return 1
}

# grant_psql masked(0|1) sql: one grant session (fresh grant) running sql; prints psql's output
grant_psql() {
  local cred user pw tok=$TOKEN_FILE
  [[ $1 == 1 ]] && tok=$MASKED_TOKEN_FILE
  cred=$(GRANT_TOKEN_FILE=$tok request_grants "$ONE_TRACE_ID" 1 "masking benchmark") || return 1
  read -r user pw <<<"$cred"
  PGPASSWORD=$pw PGSSLMODE=disable PGCONNECT_TIMEOUT=10 psql -X -At -h 127.0.0.1 \
    -p "$TG_PORT" -U "$user" -d "$DB" -c "$2" 2>&1
}

# masked_total: tracegate_masked_values_total summed over entities (admin /metrics); a
# session adds its counts when it ends, so after a run wait (up to 2 s) until it is steady.
masked_total_now() {
  curl -s -m 5 "http://127.0.0.1:$TG_ADMIN_PORT/metrics" |
    awk '/^tracegate_masked_values_total[{ ]/{s += $NF} END{printf "%.0f\n", s}'
}
masked_total() {
  local prev cur i
  prev=$(masked_total_now)
  for ((i = 0; i < 20; i++)); do
    sleep 0.1
    cur=$(masked_total_now)
    [[ $cur == "$prev" ]] && break
    prev=$cur
  done
  echo "$prev"
}

tg_status_kb() {  # field (VmRSS, VmHWM) of the tracegate process in kB
  awk -v f="$1:" '$1 == f {print $2}' "/proc/$TRACEGATE_PID/status" 2>/dev/null || true
}

if ((NEED_SERVERS)); then
  PG_SHARED_BUFFERS=512MB
  PG_EXTRA_CONF="shared_preload_libraries = ''"
  pg_setup
  load_traces
  ONE_TRACE_ID=$(psql_admin -At -d "$DB" -c \
    "select id from traces order by id offset (select count(*) / 2 from traces) limit 1")
  [[ $ONE_TRACE_ID =~ ^[A-Za-z0-9._:-]+$ ]] || die "unexpected trace id '$ONE_TRACE_ID'"
  # Plant an email and a card in the fetched trace (a user message in input, the email again
  # in metadata), so that masking has something to rewrite in every fetched row.
  psql_admin -d "$DB" <<SQL
UPDATE traces SET
  input = CASE
    WHEN jsonb_typeof(input -> 'messages') = 'array' THEN jsonb_set(input, '{messages}',
      (input -> 'messages') || jsonb_build_array(jsonb_build_object('role', 'user',
        'content', $(sql_quote "$PLANT_TEXT"))))
    WHEN jsonb_typeof(input) = 'object' THEN
      input || jsonb_build_object('note', $(sql_quote "$PLANT_TEXT"))
    ELSE jsonb_build_object('original', input, 'note', $(sql_quote "$PLANT_TEXT")) END,
  metadata = CASE
    WHEN jsonb_typeof(metadata) = 'object' THEN
      metadata || jsonb_build_object('customer_email', $(sql_quote "$PLANT_EMAIL"))
    ELSE jsonb_build_object('original', metadata, 'customer_email', $(sql_quote "$PLANT_EMAIL")) END
WHERE id = '$ONE_TRACE_ID';
CREATE EXTENSION IF NOT EXISTS pg_prewarm;
VACUUM ANALYZE;
SQL
  grant_read_access
  psql_admin -d "$DB" -At -c "select sum(pg_prewarm(c.oid)) from pg_class c
    join pg_namespace s on s.oid = c.relnamespace
    where c.relkind in ('r','i','t') and s.nspname in ('public','pg_toast')" >/dev/null
  ONE_ROW_BYTES=$(psql_admin -At -d "$DB" -c \
    "select octet_length(t::text) from traces t where id = '$ONE_TRACE_ID'")
  INPUT_BYTES=$(psql_admin -At -d "$DB" -c \
    "select octet_length(input::text) from traces where id = '$ONE_TRACE_ID'")
  log "traces: $NTRACES ($DATA_SOURCE); fetched: $ONE_TRACE_ID ($ONE_ROW_BYTES bytes as text," \
      "input $INPUT_BYTES), planted: $PLANT_EMAIL (input and metadata), $PLANT_CARD (input)"

  if want_target pgbouncer && want_part e2e; then
    start_pgbouncer smoke_test "$PGB_PORT" pgbouncer || true
  fi
  want_target direct && want_part e2e && ACTIVE_TARGETS+=(direct)
  # The stream records ~STREAM_MB in one session: past audit.max_session_bytes (256 MiB by
  # default) the gateway ends the session, so the cap is raised for this run.
  if TG_STATIC_USER=1 TG_GATE=1 TG_MASKED_GROUP=$MASKED_GROUP \
     TG_AUDIT=$'audit:\n  max_session_bytes: 8GiB' \
     TG_BACKEND_EXTRA="      statement_timeout: 0ms" \
     TG_RULE_TTL=${GRANT_TTL_S}s TG_MAX_TTL=${GRANT_TTL_S}s TG_RULE_MAX_SESSION=${GRANT_TTL_S}s \
     TG_RULE_USES=$GRANT_USES TG_RULE_MAX_ROWS=0 TG_RULE_MAX_BYTES=0 \
     start_tracegate smoke_test "$TG_PORT" tracegate; then
    TG_RSS_START_KB=$(tg_status_kb VmRSS)
    log "tracegate pid $TRACEGATE_PID ($(cat "/proc/$TRACEGATE_PID/comm" 2>/dev/null)):" \
        "VmRSS $TG_RSS_START_KB kB after start"
    fetch_sql="SELECT t.* FROM traces t WHERE t.id = '$ONE_TRACE_ID'"
    # The check that masking rewrites the fetched row: the unmasked grant sees the planted
    # values, the masked one sees none of them and the redaction markers instead.
    plain_out=$(grant_psql 0 "$fetch_sql") || true
    masked_out=$(grant_psql 1 "$fetch_sql") || true
    if [[ $plain_out == *"$PLANT_EMAIL"* && $plain_out == *"$PLANT_CARD"* ]]; then
      ACTIVE_TARGETS+=(tracegate+gate)
    else
      log "unmasked grant fetch: ${plain_out:0:300}"
      SKIP_REASON[tracegate+gate]="a grant session could not fetch the planted trace"
      warn "tracegate+gate: ${SKIP_REASON[tracegate+gate]}; it is SKIPPED"
    fi
    if [[ -n $masked_out && $masked_out != *"$PLANT_EMAIL"* && $masked_out != *"$PLANT_CARD"* &&
          $masked_out == *"[REDACTED:EMAIL]"* && $masked_out == *"[REDACTED:CARD]"* ]]; then
      ACTIVE_TARGETS+=(tracegate+gate+mask)
      PLANT_CHECK=$(grep -o '.\{30\}\[REDACTED:CARD\].\{40\}' <<<"$masked_out" | head -n1)
      log "masking rewrites the fetched row: …${PLANT_CHECK}…"
    else
      log "masked grant fetch: ${masked_out:0:300}"
      SKIP_REASON[tracegate+gate+mask]="the masked grant session did not return a masked row"
      warn "tracegate+gate+mask: ${SKIP_REASON[tracegate+gate+mask]}; it is SKIPPED"
    fi
  else
    SKIP_REASON[tracegate+gate]=${SKIP_REASON[tracegate]}
    SKIP_REASON[tracegate+gate+mask]=${SKIP_REASON[tracegate]}
    unset 'SKIP_REASON[tracegate]'
  fi
fi

port_of() {
  case $1 in
    direct) echo "$PG_PORT" ;;
    pgbouncer) echo "$PGB_PORT" ;;
    tracegate+gate | tracegate+gate+mask) echo "$TG_PORT" ;;
  esac
}
active() { [[ " ${ACTIVE_TARGETS[*]} " == *" $1 "* ]]; }

# ---- e2e: pgbench, one process per client ----------------------------------------------
# As pg_overhead.sh's trace-one rows: a grant carries one session at a time, so N clients are
# N pgbench processes (-c 1 -j 1) with a grant each, and every target runs that way.
ONE_SCRIPT=$BENCH_DIR/trace_fetch_grant.sql
fetch_args() {  # protocol -> pgbench args (simple: the value carries its quotes)
  if [[ $1 == simple ]]; then echo "-f $ONE_SCRIPT -D tid='$ONE_TRACE_ID'"
  else echo "-f $ONE_SCRIPT -D tid=$ONE_TRACE_ID"; fi
}

# pgbench_client: bench/lib/setup.sh
# run_fetch log target protocol clients seconds: `clients` pgbench processes side by side,
# logs merged by lib/pgbench_merge.py
run_fetch() {
  local logf=$1 target=$2 proto=$3 clients=$4 secs=$5
  local port i rc=0 r retries=0 tok creds=() pids=() logs=()
  port=$(port_of "$target")
  if [[ $target == tracegate+gate* ]]; then
    tok=$TOKEN_FILE
    [[ $target == tracegate+gate+mask ]] && tok=$MASKED_TOKEN_FILE
    mapfile -t creds < <(GRANT_TOKEN_FILE=$tok request_grants "$ONE_TRACE_ID" "$clients" \
                           "masking benchmark" 2>"$logf.grant-errors")
    if ((${#creds[@]} != clients)); then
      { echo "masking: requesting $clients grants failed:"; cat "$logf.grant-errors"; } >"$logf"
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
    # shellcheck disable=SC2086,SC2046  # user and password: two words; the fetch args
    pgbench_client "$logf.$i" "$port" ${creds[i]} "$retries" "$proto" "$secs" \
      $(fetch_args "$proto") &
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

E2E_TARGETS=()
for t in direct pgbouncer tracegate+gate tracegate+gate+mask; do
  want_target "$t" && active "$t" && E2E_TARGETS+=("$t")
done
STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
if want_part e2e && ((${#E2E_TARGETS[@]} > 0)); then
  ROWS=()
  for proto in $PROTOCOLS; do
    for c in $CLIENTS; do ROWS+=("fetch-$proto-$c|$proto|$c"); done
  done
  if ((WARMUP > 0)); then
    for target in "${E2E_TARGETS[@]}"; do
      log "warm-up $target (${WARMUP}s, extended, 8 x 1 client)"
      run_fetch "$WORK/runs/warmup-$target.log" "$target" extended 8 "$WARMUP" ||
        log "  warm-up on $target failed:" \
            "$(grep -v '^$' "$WORK/runs/warmup-$target.log" | tail -n 3 | tr '\n' ' ')"
    done
  fi
  NT=${#E2E_TARGETS[@]}
  est=$((${#ROWS[@]} * NT * REPS * DURATION))
  log "${#ROWS[@]} rows x $NT targets (${E2E_TARGETS[*]}) x $REPS reps x ${DURATION}s" \
      "≈ $((est / 60))m$((est % 60))s"
  for ((rep = 1; rep <= REPS; rep++)); do
    for i in "${!ROWS[@]}"; do
      IFS='|' read -r rid proto clients <<<"${ROWS[$i]}"
      for ((k = 0; k < NT; k++)); do
        target=${E2E_TARGETS[$(((i + rep - 1 + k) % NT))]}
        logf=$RESULTS/$rid-$target-$rep.log
        before="" after="" rc=0
        [[ $target == tracegate+gate* ]] && before=$(masked_total)
        run_fetch "$logf" "$target" "$proto" "$clients" "$DURATION" || rc=$?
        [[ $target == tracegate+gate* ]] && after=$(masked_total)
        masked=""
        [[ -n $before && -n $after ]] && masked=$((after - before))
        what="rep $rep/$REPS  $(printf '%-20s %-20s' "$rid" "$target")"
        if ((rc == 0)); then
          log "$what $(summary "$logf")${masked:+ masked values=$masked}"
        else
          log "$what FAILED rc=$rc:" \
              "$(grep -iE 'error|fatal|abort|failed' "$logf" | head -n 2 | tr '\n' ' ')"
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rid" "$proto" "$clients" "$target" "$rep" "$rc" \
          "$masked" >>"$RESULTS/runs.tsv"
      done
    done
  done
fi

# ---- stream: ~STREAM_MB of result rows in one session ----------------------------------
# SELECT t.input, generate_series(1, N): one row per series value, each carrying the planted
# trace's input (the set-returning function in the select list streams, PostgreSQL does not
# materialise it). psql reads the whole result and prints it to /dev/null. For the tracegate
# targets VmHWM is reset (clear_refs 5) right before the stream and VmRSS sampled every 0.1 s.
sample_rss() {  # pid outfile: VmRSS in kB every 0.1 s until killed
  while :; do
    awk '$1 == "VmRSS:" {print $2}' "/proc/$1/status" 2>/dev/null >>"$2" || return 0
    sleep 0.1
  done
}

run_stream() {  # target
  local target=$1 port user pw tok cred rows sql t0 t1 rc=0 out sampler="" before="" after=""
  local rss0="" hwm_prev="" hwm="" rss1="" rmax="" reset=0 logf=$RESULTS/stream-$1.log
  # N rows of (input, n): bytes as PostgreSQL sends them in text format
  rows=$(( (STREAM_MB * 1000000 + INPUT_BYTES + 6) / (INPUT_BYTES + 7) ))
  sql="SELECT t.input, generate_series(1, $rows) FROM traces t WHERE t.id = '$ONE_TRACE_ID'"
  port=$(port_of "$target")
  if [[ $target == direct ]]; then
    user=$CLIENT_USER pw=$CLIENT_PASSWORD
  else
    tok=$TOKEN_FILE
    [[ $target == tracegate+gate+mask ]] && tok=$MASKED_TOKEN_FILE
    cred=$(GRANT_TOKEN_FILE=$tok request_grants "$ONE_TRACE_ID" 1 "masking stream") ||
      { log "stream $target: grant request failed"; return 0; }
    read -r user pw <<<"$cred"
    rss0=$(tg_status_kb VmRSS)
    hwm_prev=$(tg_status_kb VmHWM)  # since start, or since the previous stream's reset
    # 5 = reset the peak RSS (VmHWM) to the current RSS (Linux >= 4.0)
    if echo 5 >"/proc/$TRACEGATE_PID/clear_refs" 2>/dev/null; then reset=1; fi
    before=$(masked_total)
    : >"$RESULTS/rss-$target.txt"
    sample_rss "$TRACEGATE_PID" "$RESULTS/rss-$target.txt" &
    sampler=$!
  fi
  log "stream $target: $rows rows × ~$((INPUT_BYTES + 7)) bytes ≈ ${STREAM_MB} MB"
  t0=$(date +%s%N)
  PGPASSWORD=$pw PGSSLMODE=disable PGCONNECT_TIMEOUT=10 timeout -k 5 "$STREAM_TIMEOUT" \
    psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U "$user" -d "$DB" \
      -o /dev/null -c "$sql" >"$logf" 2>&1 || rc=$?
  t1=$(date +%s%N)
  if [[ -n $sampler ]]; then
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    hwm=$(tg_status_kb VmHWM)
    rss1=$(tg_status_kb VmRSS)
    rmax=$(sort -n "$RESULTS/rss-$target.txt" | tail -n1)
    after=$(masked_total)
  fi
  out=$(tr '\n' ' ' <"$logf" | cut -c1-300)
  local secs
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b - a) / 1e9}')
  if ((rc == 0)); then
    log "stream $target: ${secs}s${hwm:+, gateway RSS $rss0 kB before, peak $hwm kB}$(
        )${hwm:+ (sampled max $rmax kB), $rss1 kB after}"
  else
    log "stream $target: FAILED rc=$rc: $out"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$rows" \
    "$((INPUT_BYTES + 7))" "$secs" "$rc" "$rss0" "$hwm_prev" "$hwm" "$rss1" "$rmax" "$reset" \
    "$([[ -n $before && -n $after ]] && echo $((after - before)))" "$out" >>"$RESULTS/stream.tsv"
}

TG_HWM_BEFORE_STREAM_KB=""
if want_part stream && ((NEED_SERVERS)); then
  [[ -n $TRACEGATE_PID ]] && TG_HWM_BEFORE_STREAM_KB=$(tg_status_kb VmHWM)
  for target in $STREAM_TARGETS; do
    if [[ $target == direct ]] || active "$target"; then
      run_stream "$target"
    else
      log "stream $target: SKIPPED (${SKIP_REASON[$target]:-not available})"
    fi
  done
fi
FINISHED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)

TG_ALIVE="" TG_RSS_END_KB="" TG_HWM_END_KB=""
if [[ -n $TRACEGATE_PID ]]; then
  if kill -0 "$TRACEGATE_PID" 2>/dev/null; then
    TG_ALIVE=1
    TG_RSS_END_KB=$(tg_status_kb VmRSS)
  else
    TG_ALIVE=0
  fi
  if [[ -f $WORK/tracegate/tracegate.log ]]; then
    cp "$WORK/tracegate/tracegate.log" "$RESULTS/tracegate.log"
  fi
fi

# ---- report ------------------------------------------------------------------------------
SKIPPED=""
for t in "${!SKIP_REASON[@]}"; do SKIPPED+="$t"$'\t'"${SKIP_REASON[$t]}"$'\n'; done
mkdir -p "$(dirname "$OUT_JSON")"
rc=0
BENCH_PARTS=$PARTS BENCH_STARTED_AT=$STARTED_AT BENCH_FINISHED_AT=$FINISHED_AT \
BENCH_LOAD_START=$LOAD_START BENCH_LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)" \
BENCH_TARGETS="${E2E_TARGETS[*]}" BENCH_SKIPPED=$SKIPPED \
BENCH_ENGINE_JSON=$ENGINE_JSON BENCH_ENGINE_NOTE=$ENGINE_NOTE \
BENCH_ENGINE_MIN_TIME=$ENGINE_MIN_TIME BENCH_ENGINE_REPS=$ENGINE_REPS \
BENCH_DURATION=$DURATION BENCH_WARMUP=$WARMUP BENCH_REPS=$REPS \
BENCH_NTRACES=$NTRACES BENCH_PAYLOAD_BYTES=$PAYLOAD_BYTES BENCH_TRACE_DATA=${DATA_SOURCE:-} \
BENCH_ONE_TRACE_ID=$ONE_TRACE_ID BENCH_ONE_ROW_BYTES=$ONE_ROW_BYTES BENCH_INPUT_BYTES=$INPUT_BYTES \
BENCH_PLANTED="$PLANT_EMAIL (input, metadata); $PLANT_CARD (input)" BENCH_PLANT_CHECK=$PLANT_CHECK \
BENCH_STREAM_MB=$STREAM_MB BENCH_GRANT_TTL_S=$GRANT_TTL_S BENCH_GRANT_USES=$GRANT_USES \
BENCH_TRACEGATE_WORKERS=$TRACEGATE_WORKERS BENCH_TRACEGATE_POOL=$TRACEGATE_POOL \
BENCH_PGBOUNCER_POOL=$PGBOUNCER_POOL \
BENCH_TG_ALIVE=$TG_ALIVE BENCH_TG_LOG=$RESULTS/tracegate.log \
BENCH_TG_RSS_START_KB=$TG_RSS_START_KB BENCH_TG_RSS_END_KB=$TG_RSS_END_KB \
BENCH_TG_HWM_BEFORE_STREAM_KB=$TG_HWM_BEFORE_STREAM_KB \
BENCH_PG_VERSION=${SERVER_VERSION:-} \
BENCH_PGBENCH_VERSION="$(pgbench --version 2>/dev/null | awk '{print $3}' || true)" \
BENCH_PGBOUNCER_VERSION=$PGBOUNCER_VERSION BENCH_TRACEGATE_VERSION=$TRACEGATE_VERSION \
BENCH_TRACEGATE_BIN=$( ((NEED_SERVERS)) && echo "$TRACEGATE_BIN" || true) \
BENCH_REPO_COMMIT="$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  python3 "$BENCH_DIR/lib/masking_report.py" --results "$RESULTS" --out "$OUT_JSON" \
    --strict "$STRICT" || rc=$?
exit "$rc"
