# shellcheck shell=bash disable=SC2034,SC2153  # variables shared with the sourcing script
# Shared setup for the benchmark scripts (bench/pg_overhead.sh, bench/jit_cycle.sh,
# bench/masking.sh, bench/recording.sh): a throwaway PostgreSQL 15 with the trace data,
# pgbouncer, and tracegate with its grants API and the development issuer, all on TCP
# 127.0.0.1 with SCRAM-SHA-256 on every hop, in a temporary directory removed on exit.
# Sourced, not run; see bench/README.md.
#
# The sourcing script sets, before `source`:
#   BENCH_NAME  log prefix and temporary directory name (pg_overhead, jit_cycle, masking,
#               recording)
#   BENCH_DIR, REPO_DIR, and its knobs (READY_TIMEOUT, RUN_USER, PG_BIN, PGBOUNCER_BIN,
#   GEN_TRACES, TARGETS, TRACEGATE_BIN, TRACEGATE_WORKERS, TRACEGATE_POOL, PGBOUNCER_POOL,
#   NTRACES, PAYLOAD_BYTES, KEEP_WORK)
# then calls, in order (each sets the variables named in its comment):
#   bench_start         checks root and the tools, traps, load warning, WORK, ports, passwords
#   pg_setup            initdb + start (PG_SHARED_BUFFERS, PG_EXTRA_CONF), roles, database,
#                       CLIENT_VERIFIER, SERVER_VERSION
#   load_traces         traces (+ observations, scores) from gen_traces.py or the fallback;
#                       DATA_SOURCE, TRACE_TABLES
#   grant_read_access   SELECT on public.* for the client and both backend roles
#   start_pgbouncer     [smoke command...]  -> PGBOUNCER_PID, ACTIVE_TARGETS += pgbouncer
#   start_tracegate     [smoke command...]  -> TRACEGATE_PID, TG_CERT, TOKEN_FILE (and
#                       MASKED_TOKEN_FILE with TG_MASKED_GROUP); the caller adds its own
#                       targets when it returns 0 (TG_AUDIT: the recorder's settings)
#   request_grants      trace_id count -> "user password" lines of fresh grants on stdout
#   pgbench_client      one pgbench process of one connection, retrying a grant login
#                       that found the grant still in use
#                       (token: GRANT_TOKEN_FILE if set, else TOKEN_FILE)

# ---- logging and small helpers ------------------------------------------------------------
log() { printf '[%s %(%H:%M:%S)T] %s\n' "$BENCH_NAME" -1 "$*" >&2; }
warn() {
  printf '\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
  printf '!!! WARNING: %s\n' "$@" >&2
  printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n' >&2
}
die() { log "FATAL: $*"; exit 1; }

newest_executable() {  # candidates... -> the most recently built executable among them
  local best="" c
  for c in "$@"; do
    [[ -x $c && -f $c ]] || continue
    if [[ -z $best || $c -nt $best ]]; then best=$c; fi
  done
  echo "$best"
}

want_target() { [[ " $TARGETS " == *" $1 "* ]]; }

check_uints() {  # NAME... : each variable must be a non-negative integer
  local n
  for n in "$@"; do
    [[ ${!n} =~ ^[0-9]+$ ]] || die "$n must be a non-negative integer, got '${!n}'"
  done
}

rand_pw() { python3 -c 'import secrets; print(secrets.token_urlsafe(18))'; }

