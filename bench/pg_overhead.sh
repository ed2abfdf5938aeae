#!/usr/bin/env bash
# Pass-through overhead of tracegate, side by side with direct PostgreSQL and pgbouncer, and
# the cost of the statement gate on grant sessions.
#
# Starts a throwaway PostgreSQL 15, pgbouncer (session mode) and tracegate in front of it,
# all on TCP loopback with SCRAM-SHA-256 on every hop (setup: bench/lib/setup.sh, shared
# with jit_cycle.sh), then runs pgbench workloads against the paths back to back
# (interleaved per row, order rotating), prints a table and the target checks, and writes
# bench/results/pg_overhead.json. The paths:
#   direct          pgbench -> PostgreSQL
#   pgbouncer       pgbench -> pgbouncer (session mode) -> PostgreSQL
#   tracegate       pgbench as tracegate's static user (pass-through, not gated)
#   tracegate+gate  pgbench as a just-in-time grant's one-time user g_<id> (from POST
#                   /v1/grants with a development-issuer token): every statement passes the
#                   statement gate; only the trace-one rows (the grant pins one trace)
# See bench/README.md.
#
#   bench/pg_overhead.sh                 # full run (-T 10 per measurement)
#   DURATION=3 REPS=1 bench/pg_overhead.sh   # quick run (~4 min)
# The default (REPS=3 x DURATION=10) takes ~30 min: median of 3 interleaved repetitions.
# shellcheck source-path=SCRIPTDIR disable=SC2034  # some variables are read by lib/setup.sh
set -euo pipefail

BENCH_NAME=pg_overhead
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
source "$BENCH_DIR/lib/setup.sh"

# ---- knobs (env) -------------------------------------------------------------------------
DURATION=${DURATION:-10}            # seconds per measured pgbench run
WARMUP=${WARMUP:-3}                 # seconds per warm-up run (0 = none)
REPS=${REPS:-3}                     # repetitions per row; the median is reported
SCALE=${SCALE:-10}                  # pgbench -i -s
NTRACES=${NTRACES:-2000}            # rows in traces
PAYLOAD_BYTES=${PAYLOAD_BYTES:-8192}
CLIENTS=${CLIENTS:-"1 8 32"}
PROTOCOLS=${PROTOCOLS:-"simple extended prepared"}
TRACE_PROTOCOLS=${TRACE_PROTOCOLS:-"extended"}   # trace fetch at every CLIENTS value
TRACE_SIMPLE_8=${TRACE_SIMPLE_8:-1}              # also trace fetch, simple protocol, 8 clients
ONE_PROTOCOLS=${ONE_PROTOCOLS-"simple extended prepared"}  # trace-one rows (gate); "" = none
ONE_CLIENTS=${ONE_CLIENTS:-8}                    # clients of the trace-one rows
TARGETS=${TARGETS:-"direct pgbouncer tracegate tracegate+gate"}
TRACEGATE_WORKERS=${TRACEGATE_WORKERS:-2}
TRACEGATE_POOL=${TRACEGATE_POOL:-40}
PGBOUNCER_POOL=${PGBOUNCER_POOL:-40}
READY_TIMEOUT=${READY_TIMEOUT:-20}  # seconds to wait for each server to accept connections
STRICT=${STRICT:-0}                 # 1 = exit 3 when a target is missed
OUT_JSON=${OUT_JSON:-$BENCH_DIR/results/pg_overhead.json}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PGBOUNCER_BIN=${PGBOUNCER_BIN:-$(command -v pgbouncer || echo /usr/sbin/pgbouncer)}
GEN_TRACES=${GEN_TRACES:-$REPO_DIR/scripts/gen_traces.py}
RUN_USER=${RUN_USER:-postgres}      # unprivileged user for initdb/postgres/pgbouncer

if [[ -z ${TRACEGATE_BIN:-} ]]; then
  TRACEGATE_BIN=$REPO_DIR/build/tracegate
  for c in "$REPO_DIR/build/tracegate" "$REPO_DIR/build/src/app/tracegate" \
           "$REPO_DIR"/build*/src/app/tracegate "$REPO_DIR"/build*/tracegate; do
    if [[ -x $c ]]; then TRACEGATE_BIN=$c; break; fi
  done
fi

check_uints DURATION WARMUP REPS SCALE NTRACES PAYLOAD_BYTES TRACEGATE_WORKERS TRACEGATE_POOL \
            PGBOUNCER_POOL READY_TIMEOUT ONE_CLIENTS
