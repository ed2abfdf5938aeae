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
# See bench/README.md.
#
#   sudo bench/jit_cycle.sh                 # CLIENTS="1 8", DURATION=10 s per run, ~2 min
#   DURATION=5 bench/jit_cycle.sh           # quick run
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)

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

newest_executable() {  # candidates... -> the most recently built executable among them
  local best="" c
  for c in "$@"; do
    [[ -x $c && -f $c ]] || continue
    if [[ -z $best || $c -nt $best ]]; then best=$c; fi
  done
  echo "$best"
}
# The newest build wins: several build dirs may exist and an old one may lack the grants API.
TRACEGATE_BIN=${TRACEGATE_BIN:-$(newest_executable "$REPO_DIR"/build*/tracegate \
                                 "$REPO_DIR"/build*/src/app/tracegate)}
CLIENT_BIN=${CLIENT_BIN:-$(newest_executable "$REPO_DIR"/build*/bench/jit_cycle_client)}
VALIDATOR_BENCH=${VALIDATOR_BENCH:-$(newest_executable "$REPO_DIR"/build*/src/identity/validator_bench)}

log() { printf '[jit_cycle %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
warn() {
  printf '\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
  printf '!!! WARNING: %s\n' "$@" >&2
  printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n' >&2
}
die() { log "FATAL: $*"; exit 1; }

for n in DURATION WARMUP NTRACES PAYLOAD_BYTES TRACEGATE_WORKERS TRACEGATE_POOL PGBOUNCER_POOL \
         READY_TIMEOUT; do
  [[ ${!n} =~ ^[0-9]+$ ]] || die "$n must be a non-negative integer, got '${!n}'"
done
((DURATION > 0 && NTRACES > 0)) || die "DURATION and NTRACES must be > 0"
for c in $CLIENTS; do
  [[ $c =~ ^[1-9][0-9]*$ ]] || die "CLIENTS must be positive integers, got '$CLIENTS'"
  if ((c > TRACEGATE_POOL)); then TRACEGATE_POOL=$c; fi
done
[[ $PG_SSLMODE =~ ^(disable|require|verify-ca|verify-full|grant)$ ]] ||
  die "PG_SSLMODE must be disable, require, verify-ca, verify-full or grant"
[[ $(id -u) == 0 ]] || die "run as root (it starts PostgreSQL and pgbouncer as '$RUN_USER')"
id "$RUN_USER" >/dev/null 2>&1 || die "system user '$RUN_USER' does not exist"
for b in initdb pg_ctl postgres; do
  [[ -x $PG_BIN/$b ]] || die "$PG_BIN/$b not found (apt-get install postgresql-15)"
done
for b in psql pg_isready python3 setpriv openssl curl; do
  command -v "$b" >/dev/null || die "$b not found"
done
[[ -n $CLIENT_BIN ]] ||
  die "jit_cycle_client not built: cmake --build <build dir> --target jit_cycle_client (or set CLIENT_BIN)"

want_target() { [[ " $TARGETS " == *" $1 "* ]]; }

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
  wait 2>/dev/null
  if [[ -n $WORK && -d $WORK ]]; then
    if [[ ${KEEP_WORK:-0} == 1 ]]; then log "kept work dir $WORK"; else rm -rf "$WORK"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

as_run_user() { (exec_as_run_user "$@"); }
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

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
if python3 -c "import os,sys; sys.exit(0 if os.getloadavg()[0] > 0.5 * len(os.sched_getaffinity(0)) else 1)"; then
  warn "load average is $LOAD_START on $(nproc) cores before starting: something else is" \
       "running, and its CPU use will distort the latencies (top -b -n1 | head -20)"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/jit_cycle.XXXXXX")
chmod 755 "$WORK"
mkdir -p "$WORK/sock" "$WORK/pgbouncer" "$WORK/runs" "$WORK/tracegate" "$WORK/devkeys"
chown -R "$RUN_USER:" "$WORK"
# tracegate runs as root; its key, the dev issuer's private key and the token stay root's
chown root: "$WORK/tracegate" "$WORK/devkeys" && chmod 700 "$WORK/tracegate" "$WORK/devkeys"
log "work dir $WORK"

read -r PG_PORT PGB_PORT TG_PORT TG_ADMIN_PORT TG_API_PORT < <(free_ports 5)

rand_pw() { python3 -c 'import secrets; print(secrets.token_urlsafe(18))'; }
BACKEND_PASSWORD=$(rand_pw)   # role tracegate: tracegate -> PostgreSQL
CLIENT_PASSWORD=$(rand_pw)    # role bench: direct and pgbouncer cycles
DB=bench
CLIENT_USER=bench
BACKEND_USER=tracegate
PGB_BACKEND_USER=pgbouncer_backend

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
# jit_cycle.sh: throwaway benchmark server
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$WORK/sock'
max_connections = 250
shared_buffers = 128MB
password_encryption = 'scram-sha-256'
fsync = off
synchronous_commit = off
full_page_writes = off
autovacuum = off
logging_collector = off
log_min_messages = warning
EOF
PG_STARTED=1
as_run_user "$PG_BIN/pg_ctl" -D "$WORK/pgdata" -l "$WORK/postgres.log" -w -t "$READY_TIMEOUT" \
  start >/dev/null || { tail -n 30 "$WORK/postgres.log" >&2; die "PostgreSQL did not start"; }
SERVER_VERSION=$(psql_admin -At -d postgres -c 'show server_version')
log "PostgreSQL $SERVER_VERSION on 127.0.0.1:$PG_PORT"

psql_admin -d postgres <<SQL
CREATE ROLE $BACKEND_USER LOGIN PASSWORD '$BACKEND_PASSWORD';
CREATE ROLE $CLIENT_USER LOGIN PASSWORD '$CLIENT_PASSWORD';
CREATE DATABASE $DB;
SQL
CLIENT_VERIFIER=$(psql_admin -At -d postgres -c \
  "select rolpassword from pg_authid where rolname = '$CLIENT_USER'")
[[ $CLIENT_VERIFIER == SCRAM-SHA-256\$* ]] || die "unexpected verifier for $CLIENT_USER"
# pgbouncer 1.18 cannot log in as a forced backend user whose SCRAM password differs from
# the client's (it reuses the client's SCRAM keys: pgbouncer issues #944, #1461), so its
# backend role carries the very same verifier; tracegate's backend role has its own.
psql_admin -d postgres -c "CREATE ROLE $PGB_BACKEND_USER LOGIN PASSWORD '$CLIENT_VERIFIER'" >/dev/null

# ---- traces ------------------------------------------------------------------------------
DATA_SOURCE="scripts/gen_traces.py --traces $NTRACES --payload-bytes $PAYLOAD_BYTES"
log "generating $NTRACES traces ($DATA_SOURCE)"
if ! { [[ -f $GEN_TRACES ]] &&
       python3 "$GEN_TRACES" --traces "$NTRACES" --payload-bytes "$PAYLOAD_BYTES" \
         --output "$WORK/traces.sql" 2>"$WORK/gen_traces.log" &&
       psql_admin -d "$DB" -f "$WORK/traces.sql" >"$WORK/traces-load.log" 2>&1; }; then
  warn "scripts/gen_traces.py failed or is missing; using bench/lib/traces_fallback.sql"
  psql_admin -d "$DB" -c 'DROP TABLE IF EXISTS scores, observations, traces CASCADE' >/dev/null
  psql_admin -d "$DB" -v ntraces="$NTRACES" -v payload_bytes="$PAYLOAD_BYTES" \
    -f "$BENCH_DIR/lib/traces_fallback.sql" >"$WORK/traces-load.log" 2>&1 ||
    { cat "$WORK/traces-load.log" >&2; die "loading the fallback traces failed"; }
  DATA_SOURCE="bench/lib/traces_fallback.sql (inline fallback)"
fi
psql_admin -d "$DB" <<SQL
VACUUM ANALYZE;
GRANT USAGE ON SCHEMA public TO $CLIENT_USER, $BACKEND_USER, $PGB_BACKEND_USER;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO $CLIENT_USER, $BACKEND_USER, $PGB_BACKEND_USER;
SQL
N_TRACES=$(psql_admin -At -d "$DB" -c 'select count(*) from traces')
# One loaded trace, chosen deterministically (the middle one by id); a literal in the query.
TRACE_ID=$(psql_admin -At -d "$DB" -c \
  "select id from traces order by id offset (select count(*) / 2 from traces) limit 1")
[[ $TRACE_ID =~ ^[A-Za-z0-9._:-]+$ ]] || die "unexpected trace id '$TRACE_ID'"
QUERY="select id, name from traces where id = '$TRACE_ID'"
log "traces: $N_TRACES rows; query: $QUERY"

# ---- servers -----------------------------------------------------------------------------
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

PGBOUNCER_VERSION=""
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
    if wait_pg_ready "$PGB_PORT" "$PGBOUNCER_PID" pgbouncer &&
       run_client pgbouncer 1 1 0 --once >/dev/null; then
      ACTIVE_TARGETS+=(pgbouncer)
      log "pgbouncer $PGBOUNCER_VERSION on 127.0.0.1:$PGB_PORT (session mode, pool $PGBOUNCER_POOL)"
    else
      tail -n 20 "$WORK/pgbouncer/pgbouncer.log" "$WORK/pgbouncer/stdout.log" >&2 || true
      warn "pgbouncer failed to start or to serve a query; its rows are skipped"
      SKIP_REASON[pgbouncer]="failed to start or to serve a query"
      stop_pid "$PGBOUNCER_PID" pgbouncer; PGBOUNCER_PID=""
    fi
  else
    warn "pgbouncer not installed (apt-get install -y pgbouncer); its rows are skipped"
    SKIP_REASON[pgbouncer]="not installed"
  fi
fi

TRACEGATE_VERSION=""
TG_CERT=$WORK/tracegate/gateway.crt
TOKEN_FILE=$WORK/tracegate/token
if want_target tracegate; then
  if [[ -x $TRACEGATE_BIN ]]; then
    TRACEGATE_VERSION=$(timeout 5 "$TRACEGATE_BIN" --version 2>/dev/null | head -n1 || true)
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
      -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
      -keyout "$WORK/tracegate/gateway.key" -out "$TG_CERT" >/dev/null 2>&1 ||
      die "openssl req (self-signed certificate) failed"
    chmod 600 "$WORK/tracegate/gateway.key"
    # The development issuer: keys in $WORK/devkeys, JWKS in dev-issuer-jwks.json there.
    "$TRACEGATE_BIN" dev issuer --key-dir "$WORK/devkeys" >"$WORK/tracegate/dev-issuer.yaml" ||
      die "tracegate dev issuer failed"
    JWKS_FILE=$WORK/devkeys/dev-issuer-jwks.json
    [[ -f $JWKS_FILE ]] || die "tracegate dev issuer did not create $JWKS_FILE"
    (umask 077 && "$TRACEGATE_BIN" dev token --key-dir "$WORK/devkeys" --sub bench-agent \
       --groups ai-agents --ttl 86400 >"$TOKEN_FILE") || die "tracegate dev token failed"
    TG_CONFIG=$WORK/tracegate/tracegate.yaml
    cat >"$TG_CONFIG" <<EOF
# generated by bench/jit_cycle.sh: grants API + one Postgres connection, no gate/masking
workers: $TRACEGATE_WORKERS
log_level: warn
admin:
  listen: 127.0.0.1:$TG_ADMIN_PORT
tls:
  cert_file: $TG_CERT
  key_file: $WORK/tracegate/gateway.key
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
    pool:
      max_size: $TRACEGATE_POOL
api:
  listen: 127.0.0.1:$TG_API_PORT
  tls: true
state:
  path: $WORK/tracegate/state.db
identity:
  issuers:
    - name: dev
      issuer: tracegate-dev
      audiences: [tracegate]
      jwks_file: $JWKS_FILE
      algorithms: [RS256]
      typ: at+jwt
      development: true
policy:
  rules:
    - name: bench-agents
      groups: [ai-agents]
      connections: [traces-pg]
      ttl: 30s
EOF
    TRACEGATE_BACKEND_PASSWORD=$BACKEND_PASSWORD "$TRACEGATE_BIN" config check "$TG_CONFIG" \
      >"$WORK/tracegate/config-check.log" 2>&1 ||
      { cat "$WORK/tracegate/config-check.log" >&2; die "tracegate config check failed"; }
    TRACEGATE_BACKEND_PASSWORD=$BACKEND_PASSWORD "$TRACEGATE_BIN" serve --config "$TG_CONFIG" \
      >"$WORK/tracegate/tracegate.log" 2>&1 &
    TRACEGATE_PID=$!
    tg_ready() {
      local deadline=$((SECONDS + READY_TIMEOUT)) code=""
      while ((SECONDS < deadline)); do
        kill -0 "$TRACEGATE_PID" 2>/dev/null || { log "tracegate exited during startup"; return 1; }
        code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$TG_ADMIN_PORT/readyz" || true)
        if [[ $code == 200 ]] && pg_isready -q -h 127.0.0.1 -p "$TG_PORT" -t 1; then return 0; fi
        sleep 0.1
      done
      log "tracegate not ready after ${READY_TIMEOUT}s (/readyz: '$code')"
      return 1
    }
    if tg_ready && run_client tracegate 1 1 0 --once >/dev/null; then
      ACTIVE_TARGETS+=(tracegate)
      log "tracegate${TRACEGATE_VERSION:+ $TRACEGATE_VERSION} ($TRACEGATE_BIN): API https://127.0.0.1:$TG_API_PORT," \
          "Postgres 127.0.0.1:$TG_PORT, pool $TRACEGATE_POOL, workers $TRACEGATE_WORKERS"
    else
      echo "---- tracegate log (tail) ----" >&2; tail -n 30 "$WORK/tracegate/tracegate.log" >&2 || true
      warn "tracegate ($TRACEGATE_BIN) failed to start or to complete one JIT cycle; its rows are skipped"
      SKIP_REASON[tracegate]="failed to start or to complete one JIT cycle"
      stop_pid "$TRACEGATE_PID" tracegate; TRACEGATE_PID=""
    fi
  else
    warn "tracegate binary not found (build it, or set TRACEGATE_BIN=...); its rows are SKIPPED"
    SKIP_REASON[tracegate]="binary not found"
  fi
fi
want_target direct && { run_client direct 1 1 0 --once >/dev/null || die "direct smoke cycle failed"; }
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
with open(E["BENCH_OUT"], "w") as fh:
    json.dump(out, fh, indent=2)
    fh.write("\n")
print(f"wrote {E['BENCH_OUT']}")
if E["BENCH_STRICT"] == "1" and any(ck["result"] == "MISS" for ck in checks):
    sys.exit(3)
PY
exit "$rc"