free_ports() {  # n -> n distinct free TCP ports on 127.0.0.1
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# Runs a command as RUN_USER without a login session, in the foreground.
as_run_user() { (exec_as_run_user "$@"); }
# Replaces the current (sub)shell with the command run as RUN_USER; for background
# servers use  `exec_as_run_user cmd... &`  so that $! is the server's own pid.
exec_as_run_user() {
  cd "$WORK" && exec env HOME="$WORK" USER="$RUN_USER" LOGNAME="$RUN_USER" \
    setpriv --reuid="$RUN_USER" --regid="$RUN_USER" --init-groups -- "$@"
}

# Superuser setup goes over the Unix socket (trust); all benchmark traffic is TCP + SCRAM.
psql_admin() {
  PGOPTIONS='-c client_min_messages=warning' \
    psql -X -q -v ON_ERROR_STOP=1 -h "$WORK/sock" -p "$PG_PORT" -U postgres "$@"
}

# pgbench_client log port user password retries protocol seconds extra...: one pgbench
# process with one connection. A grant carries one session at a time, and the gateway
# releases it when it has processed the end of the previous session: pgbench's client login
# right after its own setup connection closed can find the grant still "in use by another
# session" (FATAL at connect, no transaction run). Such a start is retried up to `retries`
# times after 50 ms; every retry is noted in the log ("<BENCH_NAME>: retry", which lib/pgbench_merge.py counts).
pgbench_client() {
  local logf=$1 port=$2 user=$3 pw=$4 retries=$5 proto=$6 secs=$7; shift 7
  local attempt rc
  for ((attempt = 0; ; attempt++)); do
    rc=0
    PGPASSWORD=$pw PGSSLMODE=disable PGGSSENCMODE=disable PGAPPNAME=$BENCH_NAME \
      timeout --foreground -k 5 $((secs + 60)) \
      pgbench -n -h 127.0.0.1 -p "$port" -U "$user" -M "$proto" -c 1 -j 1 \
        -T "$secs" -P "$secs" "$@" "$DB" >"$logf.try" 2>&1 || rc=$?
    if ((rc != 0 && attempt < retries)) && grep -q 'is in use by another session' "$logf.try" &&
       grep -q 'could not create connection' "$logf.try"; then
      echo "$BENCH_NAME: retry $((attempt + 1)) after login refused:" \
        "$(grep -m1 -o 'tracegate: grant .* is in use by another session' "$logf.try")" \
        >>"$logf.retries"
      sleep 0.05
      continue
    fi
    break
  done
  { [[ -f $logf.retries ]] && cat "$logf.retries"; cat "$logf.try"; } >"$logf"
  rm -f "$logf.try" "$logf.retries"
  return $rc
}

# ---- state and cleanup -------------------------------------------------------------------
WORK=""
PG_STARTED=0
PGBOUNCER_PID=""
TRACEGATE_PID=""
ACTIVE_TARGETS=()
declare -A SKIP_REASON=()

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
bench_cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  stop_pid "$TRACEGATE_PID" tracegate
  stop_pid "$PGBOUNCER_PID" pgbouncer
  if ((PG_STARTED)); then
    as_run_user "$PG_BIN/pg_ctl" -D "$WORK/pgdata" -m fast -w -t 20 stop >/dev/null 2>&1 ||
      as_run_user "$PG_BIN/pg_ctl" -D "$WORK/pgdata" -m immediate -w stop >/dev/null 2>&1
  fi
  wait 2>/dev/null  # reap any background children we started
  if [[ -n $WORK && -d $WORK ]]; then
    if [[ ${KEEP_WORK:-0} == 1 ]]; then log "kept work dir $WORK"; else rm -rf "$WORK"; fi
  fi
  exit "$rc"
}

