#!/usr/bin/env bash
# Pass-through overhead of tracegate, side by side with direct PostgreSQL and pgbouncer.
#
# Starts a throwaway PostgreSQL 15, pgbouncer (session mode) and tracegate in front of it,
# all on TCP loopback with SCRAM-SHA-256 on every hop, then runs pgbench workloads against
# the three paths back to back (interleaved per row, order rotating), prints a table and
# the target checks, and writes bench/results/pg_overhead.json. See bench/README.md.
#
#   bench/pg_overhead.sh                 # full run (-T 10 per measurement)
#   DURATION=3 REPS=1 bench/pg_overhead.sh   # quick run (~3 min)
# The default (REPS=3 x DURATION=10) takes ~25 min: median of 3 interleaved repetitions.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)

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
TARGETS=${TARGETS:-"direct pgbouncer tracegate"}
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

log() { printf '[pg_overhead %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
warn() {
  printf '\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
  printf '!!! WARNING: %s\n' "$@" >&2
  printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n' >&2
}
die() { log "FATAL: $*"; exit 1; }

for n in DURATION WARMUP REPS SCALE NTRACES PAYLOAD_BYTES TRACEGATE_WORKERS TRACEGATE_POOL \
         PGBOUNCER_POOL READY_TIMEOUT; do
  [[ ${!n} =~ ^[0-9]+$ ]] || die "$n must be a non-negative integer, got '${!n}'"
done
((DURATION > 0 && REPS > 0 && NTRACES > 0)) || die "DURATION, REPS and NTRACES must be > 0"
[[ $(id -u) == 0 ]] || die "run as root (it starts PostgreSQL and pgbouncer as '$RUN_USER')"
id "$RUN_USER" >/dev/null 2>&1 || die "system user '$RUN_USER' does not exist"
for b in initdb pg_ctl postgres; do
  [[ -x $PG_BIN/$b ]] || die "$PG_BIN/$b not found (apt-get install postgresql-15)"
done
for b in pgbench psql pg_isready python3 setpriv; do
  command -v "$b" >/dev/null || die "$b not found"
done

# ---- state and cleanup -------------------------------------------------------------------
WORK=""
PG_STARTED=0
PGBOUNCER_PID=""
TRACEGATE_PID=""

stop_pid() {  # pid name: SIGTERM, wait up to 5 s, then SIGKILL
  local pid=$1 name=$2 i
  [[ -n $pid ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "$name (pid $pid) ignored SIGTERM; killing"
  kill -KILL "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  stop_pid "$TRACEGATE_PID" tracegate
  stop_pid "$PGBOUNCER_PID" pgbouncer
  if ((PG_STARTED)); then
    as_run_user "$PG_BIN/pg_ctl" -D "$WORK/pgdata" -m fast -w -t 20 stop >/dev/null 2>&1 ||
      as_run_user "$PG_BIN/pg_ctl" -D "$WORK/pgdata" -m immediate -w stop >/dev/null 2>&1
  fi
  # reap any background children we started and wait for them
  wait 2>/dev/null
  if [[ -n $WORK && -d $WORK ]]; then
    if [[ ${KEEP_WORK:-0} == 1 ]]; then log "kept work dir $WORK"; else rm -rf "$WORK"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# Runs a command as RUN_USER without a login session, in the foreground.
as_run_user() { (exec_as_run_user "$@"); }
# Replaces the current (sub)shell with the command run as RUN_USER; for background
# servers use  `exec_as_run_user cmd... &`  so that $! is the server's own pid.
exec_as_run_user() {
  cd "$WORK" && exec env HOME="$WORK" USER="$RUN_USER" LOGNAME="$RUN_USER" \
    setpriv --reuid="$RUN_USER" --regid="$RUN_USER" --init-groups -- "$@"
}

free_ports() {  # n -> n distinct free TCP ports on 127.0.0.1
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# A busy machine makes every number here noise: say so loudly (and record it in the JSON).
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
if python3 -c "import os,sys; sys.exit(0 if os.getloadavg()[0] > 0.5 * len(os.sched_getaffinity(0)) else 1)"; then
  warn "load average is $LOAD_START on $(nproc) cores before starting: something else is" \
       "running, and its CPU use will distort the comparison (top -b -n1 | head -20)"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pg_overhead.XXXXXX")
chmod 755 "$WORK"
mkdir -p "$WORK/sock" "$WORK/pgbouncer" "$WORK/runs" "$WORK/tracegate"
chown -R "$RUN_USER:" "$WORK"
log "work dir $WORK"

read -r PG_PORT PGB_PORT TG_PORT TG_ADMIN_PORT < <(free_ports 4)

# Passwords: throwaway, random per run.
rand_pw() { python3 -c 'import secrets; print(secrets.token_urlsafe(18))'; }
BACKEND_PASSWORD=$(rand_pw)   # role tracegate: pgbouncer and tracegate -> PostgreSQL
CLIENT_PASSWORD=$(rand_pw)    # role bench: pgbench -> direct | pgbouncer | tracegate
DB=bench
CLIENT_USER=bench
BACKEND_USER=tracegate

# Superuser setup goes over the Unix socket (trust); all benchmark traffic is TCP + SCRAM.
psql_admin() {
  PGOPTIONS='-c client_min_messages=warning' \
    psql -X -q -v ON_ERROR_STOP=1 -h "$WORK/sock" -p "$PG_PORT" -U postgres "$@"
}

# ---- PostgreSQL ----------------------------------------------------------------------------
log "initdb (PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}'))"
as_run_user "$PG_BIN/initdb" -D "$WORK/pgdata" -U postgres -E UTF8 --locale=C \
  --auth-local=trust --auth-host=scram-sha-256 --no-sync >"$WORK/initdb.log" 2>&1 ||
  { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
cat >>"$WORK/pgdata/postgresql.conf" <<EOF
# pg_overhead.sh: throwaway benchmark server
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$WORK/sock'
max_connections = 250
shared_buffers = 512MB
password_encryption = 'scram-sha-256'
fsync = off
synchronous_commit = off
full_page_writes = off
autovacuum = off
logging_collector = off
log_min_messages = warning
shared_preload_libraries = ''
EOF
PG_STARTED=1  # from here on cleanup runs pg_ctl stop (harmless if it never came up)
as_run_user "$PG_BIN/pg_ctl" -D "$WORK/pgdata" -l "$WORK/postgres.log" -w -t "$READY_TIMEOUT" \
  start >/dev/null || { tail -n 30 "$WORK/postgres.log" >&2; die "PostgreSQL did not start"; }
SERVER_VERSION=$(psql_admin -At -d postgres -c 'show server_version')
log "PostgreSQL $SERVER_VERSION on 127.0.0.1:$PG_PORT"

psql_admin -d postgres <<SQL
CREATE ROLE $BACKEND_USER LOGIN PASSWORD '$BACKEND_PASSWORD';
CREATE ROLE $CLIENT_USER LOGIN PASSWORD '$CLIENT_PASSWORD';
CREATE DATABASE $DB;
SQL
# The client's SCRAM verifier, exactly as PostgreSQL stores it: tracegate's users[].
# scram_verifier and pgbouncer's auth_file take it as is.
CLIENT_VERIFIER=$(psql_admin -At -d postgres -c \
  "select rolpassword from pg_authid where rolname = '$CLIENT_USER'")
[[ $CLIENT_VERIFIER == SCRAM-SHA-256\$* ]] || die "unexpected verifier for $CLIENT_USER"
# pgbouncer 1.18 cannot log in as a forced backend user whose SCRAM password differs from
# the client's (it reuses the client's SCRAM keys: pgbouncer issues #944, #1461), so its
# backend role carries the very same verifier; tracegate's backend role has its own.
PGB_BACKEND_USER=pgbouncer_backend
psql_admin -d postgres -c "CREATE ROLE $PGB_BACKEND_USER LOGIN PASSWORD '$CLIENT_VERIFIER'" >/dev/null

log "pgbench -i -s $SCALE"
pgbench -i -q -s "$SCALE" -h "$WORK/sock" -p "$PG_PORT" -U postgres "$DB" >"$WORK/pgbench-init.log" 2>&1 ||
  { cat "$WORK/pgbench-init.log" >&2; die "pgbench -i failed"; }

# ---- traces ------------------------------------------------------------------------------
DATA_SOURCE=""
load_generator() {
  [[ -f $GEN_TRACES ]] || { log "no $GEN_TRACES; using the inline SQL fallback"; return 1; }
  local help
  help=$(python3 "$GEN_TRACES" --help 2>&1) || { warn "$GEN_TRACES --help failed; using the fallback"; return 1; }
  if ! grep -q -- '--traces' <<<"$help" || ! grep -q -- '--payload-bytes' <<<"$help"; then
    warn "$GEN_TRACES lacks --traces/--payload-bytes; using the inline SQL fallback"
    return 1
  fi
  log "generating $NTRACES traces with scripts/gen_traces.py (--payload-bytes $PAYLOAD_BYTES)"
  if grep -q -- '--output' <<<"$help"; then
    python3 "$GEN_TRACES" --traces "$NTRACES" --payload-bytes "$PAYLOAD_BYTES" \
      --output "$WORK/traces.sql" 2>"$WORK/gen_traces.log"
  else
    python3 "$GEN_TRACES" --traces "$NTRACES" --payload-bytes "$PAYLOAD_BYTES" \
      >"$WORK/traces.sql" 2>"$WORK/gen_traces.log"
  fi || { cat "$WORK/gen_traces.log" >&2; warn "gen_traces.py failed; using the fallback"; return 1; }
  psql_admin -d "$DB" -f "$WORK/traces.sql" >"$WORK/traces-load.log" 2>&1 ||
    { tail -n 20 "$WORK/traces-load.log" >&2; warn "loading gen_traces.py output failed; using the fallback"; return 1; }
  # the fetch script needs traces.id (text) as the lookup key
  [[ $(psql_admin -At -d "$DB" -c "select count(*) from information_schema.columns
        where table_schema='public' and table_name='traces' and column_name='id'") == 1 ]] ||
    { warn "gen_traces.py output has no traces.id; using the fallback"; return 1; }
  DATA_SOURCE="scripts/gen_traces.py --traces $NTRACES --payload-bytes $PAYLOAD_BYTES"
}
if ! load_generator; then
  psql_admin -d "$DB" -c 'DROP TABLE IF EXISTS scores, observations, traces CASCADE' >/dev/null
  log "generating $NTRACES traces with bench/lib/traces_fallback.sql"
  psql_admin -d "$DB" -v ntraces="$NTRACES" -v payload_bytes="$PAYLOAD_BYTES" \
    -f "$BENCH_DIR/lib/traces_fallback.sql" >"$WORK/traces-load.log" 2>&1 ||
    { cat "$WORK/traces-load.log" >&2; die "loading the fallback traces failed"; }
  DATA_SOURCE="bench/lib/traces_fallback.sql (inline fallback)"
fi

psql_admin -d "$DB" <<SQL
CREATE EXTENSION IF NOT EXISTS pg_prewarm;
DROP TABLE IF EXISTS bench_trace_ids;
CREATE TABLE bench_trace_ids AS
  SELECT (row_number() OVER (ORDER BY id))::int AS n, id FROM traces;
ALTER TABLE bench_trace_ids ADD PRIMARY KEY (n);
ANALYZE bench_trace_ids;
VACUUM ANALYZE;
GRANT USAGE ON SCHEMA public TO $CLIENT_USER, $BACKEND_USER, $PGB_BACKEND_USER;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO $CLIENT_USER, $BACKEND_USER, $PGB_BACKEND_USER;
SQL
# prewarm every table, index and TOAST relation of the bench database into shared_buffers
psql_admin -d "$DB" -At -c "select sum(pg_prewarm(c.oid)) from pg_class c
  join pg_namespace s on s.oid = c.relnamespace
  where c.relkind in ('r','i','t') and s.nspname in ('public','pg_toast')" >/dev/null
N_TRACE_IDS=$(psql_admin -At -d "$DB" -c 'select count(*) from bench_trace_ids')
TRACE_ROW_BYTES=$(psql_admin -At -d "$DB" -c \
  "select round(avg(octet_length(t::text))) from traces t")
log "traces: $N_TRACE_IDS rows, avg row $TRACE_ROW_BYTES bytes as text ($DATA_SOURCE)"

# ---- pgbouncer ---------------------------------------------------------------------------
PGBOUNCER_VERSION=""
want_target() { [[ " $TARGETS " == *" $1 "* ]]; }
ACTIVE_TARGETS=()
declare -A SKIP_REASON=()
want_target direct && ACTIVE_TARGETS+=(direct)

wait_pg_ready() {  # port pid name
  local port=$1 pid=$2 name=$3 deadline=$((SECONDS + READY_TIMEOUT))
  while ((SECONDS < deadline)); do
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited during startup"; return 1
    fi
    pg_isready -q -h 127.0.0.1 -p "$port" -t 1 && return 0
    sleep 0.1
  done
  log "$name not ready after ${READY_TIMEOUT}s"
  return 1
}

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

if want_target pgbouncer; then
  if [[ -x $PGBOUNCER_BIN ]]; then
    PGBOUNCER_VERSION=$("$PGBOUNCER_BIN" --version 2>/dev/null | head -n1 | awk '{print $2}')
    cat >"$WORK/pgbouncer/userlist.txt" <<EOF
"$CLIENT_USER" "$CLIENT_VERIFIER"
EOF
    cat >"$WORK/pgbouncer/pgbouncer.ini" <<EOF
[databases]
$DB = host=127.0.0.1 port=$PG_PORT dbname=$DB user=$PGB_BACKEND_USER password=$CLIENT_PASSWORD

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $WORK/pgbouncer/userlist.txt
pool_mode = session
max_client_conn = 500
default_pool_size = $PGBOUNCER_POOL
max_db_connections = 0
server_idle_timeout = 600
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
log_pooler_errors = 1
logfile = $WORK/pgbouncer/pgbouncer.log
pidfile = $WORK/pgbouncer/pgbouncer.pid
EOF
    chown -R "$RUN_USER:" "$WORK/pgbouncer"
    chmod 600 "$WORK/pgbouncer/userlist.txt" "$WORK/pgbouncer/pgbouncer.ini"
    exec_as_run_user "$PGBOUNCER_BIN" "$WORK/pgbouncer/pgbouncer.ini" >"$WORK/pgbouncer/stdout.log" 2>&1 &
    PGBOUNCER_PID=$!
    if wait_pg_ready "$PGB_PORT" "$PGBOUNCER_PID" pgbouncer && smoke_test "$PGB_PORT" pgbouncer; then
      ACTIVE_TARGETS+=(pgbouncer)
      log "pgbouncer $PGBOUNCER_VERSION on 127.0.0.1:$PGB_PORT (session mode, pool $PGBOUNCER_POOL)"
    else
      tail -n 20 "$WORK/pgbouncer/pgbouncer.log" "$WORK/pgbouncer/stdout.log" >&2 || true
      warn "pgbouncer failed to start; its column is skipped"
      SKIP_REASON[pgbouncer]="failed to start (see log above)"
      stop_pid "$PGBOUNCER_PID" pgbouncer; PGBOUNCER_PID=""
    fi
  else
    warn "pgbouncer not installed (apt-get install -y pgbouncer); its column is skipped"
    SKIP_REASON[pgbouncer]="not installed"
  fi
fi

# ---- tracegate ---------------------------------------------------------------------------
TRACEGATE_VERSION=""
if want_target tracegate; then
  if [[ -x $TRACEGATE_BIN ]]; then
    TRACEGATE_VERSION=$(timeout 5 "$TRACEGATE_BIN" --version 2>/dev/null | head -n1 || true)
    TG_CONFIG=$WORK/tracegate/tracegate.yaml
    cat >"$TG_CONFIG" <<EOF
# generated by bench/pg_overhead.sh: pass-through, no gate, no masking, no recording
workers: $TRACEGATE_WORKERS
log_level: warn
admin:
  listen: 127.0.0.1:$TG_ADMIN_PORT
connections:
  - name: traces-pg
    type: postgres
    listen: 127.0.0.1:$TG_PORT
    backend:
      host: 127.0.0.1
      port: $PG_PORT
      database: $DB
      user: $BACKEND_USER
      password_env: TRACEGATE_BACKEND_PASSWORD
      tls: disable
      read_only: true
      statement_timeout: 0ms
    pool:
      max_size: $TRACEGATE_POOL
    users:
      - name: $CLIENT_USER
        scram_verifier: "$CLIENT_VERIFIER"
EOF
    TRACEGATE_BACKEND_PASSWORD=$BACKEND_PASSWORD "$TRACEGATE_BIN" serve --config "$TG_CONFIG" \
      >"$WORK/tracegate/tracegate.log" 2>&1 &
    TRACEGATE_PID=$!
    tg_ready() {
      local deadline=$((SECONDS + READY_TIMEOUT)) code=""
      while ((SECONDS < deadline)); do
        kill -0 "$TRACEGATE_PID" 2>/dev/null || { log "tracegate exited during startup"; return 1; }
        code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$TG_ADMIN_PORT/readyz" || true)
        if [[ $code == 200 ]]; then return 0; fi
        # no admin endpoint yet? accept the Postgres listener itself
        if [[ $code == 000 || $code == 404 ]] && pg_isready -q -h 127.0.0.1 -p "$TG_PORT" -t 1; then
          log "tracegate: /readyz answered '$code'; using pg_isready on its listener instead"
          return 0
        fi
        sleep 0.1
      done
      if kill -0 "$TRACEGATE_PID" 2>/dev/null && pg_isready -q -h 127.0.0.1 -p "$TG_PORT" -t 1; then
        warn "tracegate: /readyz still answers '$code' after ${READY_TIMEOUT}s, but its" \
             "Postgres listener accepts connections; going on (the smoke test decides)"
        return 0
      fi
      log "tracegate not ready after ${READY_TIMEOUT}s (/readyz: '$code')"
      return 1
    }
    if tg_ready && smoke_test "$TG_PORT" tracegate; then
      ACTIVE_TARGETS+=(tracegate)
      log "tracegate ${TRACEGATE_VERSION:-?} ($TRACEGATE_BIN) on 127.0.0.1:$TG_PORT, admin :$TG_ADMIN_PORT"
    else
      echo "---- tracegate config ----" >&2; sed 's/scram_verifier: .*/scram_verifier: <redacted>/' "$TG_CONFIG" >&2
      echo "---- tracegate log (tail) ----" >&2; tail -n 30 "$WORK/tracegate/tracegate.log" >&2 || true
      warn "tracegate ($TRACEGATE_BIN) failed to start or to serve a query; its column is skipped"
      SKIP_REASON[tracegate]="failed to start or to serve a query"
      stop_pid "$TRACEGATE_PID" tracegate; TRACEGATE_PID=""
    fi
  else
    warn "tracegate binary not found at $TRACEGATE_BIN (set TRACEGATE_BIN=...)" \
         "the tracegate column is SKIPPED; direct and pgbouncer are still measured"
    SKIP_REASON[tracegate]="binary not found at $TRACEGATE_BIN"
  fi
fi
((${#ACTIVE_TARGETS[@]} > 0)) || die "nothing to measure (TARGETS='$TARGETS')"

port_of() {
  case $1 in
    direct) echo "$PG_PORT" ;;
    pgbouncer) echo "$PGB_PORT" ;;
    tracegate) echo "$TG_PORT" ;;
  esac
}

# ---- workloads ---------------------------------------------------------------------------
# Each row: id|workload|protocol|clients|extra pgbench args
FETCH_SCRIPT=$BENCH_DIR/trace_fetch.sql
ROWS=()
for proto in $PROTOCOLS; do
  for c in $CLIENTS; do ROWS+=("select-$proto-$c|select-only|$proto|$c|-S"); done
done
ROWS+=("select-connect-simple-8|select-only -C|simple|8|-S -C")
for proto in $TRACE_PROTOCOLS; do
  for c in $CLIENTS; do ROWS+=("trace-$proto-$c|trace-fetch|$proto|$c|-f $FETCH_SCRIPT -D ntraces=$N_TRACE_IDS"); done
done
if [[ $TRACE_SIMPLE_8 == 1 && " $TRACE_PROTOCOLS " != *" simple "* ]]; then
  ROWS+=("trace-simple-8|trace-fetch|simple|8|-f $FETCH_SCRIPT -D ntraces=$N_TRACE_IDS")
fi

RUNS_TSV=$WORK/runs.tsv
: >"$RUNS_TSV"

# run_pgbench log target protocol clients seconds extra...
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

summary() {  # log -> "tps=… lat=… ms"
  awk '/^tps = /{t=$3} /^latency average = /{l=$4} /^number of failed transactions: /{f=$5}
       END{printf "tps=%s lat=%s ms%s", (t==""?"?":t), (l==""?"?":l), (f!="" && f!="0" ? " failed=" f : "")}' "$1"
}

if ((WARMUP > 0)); then
  for target in "${ACTIVE_TARGETS[@]}"; do
    log "warm-up $target (${WARMUP}s select-only, ${WARMUP}s trace fetch, 8 clients)"
    run_pgbench "$WORK/runs/warmup-select-$target.log" "$target" simple 8 "$WARMUP" -S ||
      log "  warm-up select-only on $target failed: $(tail -n 3 "$WORK/runs/warmup-select-$target.log" | tr '\n' ' ')"
    run_pgbench "$WORK/runs/warmup-trace-$target.log" "$target" extended 8 "$WARMUP" \
      -f "$FETCH_SCRIPT" -D ntraces="$N_TRACE_IDS" ||
      log "  warm-up trace fetch on $target failed: $(tail -n 3 "$WORK/runs/warmup-trace-$target.log" | tr '\n' ' ')"
  done
fi

NT=${#ACTIVE_TARGETS[@]}
est=$(( ${#ROWS[@]} * NT * REPS * DURATION ))
log "${#ROWS[@]} rows x ${NT} targets (${ACTIVE_TARGETS[*]}) x $REPS reps x ${DURATION}s ≈ $((est / 60))m$((est % 60))s"
STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for ((rep = 1; rep <= REPS; rep++)); do
  for i in "${!ROWS[@]}"; do
    IFS='|' read -r rid workload proto clients extra <<<"${ROWS[$i]}"
    for ((k = 0; k < NT; k++)); do
      target=${ACTIVE_TARGETS[$(((i + rep - 1 + k) % NT))]}
      logf=$WORK/runs/$rid-$target-$rep.log
      rc=0
      # shellcheck disable=SC2086
      run_pgbench "$logf" "$target" "$proto" "$clients" "$DURATION" $extra || rc=$?
      if ((rc == 0)); then
        log "rep $rep/$REPS  $(printf '%-26s %-10s' "$rid" "$target") $(summary "$logf")"
      else
        log "rep $rep/$REPS  $(printf '%-26s %-10s' "$rid" "$target") FAILED rc=$rc: $(grep -v '^$' "$logf" | tail -n 2 | tr '\n' ' ')"
      fi
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rid" "$workload" "$proto" "$clients" "$extra" \
        "$target" "$rep" "$rc" >>"$RUNS_TSV"
    done
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
BENCH_TARGETS="${ACTIVE_TARGETS[*]}" BENCH_SKIPPED=$SKIPPED \
BENCH_DURATION=$DURATION BENCH_WARMUP=$WARMUP BENCH_REPS=$REPS BENCH_SCALE=$SCALE \
BENCH_NTRACES=$N_TRACE_IDS BENCH_PAYLOAD_BYTES=$PAYLOAD_BYTES BENCH_TRACE_ROW_BYTES=$TRACE_ROW_BYTES \
BENCH_TRACE_DATA=$DATA_SOURCE BENCH_TRACEGATE_WORKERS=$TRACEGATE_WORKERS \
BENCH_TRACEGATE_POOL=$TRACEGATE_POOL BENCH_PGBOUNCER_POOL=$PGBOUNCER_POOL \
BENCH_PG_VERSION=$SERVER_VERSION BENCH_PGBENCH_VERSION="$(pgbench --version | awk '{print $3}')" \
BENCH_PGBOUNCER_VERSION=$PGBOUNCER_VERSION BENCH_TRACEGATE_VERSION=$TRACEGATE_VERSION \
BENCH_TRACEGATE_BIN=$(want_target tracegate && echo "$TRACEGATE_BIN" || true) \
BENCH_REPO_COMMIT="$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  python3 "$BENCH_DIR/lib/pgbench_report.py" \
    --runs "$RUNS_TSV" --logs "$WORK/runs" --out "$OUT_JSON" --strict "$STRICT" || rc=$?
exit "$rc"