((DURATION > 0 && REPS > 0 && NTRACES > 0)) || die "DURATION, REPS and NTRACES must be > 0"
for t in $TARGETS; do
  [[ $t =~ ^(direct|pgbouncer|tracegate|tracegate\+gate)$ ]] ||
    die "TARGETS: unknown target '$t' (direct pgbouncer tracegate tracegate+gate)"
done
WANT_TG=0
if want_target tracegate || want_target tracegate+gate; then WANT_TG=1; fi

# ---- PostgreSQL and data (bench/lib/setup.sh) ----------------------------------------------
if ((WANT_TG)); then bench_start pgbench openssl; else bench_start pgbench; fi
PG_SHARED_BUFFERS=512MB
PG_EXTRA_CONF="shared_preload_libraries = ''"
pg_setup

log "pgbench -i -s $SCALE"
pgbench -i -q -s "$SCALE" -h "$WORK/sock" -p "$PG_PORT" -U postgres "$DB" >"$WORK/pgbench-init.log" 2>&1 ||
  { cat "$WORK/pgbench-init.log" >&2; die "pgbench -i failed"; }

load_traces
psql_admin -d "$DB" <<SQL
CREATE EXTENSION IF NOT EXISTS pg_prewarm;
DROP TABLE IF EXISTS bench_trace_ids;
CREATE TABLE bench_trace_ids AS
  SELECT (row_number() OVER (ORDER BY id))::int AS n, id FROM traces;
ALTER TABLE bench_trace_ids ADD PRIMARY KEY (n);
ANALYZE bench_trace_ids;
VACUUM ANALYZE;
SQL
grant_read_access
# prewarm every table, index and TOAST relation of the bench database into shared_buffers
psql_admin -d "$DB" -At -c "select sum(pg_prewarm(c.oid)) from pg_class c
  join pg_namespace s on s.oid = c.relnamespace
  where c.relkind in ('r','i','t') and s.nspname in ('public','pg_toast')" >/dev/null
N_TRACE_IDS=$(psql_admin -At -d "$DB" -c 'select count(*) from bench_trace_ids')
TRACE_ROW_BYTES=$(psql_admin -At -d "$DB" -c \
  "select round(avg(octet_length(t::text))) from traces t")
# The trace-one rows fetch one trace, the one a grant is for: the middle one by id.
ONE_TRACE_ID=$(psql_admin -At -d "$DB" -c \
  "select id from traces order by id offset (select count(*) / 2 from traces) limit 1")
[[ $ONE_TRACE_ID =~ ^[A-Za-z0-9._:-]+$ ]] || die "unexpected trace id '$ONE_TRACE_ID'"
ONE_ROW_BYTES=$(psql_admin -At -d "$DB" -c \
  "select octet_length(t::text) from traces t where id = '$ONE_TRACE_ID'")
log "traces: $N_TRACE_IDS rows, avg row $TRACE_ROW_BYTES bytes as text ($DATA_SOURCE);" \
    "trace-one: $ONE_TRACE_ID ($ONE_ROW_BYTES bytes)"

# shellcheck disable=SC2317  # invoked through start_pgbouncer / start_tracegate
smoke_test() {  # port name: one authenticated query over TCP as the client user
  local out
  if out=$(PGPASSWORD=$CLIENT_PASSWORD PGSSLMODE=disable PGCONNECT_TIMEOUT=10 \
      psql -X -At -h 127.0.0.1 -p "$1" -U "$CLIENT_USER" -d "$DB" \
      -c 'select count(*) from bench_trace_ids' 2>&1) && [[ $out == "$N_TRACE_IDS" ]]; then
    return 0
  fi
  log "$2 smoke test failed: $out"
  return 1
}

# ---- servers -----------------------------------------------------------------------------
want_target direct && ACTIVE_TARGETS+=(direct)
if want_target pgbouncer; then start_pgbouncer smoke_test "$PGB_PORT" pgbouncer || true; fi