# bench_start tool... : root, RUN_USER, PostgreSQL binaries and the given tools; traps;
# the load warning; WORK (with sock pgbouncer runs tracegate devkeys); PG_PORT PGB_PORT
# TG_PORT TG_ADMIN_PORT TG_API_PORT; passwords and role names.
bench_start() {
  local b
  [[ $(id -u) == 0 ]] || die "run as root (it starts PostgreSQL and pgbouncer as '$RUN_USER')"
  id "$RUN_USER" >/dev/null 2>&1 || die "system user '$RUN_USER' does not exist"
  for b in initdb pg_ctl postgres; do
    [[ -x $PG_BIN/$b ]] || die "$PG_BIN/$b not found (apt-get install postgresql-15)"
  done
  for b in psql pg_isready python3 setpriv curl "$@"; do
    command -v "$b" >/dev/null || die "$b not found"
  done
  trap bench_cleanup EXIT
  trap 'log "interrupted"; exit 130' INT
  trap 'log "terminated"; exit 143' TERM

  # A busy machine makes every number here noise: say so loudly (and record it in the JSON).
  LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
  if python3 -c "import os,sys; sys.exit(0 if os.getloadavg()[0] > 0.5 * len(os.sched_getaffinity(0)) else 1)"; then
    warn "load average is $LOAD_START on $(nproc) cores before starting: something else is" \
         "running, and its CPU use will distort the numbers (top -b -n1 | head -20)"
  fi

  WORK=$(mktemp -d "${TMPDIR:-/tmp}/$BENCH_NAME.XXXXXX")
  chmod 755 "$WORK"
  mkdir -p "$WORK/sock" "$WORK/pgbouncer" "$WORK/runs" "$WORK/tracegate" "$WORK/devkeys"
  chown -R "$RUN_USER:" "$WORK"
  # tracegate runs as root; its key, the dev issuer's private key and the token stay root's
  chown root: "$WORK/tracegate" "$WORK/devkeys" && chmod 700 "$WORK/tracegate" "$WORK/devkeys"
  log "work dir $WORK"

  read -r PG_PORT PGB_PORT TG_PORT TG_ADMIN_PORT TG_API_PORT < <(free_ports 5)
  # Passwords: throwaway, random per run.
  BACKEND_PASSWORD=$(rand_pw)   # role tracegate: tracegate -> PostgreSQL
  CLIENT_PASSWORD=$(rand_pw)    # role bench: the client, direct | pgbouncer | tracegate static user
  DB=bench
  CLIENT_USER=bench
  BACKEND_USER=tracegate
  PGB_BACKEND_USER=pgbouncer_backend
}

