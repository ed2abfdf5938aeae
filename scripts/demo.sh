#!/usr/bin/env bash
# `make run`: a self-contained tracegate demo on an embedded default.
#
#   1. a throwaway PostgreSQL 15 trace store (initdb into a temp dir), loaded with
#      generated Langfuse-shaped traces (traces, observations, scores; JSONB reasoning),
#   2. a read-only backend role `tracegate` whose password only the gateway knows,
#   3. tracegate in front of it: the grants API on https://127.0.0.1:8443 (a self-signed
#      certificate made here), the embedded development issuer as the IdP, a policy that
#      lets group ai-agents read one trace at a time, the Postgres listener on :6432,
#   4. one just-in-time grant walked through (token → grant → psql once → refused again),
#   5. the recording of that session: found by trace, replayed, the log verified,
#   6. a read that needs a person's consent: a pending grant, psql held until an approver
#      (another process, the CLI) approves, and the commands to do it yourself,
#   7. an HTTP trace store in Langfuse's API shape (tests/http_store.py, behind Basic auth)
#      read through tracegate's HTTP listener with a grant's bearer credential, and the
#      one-call fetch (GET /v1/connections/{name}/traces/{id}) for both stores,
#   8. a one-call fetch held for an approver because masking found personal data in it.
#
# Ctrl-C (or SIGTERM) stops everything it started and removes the temp dir.
# Knobs: DEMO_PORT (6432), DEMO_API_PORT (8443), DEMO_ADMIN_PORT (9187), DEMO_HTTP_PORT (8444),
# DEMO_TRACES (200).
set -euo pipefail