# tracegate serves both tracegate targets from one process and one listener: the static user
# `bench` is not gated (pass-through), grant users g_<id> are. Grants: one policy rule, one
# grant per pgbench process (a grant carries one session at a time), valid for the whole run,
# no row or byte limit. Uses: pgbench opens a setup connection and then its client's, one
# after the other (2 uses), and a process is restarted when its client's login lost the race
# with the end of the setup session (see pgbench_client), so GRANT_USES leaves room for that.
GRANT_TTL_S=$(( (DURATION > WARMUP ? DURATION : WARMUP) + 120 ))
GRANT_USES=8
GRANT_RETRIES=3
grant_smoke() {  # one grant session: the trace-one query returns the one row
  local cred user pw out
  cred=$(request_grants "$ONE_TRACE_ID" 1 "pg_overhead smoke test") || return 1
  read -r user pw <<<"$cred"
  if out=$(PGPASSWORD=$pw PGSSLMODE=disable PGCONNECT_TIMEOUT=10 psql -X -At -h 127.0.0.1 \
      -p "$TG_PORT" -U "$user" -d "$DB" \
      -c "select count(*) from (SELECT t.* FROM traces t WHERE t.id = '$ONE_TRACE_ID') s" 2>&1) &&
     [[ $out == 1 ]]; then
    return 0
  fi
  log "tracegate+gate smoke test (grant user $user) failed: $out"
  return 1
}
if ((WANT_TG)); then
  if TG_STATIC_USER=1 TG_GATE=1 TG_BACKEND_EXTRA="      statement_timeout: 0ms" \
     TG_RULE_TTL=${GRANT_TTL_S}s TG_MAX_TTL=${GRANT_TTL_S}s TG_RULE_MAX_SESSION=${GRANT_TTL_S}s \
     TG_RULE_USES=$GRANT_USES TG_RULE_MAX_ROWS=0 TG_RULE_MAX_BYTES=0 \
     start_tracegate smoke_test "$TG_PORT" tracegate; then
    want_target tracegate && ACTIVE_TARGETS+=(tracegate)
    if want_target tracegate+gate; then
      if grant_smoke; then
        ACTIVE_TARGETS+=(tracegate+gate)
      else
        echo "---- tracegate log (tail) ----" >&2; tail -n 30 "$WORK/tracegate/tracegate.log" >&2 || true
        warn "tracegate+gate: a grant session could not fetch its trace; it is SKIPPED"
        SKIP_REASON[tracegate+gate]="grant smoke test failed (see log above)"
      fi
    fi
  else
    want_target tracegate+gate && SKIP_REASON[tracegate+gate]=${SKIP_REASON[tracegate]}
    want_target tracegate || unset 'SKIP_REASON[tracegate]'
  fi
fi
((${#ACTIVE_TARGETS[@]} > 0)) || die "nothing to measure (TARGETS='$TARGETS')"

port_of() {
  case $1 in
    direct) echo "$PG_PORT" ;;
    pgbouncer) echo "$PGB_PORT" ;;
    tracegate | tracegate+gate) echo "$TG_PORT" ;;
  esac
}

# ---- workloads ---------------------------------------------------------------------------
# Each row: id|workload|protocol|clients|layout|extra pgbench args
#   layout single:     one pgbench, -c clients -j min(clients, 2); direct, pgbouncer, tracegate
#   layout per-client: `clients` pgbench processes side by side, -c 1 -j 1 each, numbers
#                      summed (tps) and averaged over transactions (latency); every target,
#                      tracegate+gate included (each process logs in with its own grant)
FETCH_SCRIPT=$BENCH_DIR/trace_fetch.sql
ONE_SCRIPT=$BENCH_DIR/trace_fetch_grant.sql
one_args() {  # protocol -> pgbench args fetching ONE_TRACE_ID through trace_fetch_grant.sql
  # simple: pgbench pastes the value into the text, so it carries its quotes;
  # extended/prepared: the value is bound to $1 as is.
  if [[ $1 == simple ]]; then
    echo "-f $ONE_SCRIPT -D tid='$ONE_TRACE_ID'"
  else
    echo "-f $ONE_SCRIPT -D tid=$ONE_TRACE_ID"
  fi
}
ROWS=()
for proto in $PROTOCOLS; do
  for c in $CLIENTS; do ROWS+=("select-$proto-$c|select-only|$proto|$c|single|-S"); done
done
ROWS+=("select-connect-simple-8|select-only -C|simple|8|single|-S -C")
for proto in $TRACE_PROTOCOLS; do
  for c in $CLIENTS; do
    ROWS+=("trace-$proto-$c|trace-fetch|$proto|$c|single|-f $FETCH_SCRIPT -D ntraces=$N_TRACE_IDS")
  done
done
if [[ $TRACE_SIMPLE_8 == 1 && " $TRACE_PROTOCOLS " != *" simple "* ]]; then
  ROWS+=("trace-simple-8|trace-fetch|simple|8|single|-f $FETCH_SCRIPT -D ntraces=$N_TRACE_IDS")
fi
if ((ONE_CLIENTS > 0)); then
  for proto in $ONE_PROTOCOLS; do
    ROWS+=("trace-one-$proto-$ONE_CLIENTS|trace-one|$proto|$ONE_CLIENTS|per-client|$(one_args "$proto")")
  done
fi