# ---- PostgreSQL ----------------------------------------------------------------------------
# pg_setup: initdb, postgresql.conf (shared_buffers=$PG_SHARED_BUFFERS, plus $PG_EXTRA_CONF
# lines), start, the roles bench / tracegate / pgbouncer_backend and the database.
pg_setup() {
  log "initdb (PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}'))"
  as_run_user "$PG_BIN/initdb" -D "$WORK/pgdata" -U postgres -E UTF8 --locale=C \
    --auth-local=trust --auth-host=scram-sha-256 --no-sync >"$WORK/initdb.log" 2>&1 ||
    { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
  cat >>"$WORK/pgdata/postgresql.conf" <<EOF
# $BENCH_NAME.sh: throwaway benchmark server
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$WORK/sock'
max_connections = 250
shared_buffers = ${PG_SHARED_BUFFERS:-128MB}
password_encryption = 'scram-sha-256'
fsync = off
synchronous_commit = off
full_page_writes = off
autovacuum = off
logging_collector = off
log_min_messages = warning
${PG_EXTRA_CONF:-}
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
  psql_admin -d postgres -c "CREATE ROLE $PGB_BACKEND_USER LOGIN PASSWORD '$CLIENT_VERIFIER'" >/dev/null
}

# load_traces: $NTRACES traces of about $PAYLOAD_BYTES from scripts/gen_traces.py (traces,
# observations, scores), else bench/lib/traces_fallback.sql (traces only). Sets DATA_SOURCE
# and TRACE_TABLES (the trace tables that exist: "traces observations scores" or "traces").
load_traces() {
  DATA_SOURCE=""
  if ! _load_generator; then
    psql_admin -d "$DB" -c 'DROP TABLE IF EXISTS scores, observations, traces CASCADE' >/dev/null
    log "generating $NTRACES traces with bench/lib/traces_fallback.sql"
    psql_admin -d "$DB" -v ntraces="$NTRACES" -v payload_bytes="$PAYLOAD_BYTES" \
      -f "$BENCH_DIR/lib/traces_fallback.sql" >"$WORK/traces-load.log" 2>&1 ||
      { cat "$WORK/traces-load.log" >&2; die "loading the fallback traces failed"; }
    DATA_SOURCE="bench/lib/traces_fallback.sql (inline fallback)"
  fi
  TRACE_TABLES=$(psql_admin -At -d "$DB" -c "select string_agg(table_name, ' ' order by
      array_position(array['traces','observations','scores'], table_name::text))
    from information_schema.tables where table_schema = 'public'
      and table_name in ('traces', 'observations', 'scores')")
}

_load_generator() {
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
  # the fetch scripts need traces.id (text) as the lookup key
  [[ $(psql_admin -At -d "$DB" -c "select count(*) from information_schema.columns
        where table_schema='public' and table_name='traces' and column_name='id'") == 1 ]] ||
    { warn "gen_traces.py output has no traces.id; using the fallback"; return 1; }
  DATA_SOURCE="scripts/gen_traces.py --traces $NTRACES --payload-bytes $PAYLOAD_BYTES"
}

grant_read_access() {  # SELECT on every table in public for the client and both backend roles
  psql_admin -d "$DB" <<SQL
GRANT USAGE ON SCHEMA public TO $CLIENT_USER, $BACKEND_USER, $PGB_BACKEND_USER;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO $CLIENT_USER, $BACKEND_USER, $PGB_BACKEND_USER;
SQL
}

# wait_pg_ready port pid name: until pg_isready answers, the process dies, or READY_TIMEOUT.
wait_pg_ready() {
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

# ---- pgbouncer ---------------------------------------------------------------------------
# start_pgbouncer smoke...: session mode in front of $DB; the smoke command (run after the
# listener answers) decides. On success pgbouncer joins ACTIVE_TARGETS; otherwise it is
# skipped with a warning and SKIP_REASON[pgbouncer].
PGBOUNCER_VERSION=""
start_pgbouncer() {
  if [[ ! -x $PGBOUNCER_BIN ]]; then
    warn "pgbouncer not installed (apt-get install -y pgbouncer); it is skipped"
    SKIP_REASON[pgbouncer]="not installed"
    return 1
  fi
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
  if wait_pg_ready "$PGB_PORT" "$PGBOUNCER_PID" pgbouncer && "$@"; then
    ACTIVE_TARGETS+=(pgbouncer)
    log "pgbouncer $PGBOUNCER_VERSION on 127.0.0.1:$PGB_PORT (session mode, pool $PGBOUNCER_POOL)"
    return 0
  fi
  tail -n 20 "$WORK/pgbouncer/pgbouncer.log" "$WORK/pgbouncer/stdout.log" >&2 || true
  warn "pgbouncer failed to start or to serve a query; it is skipped"
  SKIP_REASON[pgbouncer]="failed to start or to serve a query"
  stop_pid "$PGBOUNCER_PID" pgbouncer; PGBOUNCER_PID=""
  return 1
}

# ---- tracegate ---------------------------------------------------------------------------
# start_tracegate smoke...: a self-signed certificate, the development issuer and one access
# token (sub=bench-agent, groups=[ai-agents]; 0600 file $TOKEN_FILE, never on a command
# line), then `tracegate serve` with:
#   one Postgres connection traces-pg (pool $TRACEGATE_POOL, read-only backend role);
#   TG_STATIC_USER=1: the static user $CLIENT_USER with the client's verifier (not gated);
#   TG_GATE=1: a statement gate (classify mode) over the tables in $TRACE_TABLES;
#   TG_BACKEND_EXTRA: extra lines under backend: (indented six spaces);
#   the grants API on HTTPS and one policy rule for ai-agents on traces-pg with the terms
#   TG_RULE_TTL, TG_RULE_USES, TG_RULE_MAX_SESSION, TG_RULE_MAX_ROWS, TG_RULE_MAX_BYTES
#   (defaults: 30s, 1, 5m, 100000, 64MiB) under policy.max_ttl TG_MAX_TTL (default 5m);
#   TG_MASKED_GROUP=<group>: also `masking_profiles: [{name: default}]` (every built-in
#   detector, redact), a second rule bench-agents-masked for that group with the same terms
#   and `masking_profile: default`, and a second token (groups=[<group>]) in
#   $MASKED_TOKEN_FILE: grants requested with it (GRANT_TOKEN_FILE=$MASKED_TOKEN_FILE
#   request_grants ...) have every result row masked.
#   TG_AUDIT: an `audit:` block placed verbatim (top level, unindented key) in the config,
#   e.g. "audit:\n  durability: batched\n  dir: ..." or "audit:\n  enabled: false". Empty
#   (the default): no audit section, so the gateway's default applies: every session is
#   recorded, strict durability, the log in "audit" beside the state database.
# `tracegate config check` first. Ready: /readyz 200 and pg_isready on the listener, then the
# smoke command. Returns 0 when it serves; otherwise stops it, prints its log, warns and
# sets SKIP_REASON[tracegate].
TRACEGATE_VERSION=""
TG_CERT=""
TOKEN_FILE=""
MASKED_TOKEN_FILE=""
start_tracegate() {
  if [[ ! -x $TRACEGATE_BIN ]]; then
    warn "tracegate binary not found${TRACEGATE_BIN:+ at $TRACEGATE_BIN} (build it, or set TRACEGATE_BIN=...);" \
         "tracegate is SKIPPED"
    SKIP_REASON[tracegate]="binary not found${TRACEGATE_BIN:+ at $TRACEGATE_BIN}"
    return 1
  fi
  TRACEGATE_VERSION=$(timeout 5 "$TRACEGATE_BIN" --version 2>/dev/null | head -n1 || true)
  TG_CERT=$WORK/tracegate/gateway.crt
  TOKEN_FILE=$WORK/tracegate/token
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
    -keyout "$WORK/tracegate/gateway.key" -out "$TG_CERT" >/dev/null 2>&1 ||
    die "openssl req (self-signed certificate) failed"
  chmod 600 "$WORK/tracegate/gateway.key"
  # The development issuer: keys in $WORK/devkeys, JWKS in dev-issuer-jwks.json there.
  "$TRACEGATE_BIN" dev issuer --key-dir "$WORK/devkeys" >"$WORK/tracegate/dev-issuer.yaml" ||
    die "tracegate dev issuer failed"
  local jwks=$WORK/devkeys/dev-issuer-jwks.json
  [[ -f $jwks ]] || die "tracegate dev issuer did not create $jwks"
  (umask 077 && "$TRACEGATE_BIN" dev token --key-dir "$WORK/devkeys" --sub bench-agent \
     --groups ai-agents --ttl 86400 >"$TOKEN_FILE") || die "tracegate dev token failed"
  local masking="" masked_rule=""
  if [[ -n ${TG_MASKED_GROUP:-} ]]; then
    MASKED_TOKEN_FILE=$WORK/tracegate/token-masked
    (umask 077 && "$TRACEGATE_BIN" dev token --key-dir "$WORK/devkeys" --sub bench-agent-masked \
       --groups "$TG_MASKED_GROUP" --ttl 86400 >"$MASKED_TOKEN_FILE") ||
      die "tracegate dev token (masked) failed"
    masking="masking_profiles:
  - name: default"
    masked_rule="    - name: bench-agents-masked
      groups: [$TG_MASKED_GROUP]
      connections: [traces-pg]
      ttl: ${TG_RULE_TTL:-30s}
      uses: ${TG_RULE_USES:-1}
      max_session: ${TG_RULE_MAX_SESSION:-5m}
      max_rows: ${TG_RULE_MAX_ROWS:-100000}
      max_bytes: ${TG_RULE_MAX_BYTES:-64MiB}
      masking_profile: default"
  fi

  local users="" gate="" t id_col
  if [[ ${TG_STATIC_USER:-0} == 1 ]]; then
    users="    users:
      - name: $CLIENT_USER
        scram_verifier: \"$CLIENT_VERIFIER\""
  fi
  if [[ ${TG_GATE:-0} == 1 ]]; then
    gate="    gate:
      mode: classify
      trace_tables:"
    for t in ${TRACE_TABLES:-traces}; do
      id_col=trace_id; [[ $t == traces ]] && id_col=id
      gate+="
        - {table: $t, id_column: $id_col}"
    done
  fi
  TG_CONFIG=$WORK/tracegate/tracegate.yaml
  cat >"$TG_CONFIG" <<EOF
# generated by bench/$BENCH_NAME.sh (bench/lib/setup.sh)
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
${TG_BACKEND_EXTRA:-}
    pool:
      max_size: $TRACEGATE_POOL
$users
$gate
api:
  listen: 127.0.0.1:$TG_API_PORT
  tls: true
state:
  path: $WORK/tracegate/state.db
${TG_AUDIT:-}
identity:
  issuers:
    - name: dev
      issuer: tracegate-dev
      audiences: [tracegate]
      jwks_file: $jwks
      algorithms: [RS256]
      typ: at+jwt
      development: true
$masking
policy:
  max_ttl: ${TG_MAX_TTL:-5m}
  rules:
    - name: bench-agents
      groups: [ai-agents]
      connections: [traces-pg]
      ttl: ${TG_RULE_TTL:-30s}
      uses: ${TG_RULE_USES:-1}
      max_session: ${TG_RULE_MAX_SESSION:-5m}
      max_rows: ${TG_RULE_MAX_ROWS:-100000}
      max_bytes: ${TG_RULE_MAX_BYTES:-64MiB}
$masked_rule
EOF
  if ! TRACEGATE_BACKEND_PASSWORD=$BACKEND_PASSWORD "$TRACEGATE_BIN" config check "$TG_CONFIG" \
      >"$WORK/tracegate/config-check.log" 2>&1; then
    _tracegate_config_to_stderr
    cat "$WORK/tracegate/config-check.log" >&2
    warn "tracegate config check failed (an old binary?); tracegate is skipped"
    SKIP_REASON[tracegate]="tracegate config check failed"
    return 1
  fi
  TRACEGATE_BACKEND_PASSWORD=$BACKEND_PASSWORD "$TRACEGATE_BIN" serve --config "$TG_CONFIG" \
    >"$WORK/tracegate/tracegate.log" 2>&1 &
  TRACEGATE_PID=$!
  if _tracegate_ready && "$@"; then
    log "tracegate${TRACEGATE_VERSION:+ $TRACEGATE_VERSION} ($TRACEGATE_BIN): Postgres 127.0.0.1:$TG_PORT," \
        "API https://127.0.0.1:$TG_API_PORT, pool $TRACEGATE_POOL, workers $TRACEGATE_WORKERS"
    return 0
  fi
  _tracegate_config_to_stderr
  echo "---- tracegate log (tail) ----" >&2; tail -n 30 "$WORK/tracegate/tracegate.log" >&2 || true
  warn "tracegate ($TRACEGATE_BIN) failed to start or to pass its smoke test; it is skipped"
  SKIP_REASON[tracegate]="failed to start or to pass its smoke test"
  stop_pid "$TRACEGATE_PID" tracegate; TRACEGATE_PID=""
  return 1
}

_tracegate_config_to_stderr() {
  echo "---- tracegate config ----" >&2
  sed 's/scram_verifier: .*/scram_verifier: <redacted>/' "$TG_CONFIG" >&2
}

_tracegate_ready() {
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

# request_grants trace_id count [reason]: `count` fresh grants for the trace on traces-pg,
# from the API with the development token (lib/grants.py: HTTPS, the generated certificate
# verified, one keep-alive connection) -> one "user password" line each on stdout. The
# response is never logged (it holds the secret).
request_grants() {
  python3 "$BENCH_DIR/lib/grants.py" --api-url "https://127.0.0.1:$TG_API_PORT" \
    --cacert "$TG_CERT" --token-file "${GRANT_TOKEN_FILE:-$TOKEN_FILE}" --connection traces-pg \
    --trace-id "$1" --count "$2" --reason "${3:-benchmark}"
}