build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
case "$build" in /*) tracegate="$build/tracegate" ;; *) tracegate="$root/$build/tracegate" ;; esac
[ -x "$tracegate" ] || { echo "demo: $tracegate not built (run make build)" >&2; exit 1; }
port=${DEMO_PORT:-6432}
admin_port=${DEMO_ADMIN_PORT:-9187}
api_port=${DEMO_API_PORT:-8443}
http_port=${DEMO_HTTP_PORT:-8444}
traces=${DEMO_TRACES:-200}
pgbin=/usr/lib/postgresql/15/bin

tmp=$(mktemp -d /tmp/tracegate-demo.XXXXXX)
chmod 755 "$tmp"
pg_pid=""
gw_pid=""
store_pid=""
cleanup() {
  trap - EXIT INT TERM
  [ -n "$gw_pid" ] && kill -TERM "$gw_pid" 2>/dev/null && wait "$gw_pid" 2>/dev/null || true
  [ -n "$store_pid" ] && kill -TERM "$store_pid" 2>/dev/null && wait "$store_pid" 2>/dev/null || true
  if [ -f "$tmp/pgdata/postmaster.pid" ]; then
    as_pg "$pgbin/pg_ctl" -D "$tmp/pgdata" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
  echo "demo: stopped; everything it started is gone."
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# initdb and postgres refuse to run as root: use Debian's `postgres` system user.
if [ "$(id -u)" -eq 0 ]; then
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
pg_port=$(free_port)
super_pw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
backend_pw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')

echo "demo: initdb into $tmp/pgdata (PostgreSQL on 127.0.0.1:$pg_port)"
printf '%s\n' "$super_pw" > "$tmp/super.pw"
[ "$(id -u)" -eq 0 ] && chown -R postgres "$tmp"
as_pg "$pgbin/initdb" -D "$tmp/pgdata" -U postgres --pwfile "$tmp/super.pw" \
  --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
rm -f "$tmp/super.pw"
cat >> "$tmp/pgdata/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$tmp'
password_encryption = 'scram-sha-256'
fsync = off
CONF
as_pg "$pgbin/pg_ctl" -D "$tmp/pgdata" -l "$tmp/postgres.log" -w start >/dev/null

spsql() { as_pg psql -h "$tmp" -p "$pg_port" -U postgres -v ON_ERROR_STOP=1 -qAt "$@"; }
spsql -d postgres -c "CREATE DATABASE traces"
spsql -d postgres -c "CREATE ROLE tracegate LOGIN PASSWORD '$backend_pw'"
echo "demo: loading $traces generated traces"
python3 "$root/scripts/gen_traces.py" --traces "$traces" -o "$tmp/traces.sql"
[ "$(id -u)" -eq 0 ] && chown postgres "$tmp/traces.sql"
spsql -d traces -f "$tmp/traces.sql" >/dev/null
spsql -d traces -c "GRANT SELECT ON ALL TABLES IN SCHEMA public TO tracegate"

# An HTTP trace store in Langfuse's public-API shape (GET /api/public/traces/{id}, …) behind
# Basic auth, serving generated traces plus pii-1 (a trace with personal data planted).
store_pw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
printf '%s\n' "$store_pw" > "$tmp/store.pw"
chmod 600 "$tmp/store.pw"
python3 "$root/tests/http_store.py" --port 0 --user pk-lf-demo --password "$store_pw" \
  --traces 20 > "$tmp/store.out" 2>"$tmp/store.err" &
store_pid=$!
for _ in $(seq 1 100); do
  grep -q '^listening on' "$tmp/store.out" 2>/dev/null && break
  kill -0 "$store_pid" 2>/dev/null || { echo "demo: the HTTP trace store exited" >&2; cat "$tmp/store.err" >&2; exit 1; }
  sleep 0.1
done
store_url=$(sed -n 's/^listening on //p' "$tmp/store.out")
echo "demo: HTTP trace store (Langfuse API shape) on $store_url"

# The gateway's own backend credential lives in a file only it reads.
printf '%s\n' "$backend_pw" > "$tmp/backend.pw"
chmod 600 "$tmp/backend.pw"
# TLS for the API and the Postgres listener: a throwaway self-signed certificate.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
  -keyout "$tmp/gateway.key" -out "$tmp/gateway.crt" >/dev/null 2>&1
chmod 600 "$tmp/gateway.key"
# The development issuer: a local key pair standing in for Okta / Entra ID / Keycloak.
export TRACEGATE_DEV_DIR="$tmp/dev"
"$tracegate" dev issuer >/dev/null
# The audit log's checkpoint signing key (keep a copy of its public half to verify with).
openssl genpkey -algorithm ed25519 -out "$tmp/audit-signing.pem" 2>/dev/null
openssl pkey -in "$tmp/audit-signing.pem" -pubout -out "$tmp/audit-signing.pub" 2>/dev/null
cat > "$tmp/tracegate.yaml" <<YAML
# Written by scripts/demo.sh; see tracegate.example.yaml for every key.
workers: 2
log_level: info
admin:
  listen: 127.0.0.1:$admin_port
tls:
  cert_file: $tmp/gateway.crt
  key_file: $tmp/gateway.key
api:
  listen: 127.0.0.1:$api_port
state:
  path: $tmp/state.db
# Every session is recorded: who, which grant and trace, each statement, the masked rows as
# sent. strict: an answer reaches the client only once its record is on disk. Checkpoints
# of the hash chain are signed with an Ed25519 key made for the demo.
audit:
  dir: $tmp/audit
  durability: strict
  signing_key_file: $tmp/audit-signing.pem
  auditor_groups: [auditors]
identity:
  issuers:
    - name: dev
      issuer: tracegate-dev
      audiences: [tracegate]
      jwks_file: $tmp/dev/dev-issuer-jwks.json
      algorithms: [RS256]
      typ: at+jwt
      development: true
policy:
  max_ttl: 5m
  rules:
    - name: no-contractors
      effect: deny
      groups: [contractors]
    - name: agents-read-one-trace
      groups: [ai-agents]
      connections: [traces-pg, traces-http]
      ttl: 30s
      uses: 1
      masking_profile: default
    # Support engineers read a trace only once someone in trace-approvers says yes.
    - name: support-needs-consent
      groups: [support]
      connections: [traces-pg]
      require_approval: true
      approvers: [trace-approvers]
      ttl: 30s
      masking_profile: default
    # Analysts read freely, but a result in which masking found 5 or more values waits for
    # an approver, whichever path it takes (psql, the HTTP listener, the one-call fetch).
    - name: analysts-held-if-personal
      groups: [analysts]
      connections: [traces-pg, traces-http]
      hold_if_masked_at_least: 5
      approvers: [trace-approvers]
      ttl: 30s
      uses: 1
      masking_profile: default
# Pending requests expire after 15 minutes; add webhooks: to tell approvers (Slack format
# built in) - see tracegate.example.yaml.
approvals:
  timeout: 15m
# What an agent's session sees instead of personal data and secrets: every built-in
# detector, redacted ([REDACTED:EMAIL]); card numbers keep their last four digits.
masking_profiles:
  - name: default
    strategies:
      CARD: {kind: partial, keep_last: 4}
connections:
  - name: traces-pg
    type: postgres
    listen: 127.0.0.1:$port
    backend:
      host: 127.0.0.1
      port: $pg_port
      database: traces
      user: tracegate
      password_file: $tmp/backend.pw
      read_only: true
    # The statement gate: a grant's session reads its one trace from these tables and
    # nothing else (no other trace, no bulk export, no writes).
    gate:
      trace_tables:
        - {table: traces, id_column: id}
        - {table: observations, id_column: trace_id}
        - {table: scores, id_column: trace_id}
      # What the one-call fetch runs (GET /v1/connections/traces-pg/traces/{id}).
      queries:
        - name: trace-by-id
          sql: "select id, name, user_id, input, output, metadata from traces where id = \$1"
    fetch_query: trace-by-id
  # An HTTP trace store: agents send their usual request to this listener with a grant's
  # bearer credential; tracegate asks the store with its own Basic credential.
  - name: traces-http
    type: http
    listen: 127.0.0.1:$http_port
    upstream:
      url: $store_url
      auth: {scheme: basic, username: pk-lf-demo, secret_file: $tmp/store.pw}
    routes:
      - {name: trace, path: "/api/public/traces/{trace_id}", response_trace_id: id}
      - name: observations
        path: "/api/public/observations?traceId={trace_id}"
        response_trace_id: "data[*].traceId"
        allow_query: [page, limit]
YAML
"$tracegate" config check "$tmp/tracegate.yaml"

"$tracegate" serve --config "$tmp/tracegate.yaml" &
gw_pid=$!
for _ in $(seq 1 100); do
  if curl -fs "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1; then break; fi
  kill -0 "$gw_pid" 2>/dev/null || { echo "demo: tracegate exited" >&2; exit 1; }
  sleep 0.1
done
trace_id=$(spsql -d traces -c "select id from traces order by id limit 1")
# Plant personal data and a secret in the demo trace (synthetic values), as real traces have.
spsql -d traces -c "UPDATE traces SET user_id = 'jane.doe@example.com',
  metadata = coalesce(metadata, '{}') || jsonb_build_object('billing',
    jsonb_build_object('card', '4111 1111 1111 1111', 'iban', 'DE89 3704 0044 0532 0130 00'),
    'tool_result', '{\"aws_access_key_id\": \"AKIAIOSFODNN7EXAMPLE\"}')
  WHERE id = '$trace_id'"

export TRACEGATE_API="https://127.0.0.1:$api_port" TRACEGATE_CACERT="$tmp/gateway.crt"
echo
echo "demo: 1. an agent gets an access token from its IdP (here: the development issuer)"
"$tracegate" dev token --sub agent-1 --groups ai-agents > "$tmp/agent.token"
echo "demo: 2. it asks tracegate for a grant on one trace:"
echo "        tracegate grant request --connection traces-pg --trace $trace_id --reason 'demo'"
uri=$("$tracegate" grant request --connection traces-pg --trace "$trace_id" --reason demo \
  --token-file "$tmp/agent.token")
echo "demo: 3. psql with the one-time credential reads the trace (and only that trace),"
echo "        masked: the store holds jane.doe@example.com, a card, an IBAN and an AWS key;"
echo "        SQL that reshapes or computes from a value first, a table hidden in an aliased"
echo "        join, and a statement 2,000 operators deep are refused:"
deep="select 1$(printf '+1%.0s' $(seq 2000))"
psql "$uri" -X -v VERBOSITY=default \
  -c "select id, name, user_id from traces where id = '$trace_id'" \
  -c "select metadata->'billing' as billing, metadata->>'tool_result' as tool_result from traces where id = '$trace_id'" \
  -c "select reverse(user_id) from traces where id = '$trace_id'" \
  -c "select (metadata->'billing'->>'card')::float8 from traces where id = '$trace_id'" \
  -c "select (select j.user_id from (traces u cross join traces v) as j where u.id = '$trace_id') from traces u where u.id = '$trace_id'" \
  -c "$deep" \
  -c "select count(*) as observations from observations where trace_id = '$trace_id'" \
  -c "select count(*) from traces" \
  -c "select id from traces where id = '$trace_id' or true" \
  -c "copy traces to stdout" \
  -c "delete from traces where id = '$trace_id'" 2>&1 | sed 's/^/        /' || true
echo "demo: 4. the same credential again is refused (single use):"
psql "$uri" -X -c "select 1" 2>&1 | sed 's/^/        /' || true
echo "demo: 5. a contractor is refused by policy:"
"$tracegate" dev token --sub contractor-7 --groups contractors > "$tmp/contractor.token"
"$tracegate" grant request --connection traces-pg --trace "$trace_id" \
  --token-file "$tmp/contractor.token" 2>&1 | sed 's/^/        /' || true
echo "demo: 6. an auditor asks who read the trace, and sees exactly what the agent saw:"
echo "        tracegate audit sessions -c tracegate.yaml --trace $trace_id"
"$tracegate" audit sessions -c "$tmp/tracegate.yaml" --trace "$trace_id" | sed 's/^/        /'
session_id=$("$tracegate" audit sessions -c "$tmp/tracegate.yaml" --trace "$trace_id" \
  --format json | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["id"])')
echo "        tracegate audit replay -c tracegate.yaml $session_id   (the first statements)"
# (sed reads to the end: head would close the pipe early and SIGPIPE would stop the demo)
"$tracegate" audit replay -c "$tmp/tracegate.yaml" "$session_id" | sed -n 1,24p |
  sed 's/^/        /'
echo "demo: 7. the log is hash-chained and its checkpoints signed; verify checks every byte:"
"$tracegate" audit verify -c "$tmp/tracegate.yaml" --live \
  --public-key "$tmp/audit-signing.pub" | sed 's/^/        /'

echo "demo: 8. a support engineer's read needs consent: the grant comes back pending (202)"
"$tracegate" dev token --sub support-3 --groups support > "$tmp/support.token"
"$tracegate" grant request --connection traces-pg --trace "$trace_id" --json \
  --reason "customer ticket 4711" --token-file "$tmp/support.token" > "$tmp/pending.json"
pending_id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["grant_id"])' \
  "$tmp/pending.json")
pending_uri=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["postgres"]["uri"])' \
  "$tmp/pending.json")
python3 -c 'import json,sys; g=json.load(open(sys.argv[1])); print("        state:", g["state"],
  " approvers:", g["approvers"], " expires:", g["expires_at"])' "$tmp/pending.json"
echo "        psql with its credential is held; an approver decides from another process:"
"$tracegate" dev token --sub approver-1 --groups trace-approvers > "$tmp/approver.token"
(
  sleep 2
  echo "        [approver] tracegate approvals list"
  "$tracegate" approvals list --token-file "$tmp/approver.token" | sed 's/^/        /'
  echo "        [approver] tracegate approvals approve $pending_id --comment 'ticket 4711'"
  "$tracegate" approvals approve "$pending_id" --comment "ticket 4711" \
    --token-file "$tmp/approver.token" | sed 's/^/        /'
) &
approver_pid=$!
PGCONNECT_TIMEOUT=0 psql "$pending_uri" -X \
  -c "select id, name, user_id from traces where id = '$trace_id'" 2>&1 | sed 's/^/        /' || true
wait "$approver_pid" || true
echo "        the requester cannot approve its own request:"
"$tracegate" approvals approve "$pending_id" --token-file "$tmp/support.token" 2>&1 |
  sed 's/^/        /' || true

echo "demo: 9. an HTTP trace store through tracegate: a grant for trace pii-1 on traces-http,"
echo "        then curl with its bearer credential (the store holds an email, a card, an AWS key):"
bearer=$(curl -s --cacert "$tmp/gateway.crt" -H "Authorization: Bearer $(cat "$tmp/agent.token")" \
  "https://127.0.0.1:$api_port/v1/grants" \
  -d '{"connection":"traces-http","trace_id":"pii-1","reason":"demo"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["http"]["bearer"])')
curl -s --cacert "$tmp/gateway.crt" -H "Authorization: Bearer $bearer" \
  "https://127.0.0.1:$http_port/api/public/traces/pii-1" |
  python3 -c 'import json,re,sys; t=sys.stdin.read(); j=json.loads(t)
print("        200, trace", j["id"], len(t), "bytes;", len(re.findall(r"\[REDACTED:[A-Z_]+\]", t)),
      "values masked, e.g.", sorted(set(re.findall(r"\[REDACTED:[A-Z_]+\]", t)))[:4])
print("        jane.doe@example.com in the answer:", "jane.doe@example.com" in t)'
new_bearer() {
  curl -s --cacert "$tmp/gateway.crt" -H "Authorization: Bearer $(cat "$tmp/agent.token")" \
    "https://127.0.0.1:$api_port/v1/grants" -d '{"connection":"traces-http","trace_id":"pii-1"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["http"]["bearer"])'
}
echo "        the same credential again; a fresh one for the list endpoint; one for another trace:"
for request in "$bearer /api/public/traces/pii-1" "$(new_bearer) /api/public/traces?limit=100" \
               "$(new_bearer) /api/public/traces/$trace_id"; do
  set -- $request
  curl -s --cacert "$tmp/gateway.crt" -H "Authorization: Bearer $1" \
    "https://127.0.0.1:$http_port$2" | sed 's/^/        /'; echo
done
echo "demo: 10. one call does it all: GET /v1/connections/{name}/traces/{id} with the OIDC token"
for target in "traces-http/traces/pii-1" "traces-pg/traces/$trace_id"; do
  curl -s --cacert "$tmp/gateway.crt" -H "Authorization: Bearer $(cat "$tmp/agent.token")" \
    "https://127.0.0.1:$api_port/v1/connections/$target?reason=demo" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)
print("        ", r.get("connection"), r.get("trace_id"), "session", r.get("session_id"),
      "masked", r.get("masked"), "trace bytes", len(json.dumps(r.get("trace"))) if "trace" in r else r)'
done
echo "demo: 11. an analyst's one-call fetch of pii-1: masking finds personal data, so the answer"
echo "        waits for an approver (rule hold_if_masked_at_least: 5); the approver says yes:"
"$tracegate" dev token --sub analyst-7 --groups analysts > "$tmp/analyst.token"
(
  for _ in $(seq 1 50); do
    held=$("$tracegate" approvals list --token-file "$tmp/approver.token" --json 2>/dev/null |
      python3 -c 'import json,sys
for a in json.load(sys.stdin).get("approvals", []):
    if a["kind"] == "response" and a["state"] == "pending": print(a["id"]); break' || true)
    [ -n "$held" ] && break
    sleep 0.2
  done
  echo "        [approver] held result $held: $(
    "$tracegate" approvals list --token-file "$tmp/approver.token" --json |
      python3 -c 'import json,sys
print(next(a["detail"] for a in json.load(sys.stdin)["approvals"] if a["kind"] == "response"))')"
  echo "        [approver] tracegate approvals approve $held --comment 'incident 12'"
  "$tracegate" approvals approve "$held" --comment "incident 12" \
    --token-file "$tmp/approver.token" | sed 's/^/        /'
) &
approver_pid=$!
curl -s -D "$tmp/held.headers" --cacert "$tmp/gateway.crt" \
  -H "Authorization: Bearer $(cat "$tmp/analyst.token")" \
  "https://127.0.0.1:$api_port/v1/connections/traces-http/traces/pii-1?reason=incident-12" |
  python3 -c 'import json,sys; r=json.load(sys.stdin)
print("        released after approval", r.get("approval_id"), "- masked", r.get("masked"))'
wait "$approver_pid" || true

cat <<MSG

  tracegate is running in front of a throwaway trace store. Nobody holds a standing
  credential for it: each read starts with a grant for one trace, usable once, for 30 s.

  Do it yourself (in another shell):

    export TRACEGATE_DEV_DIR=$tmp/dev
    export TRACEGATE_API=https://127.0.0.1:$api_port TRACEGATE_CACERT=$tmp/gateway.crt
    $tracegate dev token --sub agent-1 --groups ai-agents > /tmp/token
    uri=\$($tracegate grant request --connection traces-pg --trace $trace_id \\
          --reason "debug refund bug" --token-file /tmp/token)
    psql "\$uri" -c "select id, name, jsonb_pretty(output) from traces where id = '$trace_id'"

  The same with curl (the response carries the grant id, expiry and credential):

    curl -s --cacert $tmp/gateway.crt -H "Authorization: Bearer \$(cat /tmp/token)" \\
      https://127.0.0.1:$api_port/v1/grants \\
      -d '{"connection":"traces-pg","trace_id":"$trace_id","reason":"debug"}'

  Who read what, and what they saw (the recording, replayed; verify the log's integrity):
    $tracegate audit sessions -c $tmp/tracegate.yaml --trace $trace_id
    $tracegate audit replay -c $tmp/tracegate.yaml <session id> [--format json|csv]
    $tracegate audit verify -c $tmp/tracegate.yaml --live --public-key $tmp/audit-signing.pub
    $tracegate audit export -c $tmp/tracegate.yaml --since 1h     # JSON lines for a SIEM

  Consent: request as support (pending), then decide as an approver:
    $tracegate dev token --sub support-3 --groups support > /tmp/support.token
    $tracegate grant request --connection traces-pg --trace $trace_id --reason "ticket" \
      --token-file /tmp/support.token          # prints the URI; psql with it waits
    $tracegate dev token --sub approver-1 --groups trace-approvers > /tmp/approver.token
    $tracegate approvals list --token-file /tmp/approver.token
    $tracegate approvals approve <grant id> --comment "ticket" --token-file /tmp/approver.token
    $tracegate approvals deny <grant id> --comment "why not" --token-file /tmp/approver.token

  HTTP trace store (Langfuse API shape) behind tracegate's listener on :$http_port:
    curl -s --cacert $tmp/gateway.crt -H "Authorization: Bearer \$(cat /tmp/token)" \\
      https://127.0.0.1:$api_port/v1/connections/traces-http/traces/pii-1      # one call
    curl -s --cacert $tmp/gateway.crt -H "Authorization: Bearer \$(cat /tmp/token)" \\
      https://127.0.0.1:$api_port/v1/grants -d '{"connection":"traces-http","trace_id":"pii-1"}'
    curl -s --cacert $tmp/gateway.crt -H "Authorization: Bearer tgb_…" \\
      https://127.0.0.1:$http_port/api/public/traces/pii-1                     # once

  Why a rule decides:  $tracegate policy explain -c $tmp/tracegate.yaml --token /tmp/token \\
                         --connection traces-pg --trace $trace_id
  Metrics:  curl http://127.0.0.1:$admin_port/metrics
  Health:   curl http://127.0.0.1:$admin_port/readyz

  Ctrl-C stops the gateway and the trace store.

MSG
wait "$gw_pid"