row_targets() {  # layout -> the active targets that run it, in ACTIVE_TARGETS order
  local t out=()
  for t in "${ACTIVE_TARGETS[@]}"; do
    [[ $t == tracegate+gate && $1 != per-client ]] && continue
    out+=("$t")
  done
  echo "${out[*]}"
}

RUNS_TSV=$WORK/runs.tsv
: >"$RUNS_TSV"

# run_pgbench log target protocol clients seconds extra...: one pgbench process
run_pgbench() {
  local logf=$1 target=$2 proto=$3 clients=$4 secs=$5; shift 5
  local threads=$((clients < 2 ? clients : 2)) port rc=0
  port=$(port_of "$target")
  PGPASSWORD=$CLIENT_PASSWORD PGSSLMODE=disable PGGSSENCMODE=disable PGAPPNAME=pg_overhead \
    timeout --foreground -k 5 $((secs + 60)) \
    pgbench -n -h 127.0.0.1 -p "$port" -U "$CLIENT_USER" -M "$proto" -c "$clients" -j "$threads" \
      -T "$secs" -P "$secs" "$@" "$DB" >"$logf" 2>&1 || rc=$?
  return $rc
}

# pgbench_client: bench/lib/setup.sh
# run_pgbench_per_client log target protocol clients seconds extra...: `clients` pgbench
# processes with one connection each, started together; for tracegate+gate each logs in
# with a grant of its own (all requested before the processes start). Their logs are merged
# into one pgbench-like log (lib/pgbench_merge.py) that the report reads as one run.
run_pgbench_per_client() {
  local logf=$1 target=$2 proto=$3 clients=$4 secs=$5; shift 5
  local port i rc=0 r retries=0 creds=() pids=() logs=()
  port=$(port_of "$target")
  if [[ $target == tracegate+gate ]]; then
    mapfile -t creds < <(request_grants "$ONE_TRACE_ID" "$clients" "pg_overhead benchmark" \
                           2>"$logf.grant-errors")
    if ((${#creds[@]} != clients)); then
      { echo "pg_overhead: requesting $clients grants failed:"; cat "$logf.grant-errors"; } >"$logf"
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
    # shellcheck disable=SC2086  # user and password: two words
    pgbench_client "$logf.$i" "$port" ${creds[i]} "$retries" "$proto" "$secs" "$@" &
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

run_row() {  # layout log target protocol clients seconds extra...
  local layout=$1; shift
  if [[ $layout == per-client ]]; then run_pgbench_per_client "$@"; else run_pgbench "$@"; fi
}

summary() {  # log -> "tps=… lat=… ms"
  awk '/^tps = /{if(t=="")t=$3} /^latency average = /{if(l=="")l=$4}
       /^number of failed transactions: /{if(f=="")f=$5}
       END{printf "tps=%s lat=%s ms%s", (t==""?"?":t), (l==""?"?":l), (f!="" && f!="0" ? " failed=" f : "")}' "$1"
}

if ((WARMUP > 0)); then
  for target in "${ACTIVE_TARGETS[@]}"; do
    if [[ $target == tracegate+gate ]]; then
      ((ONE_CLIENTS > 0)) || continue
      log "warm-up $target (${WARMUP}s trace-one, extended, $ONE_CLIENTS x 1 client)"
      # shellcheck disable=SC2046
      run_pgbench_per_client "$WORK/runs/warmup-one-$target.log" "$target" extended \
        "$ONE_CLIENTS" "$WARMUP" $(one_args extended) ||
        log "  warm-up trace-one on $target failed: $(grep -v '^$' "$WORK/runs/warmup-one-$target.log" | tail -n 3 | tr '\n' ' ')"
      continue
    fi
    log "warm-up $target (${WARMUP}s select-only, ${WARMUP}s trace fetch, 8 clients)"
    run_pgbench "$WORK/runs/warmup-select-$target.log" "$target" simple 8 "$WARMUP" -S ||
      log "  warm-up select-only on $target failed: $(tail -n 3 "$WORK/runs/warmup-select-$target.log" | tr '\n' ' ')"
    run_pgbench "$WORK/runs/warmup-trace-$target.log" "$target" extended 8 "$WARMUP" \
      -f "$FETCH_SCRIPT" -D ntraces="$N_TRACE_IDS" ||
      log "  warm-up trace fetch on $target failed: $(tail -n 3 "$WORK/runs/warmup-trace-$target.log" | tr '\n' ' ')"
  done
fi

NRUNS=0
for row in "${ROWS[@]}"; do
  IFS='|' read -r _ _ _ _ layout _ <<<"$row"
  read -r -a rt <<<"$(row_targets "$layout")"
  NRUNS=$((NRUNS + ${#rt[@]}))
done
est=$((NRUNS * REPS * DURATION))
log "${#ROWS[@]} rows, $NRUNS runs per repetition (targets: ${ACTIVE_TARGETS[*]}) x $REPS reps" \
    "x ${DURATION}s ≈ $((est / 60))m$((est % 60))s"
STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for ((rep = 1; rep <= REPS; rep++)); do
  for i in "${!ROWS[@]}"; do
    IFS='|' read -r rid workload proto clients layout extra <<<"${ROWS[$i]}"
    read -r -a rt <<<"$(row_targets "$layout")"
    NT=${#rt[@]}
    for ((k = 0; k < NT; k++)); do
      target=${rt[$(((i + rep - 1 + k) % NT))]}
      logf=$WORK/runs/$rid-$target-$rep.log
      rc=0
      # shellcheck disable=SC2086
      run_row "$layout" "$logf" "$target" "$proto" "$clients" "$DURATION" $extra || rc=$?
      if ((rc == 0)); then
        log "rep $rep/$REPS  $(printf '%-26s %-14s' "$rid" "$target") $(summary "$logf")"
      else
        log "rep $rep/$REPS  $(printf '%-26s %-14s' "$rid" "$target") FAILED rc=$rc: $(grep -v '^$' "$logf" | grep -iE 'error|fatal|abort' | head -n 2 | tr '\n' ' ')"
      fi
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rid" "$workload" "$proto" "$clients" "$extra" \
        "$target" "$rep" "$rc" "$layout" >>"$RUNS_TSV"
    done
  done
done
FINISHED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
TG_ALIVE=""
if [[ -n $TRACEGATE_PID ]]; then
  if kill -0 "$TRACEGATE_PID" 2>/dev/null; then TG_ALIVE=1; else TG_ALIVE=0; fi
  [[ -f $WORK/tracegate/tracegate.log ]] && cp "$WORK/tracegate/tracegate.log" "$WORK/tracegate-final.log"
fi

# ---- report ------------------------------------------------------------------------------
SKIPPED=""
for t in "${!SKIP_REASON[@]}"; do SKIPPED+="$t"$'\t'"${SKIP_REASON[$t]}"$'\n'; done
mkdir -p "$(dirname "$OUT_JSON")"
rc=0
BENCH_STARTED_AT=$STARTED_AT BENCH_FINISHED_AT=$FINISHED_AT \
BENCH_LOAD_START=$LOAD_START BENCH_LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)" \
BENCH_TARGETS="${ACTIVE_TARGETS[*]}" BENCH_SKIPPED=$SKIPPED \
BENCH_DURATION=$DURATION BENCH_WARMUP=$WARMUP BENCH_REPS=$REPS BENCH_SCALE=$SCALE \
BENCH_NTRACES=$N_TRACE_IDS BENCH_PAYLOAD_BYTES=$PAYLOAD_BYTES BENCH_TRACE_ROW_BYTES=$TRACE_ROW_BYTES \
BENCH_TRACE_DATA=$DATA_SOURCE BENCH_TRACEGATE_WORKERS=$TRACEGATE_WORKERS \
BENCH_TRACEGATE_POOL=$TRACEGATE_POOL BENCH_PGBOUNCER_POOL=$PGBOUNCER_POOL \
BENCH_ONE_TRACE_ID=$ONE_TRACE_ID BENCH_ONE_ROW_BYTES=$ONE_ROW_BYTES \
BENCH_GATE_TABLES=$TRACE_TABLES BENCH_GRANT_TTL_S=$GRANT_TTL_S BENCH_GRANT_USES=$GRANT_USES \
BENCH_GRANT_RETRIES=$GRANT_RETRIES \
BENCH_TG_ALIVE=$TG_ALIVE BENCH_TG_LOG=$WORK/tracegate-final.log \
BENCH_PG_VERSION=$SERVER_VERSION BENCH_PGBENCH_VERSION="$(pgbench --version | awk '{print $3}')" \
BENCH_PGBOUNCER_VERSION=$PGBOUNCER_VERSION BENCH_TRACEGATE_VERSION=$TRACEGATE_VERSION \
BENCH_TRACEGATE_BIN=$( ((WANT_TG)) && echo "$TRACEGATE_BIN" || true) \
BENCH_REPO_COMMIT="$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  python3 "$BENCH_DIR/lib/pgbench_report.py" \
    --runs "$RUNS_TSV" --logs "$WORK/runs" --out "$OUT_JSON" --strict "$STRICT" || rc=$?
exit "$rc"
