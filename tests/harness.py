"""Integration-test harness: a throwaway PostgreSQL, the tracegate binary, raw pgwire.

Everything here is hermetic: temp directories, free loopback ports, readiness polled with
a deadline (never a fixed sleep), and every process started here is stopped again by the
context managers even when a test fails. Standard library only.

    with PgServer() as pg, Gateway(Gateway.config_for(pg, users={"alice": "pw"})) as gw:
        print(run_psql(gw.dsn("alice", "pw"), "select count(*) from traces"))

Environment:
  TRACEGATE_BIN   gateway binary (CTest sets it); default <root>/build/tracegate
  TRACEGATE_ROOT  repository root (CTest sets it); default the parent of this folder
  LIBPQ_CLIENT    tests/libpq_client.cpp built (CTest sets it)
  PG_BINDIR       PostgreSQL server binaries; default /usr/lib/postgresql/15/bin
  TG_KEEP_TMP=1   keep temp directories for post-mortem
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import pwd
import re
import secrets
import selectors
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable

ROOT = (os.environ.get("TRACEGATE_ROOT")
        or os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PG_BINDIR = os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin")
GEN_TRACES = os.path.join(ROOT, "scripts", "gen_traces.py")
# The real framework traces live next to the repository, in ../shared/data (absent on most
# machines). They only add to the generated traces the tests always use.
SHARED_DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data",
                                            "langfuse-framework-traces"))
if not os.path.isdir(SHARED_DATA):
    print(f"harness: real traces absent ({SHARED_DATA}); using generated traces only",
          file=sys.stderr)
KEEP_TMP = os.environ.get("TG_KEEP_TMP") == "1"


# --- small helpers -------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago. The caller binds it soon after; the kernel
    hands out ephemeral ports round-robin, so a reuse race within a test run is unlikely."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.02,
             what: str = "condition") -> Any:
    """Polls predicate() until it returns something truthy; returns that value. Exceptions
    from the predicate count as "not yet". Raises TimeoutError naming `what` (and the last
    exception) once the deadline passes."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - "not ready yet", reported on timeout
            last_exc = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}{detail}")
        time.sleep(interval)


def port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """GET returning (status, body) also for 4xx/5xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def install_sigterm_cleanup() -> None:
    """CTest stops a test that runs past its TIMEOUT with SIGTERM first; turn that into
    SystemExit so `with` blocks and tearDown run and no postgres/gateway is left behind."""
    def handler(signum, frame):  # noqa: ARG001
        raise SystemExit(f"terminated by signal {signum}")
    signal.signal(signal.SIGTERM, handler)


def _drop_privileges_prefix() -> tuple[list[str], str | None]:
    """initdb and postgres refuse to run as root. When the tests run as root (CI containers
    do) we run them as the unprivileged `postgres` system user that Debian's postgresql
    package creates, via runuser, and hand that user the temp directory. Not root: run
    them as ourselves."""
    if os.geteuid() != 0:
        return [], None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("running as root but there is no `postgres` user to run the "
                           "server as; create one (useradd -r postgres)") from None
    return ["runuser", "-u", "postgres", "--"], "postgres"


def _chown_tree(path: str, user: str | None) -> None:
    if user is None:
        return
    pw = pwd.getpwnam(user)
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, pw.pw_uid, pw.pw_gid)
        for name in filenames:
            os.chown(os.path.join(dirpath, name), pw.pw_uid, pw.pw_gid)


# --- PostgreSQL ----------------------------------------------------------------------------


class PgServer:
    """A private PostgreSQL 15 cluster for one test (class).

    - initdb into a temp dir: local (unix socket) connections are `trust` so the harness
      itself can set things up as the superuser without a password; TCP on 127.0.0.1 needs
      SCRAM-SHA-256 (or md5 / password for the roles created by add_auth_roles()).
    - Role `tracegate` (LOGIN, random password, SCRAM) owns nothing and may only SELECT the
      trace tables; it may also INSERT into `write_probe`, so that a write refused through
      the gateway proves the gateway's read-only session, not a missing privilege.
    - Database `traces`, owned by the superuser, loaded with scripts/gen_traces.py.
    - ssl=True: a self-signed certificate (CN/SAN 127.0.0.1, localhost) made with the openssl
      CLI, ssl=on, and role `tg_ssl` that pg_hba only admits over TLS (hostssl).
    """

    SUPERUSER = "postgres"
    DATABASE = "traces"

    def __init__(self, traces: int = 50, seed: int = 1, payload_bytes: int = 8192,
                 shared_data: str | None = None, ssl: bool = False,
                 extra_conf: dict[str, Any] | None = None, load_data: bool = True):
        self.traces = traces
        self.seed = seed
        self.payload_bytes = payload_bytes
        self.shared_data = shared_data
        self.ssl = ssl
        self.extra_conf = extra_conf or {}
        self.load_data = load_data
        self.host = "127.0.0.1"
        self.port = 0
        self.tmp = ""
        self.datadir = ""
        self.sockdir = ""
        self.logfile = ""
        self.cert_file = ""
        self.key_file = ""
        self._passwords: dict[str, str] = {}
        self._prefix, self._run_as = _drop_privileges_prefix()
        self._started = False

    # -- lifecycle --

    def __enter__(self) -> "PgServer":
        try:
            self.setup()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def setup(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="tg-pg-")
        os.chmod(self.tmp, 0o755)
        self.datadir = os.path.join(self.tmp, "data")
        self.sockdir = os.path.join(self.tmp, "sock")
        os.mkdir(self.sockdir)
        self.logfile = os.path.join(self.tmp, "postgres.log")
        self.port = free_port()
        superpw = secrets.token_urlsafe(18)
        self._passwords[self.SUPERUSER] = superpw
        pwfile = os.path.join(self.tmp, "superuser.pw")
        with open(pwfile, "w") as f:
            f.write(superpw + "\n")
        if self.ssl:
            self._make_cert()
        _chown_tree(self.tmp, self._run_as)

        self._run([os.path.join(PG_BINDIR, "initdb"), "-D", self.datadir, "-U", self.SUPERUSER,
                   "--pwfile", pwfile, "--auth-local=trust", "--auth-host=scram-sha-256",
                   "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
        os.unlink(pwfile)
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.sockdir}'",
            "password_encryption": "'scram-sha-256'",
            "max_connections": "100",
            # Throwaway cluster: durability buys nothing and costs seconds.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "32MB",
            "log_min_messages": "warning",
            "log_connections": "off",
        }
        if self.ssl:
            conf.update({"ssl": "on", "ssl_cert_file": f"'{self.cert_file}'",
                         "ssl_key_file": f"'{self.key_file}'"})
        conf.update({k: str(v) for k, v in self.extra_conf.items()})
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            f.write("\n# tests/harness.py\n")
            for k, v in conf.items():
                f.write(f"{k} = {v}\n")
        self._write_hba()
        self.start()

        self._passwords["tracegate"] = secrets.token_urlsafe(18)
        self.psql(f"CREATE DATABASE {self.DATABASE}", dbname="postgres")
        self.psql(f"CREATE ROLE tracegate LOGIN PASSWORD '{self._passwords['tracegate']}'",
                  dbname="postgres")
        if self.load_data:
            self.load_traces()
        self.psql("CREATE TABLE IF NOT EXISTS write_probe (id int, note text);")
        self._grant_reader("tracegate")
        self.psql("GRANT INSERT ON write_probe TO tracegate;")
        if self.ssl:
            self._create_role("tg_ssl")

    def load_traces(self) -> None:
        cmd = [sys.executable, GEN_TRACES, "--traces", str(self.traces), "--seed",
               str(self.seed), "--payload-bytes", str(self.payload_bytes)]
        if self.shared_data:
            cmd += ["--shared-data", self.shared_data]
        sql = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        self.psql(sql, stdin_script=True)

    def _grant_reader(self, role: str) -> None:
        self.psql(f"GRANT CONNECT ON DATABASE {self.DATABASE} TO {role};"
                  f"GRANT USAGE ON SCHEMA public TO {role};"
                  f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};")

    def _create_role(self, role: str, encryption: str = "scram-sha-256") -> None:
        pw = secrets.token_urlsafe(18)
        self._passwords[role] = pw
        # SET in the same session decides how CREATE ROLE stores the password.
        self.psql(f"SET password_encryption = '{encryption}';"
                  f"CREATE ROLE {role} LOGIN PASSWORD '{pw}';", dbname="postgres")
        self._grant_reader(role)

    def add_auth_roles(self) -> None:
        """Creates tg_md5 (md5-hashed password, pg_hba md5) and tg_plain (pg_hba `password`:
        cleartext over the wire) so every backend-auth path of the gateway can be driven."""
        self._create_role("tg_md5", encryption="md5")
        self._create_role("tg_plain")

    def _write_hba(self) -> None:
        lines = [
            "# tests/harness.py: local socket = harness setup as superuser only",
            "local all all trust",
            "host all tg_md5 127.0.0.1/32 md5",
            "host all tg_plain 127.0.0.1/32 password",
        ]
        if self.ssl:
            lines += ["hostnossl all tg_ssl 127.0.0.1/32 reject",
                      "hostssl all tg_ssl 127.0.0.1/32 scram-sha-256"]
        lines += ["host all all 127.0.0.1/32 scram-sha-256"]
        path = os.path.join(self.datadir, "pg_hba.conf")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        _chown_tree(self.datadir, self._run_as)

    def _make_cert(self) -> None:
        self.cert_file, self.key_file = make_self_signed_cert(self.tmp)

    @property
    def ca_file(self) -> str:
        """Self-signed: the certificate is its own CA (for verify-full)."""
        return self.cert_file

    def _run(self, cmd: list[str], **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        p = subprocess.run(self._prefix + cmd, **kw)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n"
                               f"{p.stderr}\n{self.log_tail()}")
        return p

    def log_tail(self, n: int = 4000) -> str:
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def start(self) -> None:
        # -w: pg_ctl itself polls until the server accepts connections (its own deadline -t).
        self._run([os.path.join(PG_BINDIR, "pg_ctl"), "start", "-D", self.datadir, "-l",
                   self.logfile, "-w", "-t", "60"])
        self._started = True
        wait_for(lambda: port_accepts(self.host, self.port), 30, what="postgres TCP port")

    def stop(self, mode: str = "fast") -> None:
        if not self._started:
            return
        self._run([os.path.join(PG_BINDIR, "pg_ctl"), "stop", "-D", self.datadir, "-m", mode,
                   "-w", "-t", "60"])
        self._started = False

    def kill(self) -> None:
        """Immediate shutdown: backends are SIGQUIT-ed, clients see the connection drop."""
        self.stop(mode="immediate")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode=mode)
        self.start()

    def reload(self) -> None:
        """SIGHUP via pg_ctl: configuration and TLS files are re-read. Asynchronous; poll
        for the effect."""
        self._run([os.path.join(PG_BINDIR, "pg_ctl"), "reload", "-D", self.datadir])

    @property
    def running(self) -> bool:
        return self._started

    def postmaster_pid(self) -> int | None:
        try:
            with open(os.path.join(self.datadir, "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (OSError, ValueError):
            return None

    def cleanup(self) -> None:
        if self._started:
            try:
                self.stop(mode="immediate")
            except Exception:  # noqa: BLE001 - fall through to killing the postmaster
                pid = self.postmaster_pid()
                if pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGQUIT)
                    with contextlib.suppress(TimeoutError):
                        wait_for(lambda: not _pid_alive(pid), 10, what="postmaster exit")
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self._started = False
        if self.tmp and not KEEP_TMP:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- clients --

    def password_for(self, role: str) -> str:
        return self._passwords[role]

    def dsn(self, user: str = "tracegate", dbname: str = DATABASE, sslmode: str = "disable",
            **extra: str) -> str:
        """libpq conninfo over TCP with the role's password."""
        parts = {"host": self.host, "port": str(self.port), "dbname": dbname, "user": user,
                 "password": self._passwords[user], "sslmode": sslmode,
                 "connect_timeout": "10"}
        parts.update(extra)
        return conninfo(parts)

    def super_dsn(self, dbname: str = DATABASE) -> str:
        return conninfo({"host": self.sockdir, "port": str(self.port), "dbname": dbname,
                         "user": self.SUPERUSER})

    def psql(self, sql: str, user: str | None = None, dbname: str = DATABASE,
             args: Iterable[str] = ("-qAt",), stdin_script: bool = False,
             check: bool = True) -> str:
        """Runs sql with psql; superuser over the unix socket unless `user` is given (then
        TCP with that role's password). Returns stdout; raises with stderr on failure."""
        dsn = self.super_dsn(dbname) if user is None else self.dsn(user, dbname)
        p = run_psql(dsn, sql, args=args, stdin_script=stdin_script)
        if check and p.returncode != 0:
            raise RuntimeError(f"psql failed ({p.returncode}): {p.stderr.strip()}")
        return p.stdout


def make_self_signed_cert(directory: str, name: str = "server", common_name: str = "127.0.0.1",
                          san: str = "IP:127.0.0.1,DNS:localhost") -> tuple[str, str]:
    """A throwaway self-signed certificate, by default for 127.0.0.1/localhost (it is its own
    CA, so it also serves as sslrootcert for verify-full). Returns (cert_file, key_file)."""
    cert = os.path.join(directory, f"{name}.crt")
    key = os.path.join(directory, f"{name}.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={common_name}", "-addext", f"subjectAltName={san}",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    os.chmod(key, 0o600)  # postgres (and libpq) refuse group/world-readable keys
    return cert, key


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def conninfo(parts: dict[str, str]) -> str:
    def q(v: str) -> str:
        return "'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'"
    return " ".join(f"{k}={q(v)}" for k, v in parts.items())


def run_psql(dsn: str, sql: str, args: Iterable[str] = ("-qAt",), stdin_script: bool = False,
             timeout: float = 120,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """psql -X (no ~/.psqlrc) with ON_ERROR_STOP. `sql` goes in with -c, or on stdin as a
    script (-f -) when stdin_script (needed for COPY FROM STDIN and backslash commands with
    several statements). VERBOSITY=verbose makes errors carry their SQLSTATE."""
    cmd = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose", *args, "-d", dsn]
    full_env = dict(os.environ, PGCONNECT_TIMEOUT="10", PGAPPNAME="tracegate-tests")
    full_env.pop("PGPASSWORD", None)
    if env:
        full_env.update(env)
    if stdin_script:
        return subprocess.run(cmd + ["-f", "-"], input=sql, capture_output=True, text=True,
                              timeout=timeout, env=full_env)
    return subprocess.run(cmd + ["-c", sql], capture_output=True, text=True, timeout=timeout,
                          env=full_env, stdin=subprocess.DEVNULL)


SQLSTATE_RE = re.compile(r"\b(?:ERROR|FATAL|PANIC):\s+([0-9A-Z]{5}):")


def sqlstate_of(stderr: str) -> str | None:
    """The SQLSTATE in psql's VERBOSITY=verbose error output ("ERROR:  28P01: ...")."""
    m = SQLSTATE_RE.search(stderr)
    return m.group(1) if m else None


# --- SCRAM-SHA-256 -------------------------------------------------------------------------


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = 4096) -> str:
    """The PostgreSQL-format SCRAM-SHA-256 secret for a password (as in pg_authid):
    SCRAM-SHA-256$<iterations>:<b64 salt>$<b64 StoredKey>:<b64 ServerKey>.
    (No SASLprep: test passwords are ASCII, for which SASLprep is the identity.)"""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(_hmac(salted, b"Client Key")).digest()
    server_key = _hmac(salted, b"Server Key")
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


class ScramClient:
    """Client side of SCRAM-SHA-256 without channel binding, byte-compatible with libpq
    (gs2 header "n,,", empty username: PostgreSQL takes the user from the startup packet)."""

    def __init__(self, password: str, nonce: str | None = None):
        self.password = password
        self.nonce = nonce or base64.b64encode(os.urandom(18)).decode()
        self.client_first_bare = f"n=,r={self.nonce}"
        self.server_signature = b""

    def client_first(self) -> bytes:
        return ("n,," + self.client_first_bare).encode()

    def client_final(self, server_first: bytes) -> bytes:
        sf = server_first.decode()
        attrs = dict(kv.split("=", 1) for kv in sf.split(","))
        if not attrs["r"].startswith(self.nonce):
            raise ValueError("server nonce does not extend the client nonce")
        salt = base64.b64decode(attrs["s"])
        iterations = int(attrs["i"])
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), salt, iterations)
        client_key = _hmac(salted, b"Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={attrs['r']}"
        auth_message = f"{self.client_first_bare},{sf},{without_proof}".encode()
        signature = _hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        self.server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify_server_final(self, server_final: bytes) -> None:
        sf = server_final.decode()
        if not sf.startswith("v="):
            raise ValueError(f"SCRAM server-final is an error: {sf}")
        if not hmac.compare_digest(base64.b64decode(sf[2:]), self.server_signature):
            raise ValueError("SCRAM server signature mismatch")


# --- raw pgwire ----------------------------------------------------------------------------

PROTOCOL_3_0 = 196608
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102


def startup_message(params: dict[str, str], protocol: int = PROTOCOL_3_0) -> bytes:
    body = struct.pack("!I", protocol)
    for k, v in params.items():
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def ssl_request() -> bytes:
    return struct.pack("!II", 8, SSL_REQUEST_CODE)


def gssenc_request() -> bytes:
    return struct.pack("!II", 8, GSSENC_REQUEST_CODE)


def message(mtype: bytes, body: bytes = b"") -> bytes:
    return mtype + struct.pack("!I", len(body) + 4) + body


def parse_error_fields(body: bytes) -> dict[str, str]:
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


def parse_data_row(body: bytes) -> tuple[str | None, ...]:
    """A DataRow body as text values (None for SQL NULL)."""
    (n,) = struct.unpack("!H", body[:2])
    pos, row = 2, []
    for _ in range(n):
        (ln,) = struct.unpack("!i", body[pos:pos + 4])
        pos += 4
        if ln < 0:
            row.append(None)
        else:
            row.append(body[pos:pos + ln].decode())
            pos += ln
    return tuple(row)


def split_messages(data: bytes) -> list[tuple[bytes, bytes]]:
    """Splits backend bytes into (type, body) messages; a truncated tail is dropped."""
    out = []
    i = 0
    while i + 5 <= len(data):
        (length,) = struct.unpack("!I", data[i + 1:i + 5])
        if length < 4 or i + 1 + length > len(data):
            break
        out.append((data[i:i + 1], data[i + 5:i + 1 + length]))
        i += 1 + length
    return out


def _cstr(s: str | bytes) -> bytes:
    return (s.encode() if isinstance(s, str) else s) + b"\0"


# Extended-protocol messages (text format unless told), for tests that drive the gate's
# portal and statement bookkeeping by hand.
def pg_parse(name: str, sql: str | bytes, param_types: Iterable[int] = ()) -> bytes:
    types = list(param_types)
    return message(b"P", _cstr(name) + _cstr(sql) + struct.pack("!H", len(types))
                   + b"".join(struct.pack("!I", t) for t in types))


def pg_bind(portal: str, statement: str, params: Iterable[str | None] = ()) -> bytes:
    values = list(params)
    body = _cstr(portal) + _cstr(statement) + struct.pack("!HH", 0, len(values))
    for v in values:
        body += struct.pack("!i", -1) if v is None else struct.pack("!I", len(v.encode())) + v.encode()
    return message(b"B", body + struct.pack("!H", 0))


def pg_describe(kind: bytes, name: str) -> bytes:
    return message(b"D", kind + _cstr(name))


def pg_execute(portal: str, max_rows: int = 0) -> bytes:
    return message(b"E", _cstr(portal) + struct.pack("!I", max_rows))


def pg_close(kind: bytes, name: str) -> bytes:
    return message(b"C", kind + _cstr(name))


def pg_sync() -> bytes:
    return message(b"S")


def pg_run(sql: str) -> bytes:
    """One statement on the unnamed portal: Parse, Bind, Execute (no Sync)."""
    return pg_parse("", sql) + pg_bind("", "") + pg_execute("")


class PgProtocolError(Exception):
    def __init__(self, fields: dict[str, str]):
        self.fields = fields
        self.sqlstate = fields.get("C")
        super().__init__(f"{fields.get('S', 'ERROR')} {self.sqlstate}: {fields.get('M')}")


class ConnectionClosed(Exception):
    pass


class RawPgConn:
    """A hand-driven pgwire client for adversarial tests: send exact bytes, read whole
    messages with a deadline, authenticate with SCRAM, run simple queries."""

    def __init__(self, host: str, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.parameters: dict[str, str] = {}

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> "RawPgConn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, n: int) -> None:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionClosed(f"peer closed with {len(self.buf)} bytes buffered")
            self.buf += chunk

    def recv_byte(self) -> bytes:
        self._fill(1)
        b, self.buf = self.buf[:1], self.buf[1:]
        return b

    def recv_message(self) -> tuple[bytes, bytes]:
        self._fill(5)
        mtype = self.buf[:1]
        (length,) = struct.unpack("!I", self.buf[1:5])
        if length < 4 or length > 1 << 30:
            raise ValueError(f"bad length {length} for message {mtype!r}")
        self._fill(1 + length)
        body = self.buf[5:1 + length]
        self.buf = self.buf[1 + length:]
        return mtype, body

    def expect_closed(self, timeout: float = 10.0) -> bytes:
        """Reads until EOF/reset; returns what arrived (error messages, usually). Raises
        TimeoutError if the peer keeps the connection open."""
        self.sock.settimeout(timeout)
        data = self.buf
        self.buf = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return data
                data += chunk
        except ConnectionResetError:
            return data
        except socket.timeout:
            raise TimeoutError(f"connection still open after {timeout}s; got {data[:200]!r}")

    def read_until_error_or_close(self, timeout: float = 10.0) -> dict[str, str] | None:
        """Returns the fields of the first ErrorResponse, or None if the peer closed
        without one."""
        for mtype, body in split_messages(self.expect_closed(timeout)):
            if mtype == b"E":
                return parse_error_fields(body)
        return None

    def startup(self, user: str, password: str, database: str = "traces",
                extra: dict[str, str] | None = None) -> None:
        """StartupMessage + authentication (SCRAM-SHA-256, or cleartext/md5 if asked)
        until ReadyForQuery. Raises PgProtocolError on ErrorResponse."""
        params = {"user": user, "database": database}
        params.update(extra or {})
        self.send(startup_message(params))
        self.authenticate(user, password)

    def authenticate(self, user: str, password: str) -> None:
        scram: ScramClient | None = None
        while True:
            mtype, body = self.recv_message()
            if mtype == b"E":
                raise PgProtocolError(parse_error_fields(body))
            if mtype == b"R":
                (code,) = struct.unpack("!I", body[:4])
                if code == 0:
                    continue
                if code == 3:
                    self.send(message(b"p", password.encode() + b"\0"))
                elif code == 5:
                    salt = body[4:8]
                    inner = hashlib.md5(password.encode() + user.encode()).hexdigest()
                    outer = hashlib.md5(inner.encode() + salt).hexdigest()
                    self.send(message(b"p", b"md5" + outer.encode() + b"\0"))
                elif code == 10:
                    mechs = [m.decode() for m in body[4:].split(b"\0") if m]
                    if "SCRAM-SHA-256" not in mechs:
                        raise ValueError(f"server offers {mechs}, no SCRAM-SHA-256")
                    scram = ScramClient(password)
                    first = scram.client_first()
                    self.send(message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first))
                                      + first))
                elif code == 11:
                    assert scram is not None
                    self.send(message(b"p", scram.client_final(body[4:])))
                elif code == 12:
                    assert scram is not None
                    scram.verify_server_final(body[4:])
                else:
                    raise ValueError(f"unsupported auth request {code}")
            elif mtype == b"S":
                k, v, _ = body.split(b"\0", 2)
                self.parameters[k.decode()] = v.decode()
            elif mtype == b"K":
                pass
            elif mtype == b"Z":
                return
            elif mtype == b"N":
                pass
            else:
                raise ValueError(f"unexpected message {mtype!r} during startup")

    def simple_query(self, sql: str) -> list[tuple[str | None, ...]]:
        """Runs one simple Query; returns the rows (text). Raises PgProtocolError on an
        ErrorResponse (after draining to ReadyForQuery)."""
        self.send(message(b"Q", sql.encode() + b"\0"))
        rows: list[tuple[str | None, ...]] = []
        error = None
        while True:
            mtype, body = self.recv_message()
            if mtype == b"D":
                rows.append(parse_data_row(body))
            elif mtype == b"E":
                error = PgProtocolError(parse_error_fields(body))
            elif mtype == b"Z":
                if error:
                    raise error
                return rows

    def exchange(self, data: bytes, ready: int = 1) -> list[tuple[bytes, bytes]]:
        """Sends `data` and returns every message up to and including the `ready`-th
        ReadyForQuery."""
        self.send(data)
        out: list[tuple[bytes, bytes]] = []
        while ready > 0:
            mtype, body = self.recv_message()
            out.append((mtype, body))
            if mtype == b"Z":
                ready -= 1
        return out

    def start_tls(self) -> None:
        """SSLRequest; on 'S' wrap the socket in TLS (no certificate check: tests pin
        behaviour, not PKI). Raises if the server answers anything else."""
        self.send(ssl_request())
        answer = self.recv_byte()
        if answer != b"S":
            raise ValueError(f"server answered {answer!r} to SSLRequest")
        if self.buf:
            raise ValueError("server sent bytes after 'S' before the TLS handshake")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(self.sock)

    def terminate(self) -> None:
        with contextlib.suppress(OSError):
            self.send(message(b"X"))
        self.close()


# --- YAML (emitter only) -------------------------------------------------------------------

_PLAIN_OK = re.compile(r"^[A-Za-z0-9_./][A-Za-z0-9_./:@-]*$")
_YAML_SPECIAL = re.compile(r"^(?:true|false|yes|no|on|off|null|~|y|n|[-+]?[0-9][0-9_.eE+-]*)$",
                           re.IGNORECASE)


def _yaml_scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    s = str(v)
    if _PLAIN_OK.match(s) and not _YAML_SPECIAL.match(s) and ": " not in s:
        return s
    return json.dumps(s)  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block-style YAML for dicts, lists and scalars (enough for tracegate configs)."""
    pad = " " * indent
    out = []
    if isinstance(value, dict):
        if not value:
            return pad + "{}\n"
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                out.append(f"{pad}{k}:\n{to_yaml(v, indent + 2)}")
            elif isinstance(v, (dict, list)):
                out.append(f"{pad}{k}: {'{}' if isinstance(v, dict) else '[]'}\n")
            else:
                out.append(f"{pad}{k}: {_yaml_scalar(v)}\n")
        return "".join(out)
    if isinstance(value, list):
        if not value:
            return pad + "[]\n"
        for item in value:
            if isinstance(item, dict) and item:
                body = to_yaml(item, indent + 2)
                out.append(pad + "- " + body[indent + 2:])
            elif isinstance(item, list) and item:
                out.append(f"{pad}-\n{to_yaml(item, indent + 2)}")
            elif isinstance(item, (dict, list)):
                out.append(f"{pad}- {'{}' if isinstance(item, dict) else '[]'}\n")
            else:
                out.append(f"{pad}- {_yaml_scalar(item)}\n")
        return "".join(out)
    return pad + _yaml_scalar(value) + "\n"


# --- the gateway ---------------------------------------------------------------------------


def gateway_binary() -> str:
    env = os.environ.get("TRACEGATE_BIN")
    if env:
        return env
    for candidate in (os.path.join(ROOT, "build", "tracegate"),
                      os.path.join(ROOT, "build", "src", "app", "tracegate")):
        if os.path.exists(candidate):
            return candidate
    return os.path.join(ROOT, "build", "tracegate")


class Gateway:
    """Runs `tracegate serve --config <yaml>` for a test.

    Waits until every configured client listener accepts TCP and, when an admin listener is
    configured, GET /readyz answers 200. stop() sends SIGTERM, waits for exit (SIGKILL after
    the timeout) and asserts a clean exit status.
    """

    BACKEND_PASSWORD_ENV = "TRACEGATE_BACKEND_PASSWORD"

    def __init__(self, config: dict, env: dict[str, str] | None = None,
                 binary: str | None = None, ready_timeout: float = 30.0):
        self.config = config
        self.env = env or {}
        self.binary = binary or gateway_binary()
        self.ready_timeout = ready_timeout
        self.tmp = ""
        self.config_path = ""
        self.stderr_path = ""
        self.proc: subprocess.Popen | None = None
        self.exit_code: int | None = None

    # Typical config: one postgres connection to `pg` with static SCRAM users.
    @classmethod
    def config_for(cls, pg: PgServer, users: dict[str, str], *, require_tls: bool = False,
                   tls: dict[str, str] | None = None, backend_user: str = "tracegate",
                   backend_tls: str = "disable", admin: bool = True,
                   **overrides: Any) -> dict:
        conn: dict[str, Any] = {
            "name": "traces-pg",
            "type": "postgres",
            "listen": f"127.0.0.1:{free_port()}",
            "require_tls": require_tls,
            "idle_timeout": "5m",
            "session_timeout": "1h",
            "backend": {
                "host": pg.host,
                "port": pg.port,
                "database": PgServer.DATABASE,
                "user": backend_user,
                "password_env": cls.BACKEND_PASSWORD_ENV,
                "tls": backend_tls,
                "connect_timeout": "5s",
                "statement_timeout": "30s",
                "read_only": True,
            },
            "pool": {"max_size": 32, "idle_timeout": "60s"},
            "users": [{"name": n, "scram_verifier": scram_verifier(p)} for n, p in users.items()],
            # What a grant's session may read (static users are not gated).
            "gate": {"trace_tables": [{"table": "traces", "id_column": "id"},
                                      {"table": "observations", "id_column": "trace_id"},
                                      {"table": "scores", "id_column": "trace_id"}]},
        }
        if backend_tls == "verify-full":
            conn["backend"]["ca_file"] = pg.ca_file
        cfg: dict[str, Any] = {"workers": 2, "shutdown_grace": "10s", "log_level": "info"}
        if admin:
            cfg["admin"] = {"listen": f"127.0.0.1:{free_port()}"}
        if tls:
            cfg["tls"] = tls
        cfg["limits"] = {"max_startup_length": 10000, "max_message_length": "64MiB"}
        cfg["connections"] = [conn]
        cfg.update(overrides)
        return cfg

    def __enter__(self) -> "Gateway":
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, exc_type, *exc) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None and exc_type is None:
                self.stop()
        finally:
            self.cleanup()

    def start(self) -> None:
        if not os.access(self.binary, os.X_OK):
            raise FileNotFoundError(f"gateway binary {self.binary} not found or not "
                                    "executable (set TRACEGATE_BIN)")
        if not self.tmp:
            self.tmp = tempfile.mkdtemp(prefix="tg-gw-")
            self.config_path = os.path.join(self.tmp, "tracegate.yaml")
            self.stderr_path = os.path.join(self.tmp, "stderr.log")
            with open(self.config_path, "w") as f:
                f.write(to_yaml(self.config))
        env = dict(os.environ)
        env.update(self.env)
        err = open(self.stderr_path, "ab")
        try:
            # Own process group: cleanup can kill it (and anything it forks) by group id.
            self.proc = subprocess.Popen([self.binary, "serve", "--config", self.config_path],
                                         stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         env=env, start_new_session=True)
        finally:
            err.close()
        self.exit_code = None
        self.wait_ready()

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                code = self.proc.returncode if self.proc else None
                raise RuntimeError(f"gateway exited with {code}; stderr:\n"
                                   f"{self.stderr_text()[-4000:]}")
            for host, port in self.listen_addresses():
                if not port_accepts(host, port):
                    return False
            if self.admin_url:
                return http_get(self.admin_url + "/readyz", timeout=1)[0] == 200
            return True

        try:
            wait_for(ready, self.ready_timeout, what="gateway ready")
        except TimeoutError as e:
            raise TimeoutError(f"{e}; stderr:\n{self.stderr_text()[-4000:]}") from None

    def listen_addresses(self) -> list[tuple[str, int]]:
        return [split_hostport(c["listen"]) for c in self.config.get("connections", [])]

    @property
    def host(self) -> str:
        return self.listen_addresses()[0][0]

    @property
    def port(self) -> int:
        return self.listen_addresses()[0][1]

    @property
    def admin_url(self) -> str | None:
        admin = self.config.get("admin")
        if not admin:
            return None
        host, port = split_hostport(admin["listen"])
        return f"http://{host}:{port}"

    def dsn(self, user: str, password: str, dbname: str = "traces", sslmode: str = "disable",
            **extra: str) -> str:
        parts = {"host": self.host, "port": str(self.port), "dbname": dbname, "user": user,
                 "password": password, "sslmode": sslmode, "connect_timeout": "10"}
        parts.update(extra)
        return conninfo(parts)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr_text(self) -> str:
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0, expect_code: int | None = 0) -> int:
        """SIGTERM, wait; SIGKILL the group if it does not exit in time (then fail)."""
        assert self.proc is not None, "gateway not started"
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                raise AssertionError(f"gateway did not exit within {timeout}s of SIGTERM; "
                                     f"stderr:\n{self.stderr_text()[-4000:]}") from None
        self.exit_code = self.proc.returncode
        if expect_code is not None and self.exit_code != expect_code:
            raise AssertionError(f"gateway exited with {self.exit_code}, expected "
                                 f"{expect_code}; stderr:\n{self.stderr_text()[-4000:]}")
        return self.exit_code

    def _kill_group(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self._kill_group()
        if self.tmp and not KEEP_TMP:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = ""


def split_hostport(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    return host.strip("[]"), int(port)


# --- other clients -------------------------------------------------------------------------


def libpq_client_binary() -> str:
    env = os.environ.get("LIBPQ_CLIENT")
    if env:
        return env
    for d in ("build-tests", "build"):
        candidate = os.path.join(ROOT, d, "tests", "libpq_client")
        if os.path.exists(candidate):
            return candidate
    return os.path.join(ROOT, "build", "tests", "libpq_client")


def run_libpq_client(dsn: str, command: str, *args: str,
                     timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([libpq_client_binary(), dsn, command, *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


# --- HTTP trace store (Langfuse API shape) ---------------------------------------------------


def _http_store_module():
    """tests/http_store.py, imported once (the harness's own folder on sys.path)."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    import http_store  # noqa: PLC0415 - imported on first use only
    return http_store


class HttpTraceStore:
    """A test HTTP trace store in Langfuse's public-API shape behind Basic auth
    (tests/http_store.py), serving the traces PgServer loads (same traces/seed/payload_bytes
    give the same generated traces), the framework exports when present, and the special
    traces `bench-30k` and `pii-1`.

        with HttpTraceStore() as store:
            req = urllib.request.Request(store.trace_url(store.trace_ids()[0]),
                                         headers={"Authorization": store.auth_header()})
            trace = json.load(urllib.request.urlopen(req))
            store.set(gzip=True, delay_seconds=2)
            assert all(r.header("authorization").startswith("Basic ")
                       for r in store.requests())

    Threads in this process by default (knobs and the request record are shared directly);
    subprocess=True runs `python3 tests/http_store.py` instead (for the benchmark: it keeps
    the GIL out of the measuring process); knobs then go through a control file the server
    re-reads per request and the record through a JSON-lines file, so the API is the same.
    """

    def __init__(self, traces: int = 50, seed: int = 1, payload_bytes: int = 8192,
                 shared_data: str | None = "default", user: str = "pk-lf-tracegate-test",
                 password: str | None = None, tls: bool = False,
                 tls_cert: str | None = None, tls_key: str | None = None,
                 subprocess: bool = False, host: str = "127.0.0.1", port: int = 0,
                 knobs: dict[str, Any] | None = None, record: bool = True,
                 idle_timeout: float = 60.0, verbose: bool = False,
                 ready_timeout: float = 60.0):
        hs = _http_store_module()
        self.traces = traces
        self.seed = seed
        self.payload_bytes = payload_bytes
        self.shared_data = hs.DEFAULT_SHARED_DATA if shared_data == "default" else shared_data
        self.user = user
        self.password = password or "sk-lf-" + secrets.token_hex(16)
        self.tls = bool(tls or tls_cert)
        self.cert_file = tls_cert or ""
        self.key_file = tls_key or ""
        self.subprocess = subprocess
        self.host = host
        self.port = port
        self.initial_knobs = hs.check_knobs(knobs or {})
        self.record = record
        self.idle_timeout = idle_timeout
        self.verbose = verbose
        self.ready_timeout = ready_timeout
        self.tmp = ""
        self.record_file = ""
        self.control_file = ""
        self.stderr_path = ""
        self.proc = None  # subprocess.Popen in subprocess mode
        self.exit_code: int | None = None  # the subprocess's, after stop()
        self._server = None  # http_store.StoreServer in-process
        self._record_offset = 0
        self._knobs = dict(hs.KNOB_DEFAULTS)
        self._knobs.update(self.initial_knobs)

    # -- lifecycle --

    def __enter__(self) -> "HttpTraceStore":
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def _setup_tmp(self) -> None:
        if self.tmp:
            return
        self.tmp = tempfile.mkdtemp(prefix="tg-http-store-")
        if self.tls and not self.cert_file:
            self.cert_file, self.key_file = make_self_signed_cert(self.tmp, "http-store")
        self.record_file = os.path.join(self.tmp, "requests.jsonl")
        self.control_file = os.path.join(self.tmp, "knobs.json")
        self.stderr_path = os.path.join(self.tmp, "stderr.log")

    def start(self) -> None:
        """Starts serving; after a stop() it comes back on the same port, knobs kept."""
        self._setup_tmp()
        hs = _http_store_module()
        if not self.subprocess:
            if self._server is None:
                self._server = hs.StoreServer(
                    self.data, self.user, self.password, host=self.host, port=self.port,
                    tls_cert=self.cert_file or None, tls_key=self.key_file or None,
                    record=self.record, knobs=self.initial_knobs,
                    idle_timeout=self.idle_timeout, verbose=self.verbose)
            self._server.start()
            self.port = self._server.port
            return
        self._write_control()
        if self.record:
            open(self.record_file, "ab").close()
        cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                            "http_store.py"),
               "--host", self.host, "--port", str(self.port), "--user", self.user,
               "--password", self.password, "--traces", str(self.traces),
               "--seed", str(self.seed), "--payload-bytes", str(self.payload_bytes),
               "--control", self.control_file, "--idle-timeout", str(self.idle_timeout)]
        cmd += ["--shared-data", self.shared_data] if self.shared_data else ["--no-shared-data"]
        if self.tls:
            cmd += ["--tls-cert", self.cert_file, "--tls-key", self.key_file]
        if self.record:
            cmd += ["--record", self.record_file]
        if self.verbose:
            cmd += ["--verbose"]
        err = open(self.stderr_path, "ab")
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=err, start_new_session=True)
        finally:
            err.close()
        line = self._read_listening_line()
        m = re.match(r"listening on (https?)://(.+):(\d+)$", line)
        if not m:
            raise RuntimeError(f"http_store printed {line!r}; stderr:\n{self.stderr_text()}")
        self.port = int(m.group(3))
        wait_for(lambda: port_accepts(self.host, self.port), 10, what="http store port")

    def _read_listening_line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + self.ready_timeout
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"http_store did not start within "
                                       f"{self.ready_timeout}s; stderr:\n{self.stderr_text()}")
                if sel.select(left):
                    chunk = os.read(self.proc.stdout.fileno(), 4096)
                    if not chunk:
                        raise RuntimeError(f"http_store exited with {self.proc.wait()}; "
                                           f"stderr:\n{self.stderr_text()}")
                    buf += chunk
        return buf.split(b"\n", 1)[0].decode(errors="replace").strip()

    def stop(self, timeout: float = 15.0) -> None:
        """Stops serving and cuts open connections (the port stays ours for start())."""
        if self._server is not None:
            self._server.stop()
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(10)
            self.exit_code = self.proc.returncode
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None

    def cleanup(self) -> None:
        self.stop()
        self._server = None
        if self.tmp and not KEEP_TMP:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = ""

    @property
    def running(self) -> bool:
        if self._server is not None:
            return self._server.running
        return self.proc is not None and self.proc.poll() is None

    def stderr_text(self) -> str:
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    # -- addresses and credentials --

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:41234 (no trailing slash)."""
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def ca_file(self) -> str:
        """Self-signed: the certificate is its own CA (curl --cacert, the gateway's ca_file)."""
        return self.cert_file

    def auth_header(self) -> str:
        """The Authorization header value the store accepts."""
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return "Basic " + token

    def trace_url(self, trace_id: str) -> str:
        return f"{self.url}/api/public/traces/{urllib.parse.quote(trace_id, safe='')}"

    def observations_url(self, trace_id: str, **params: Any) -> str:
        query = urllib.parse.urlencode({"traceId": trace_id, **params})
        return f"{self.url}/api/public/observations?{query}"

    def list_url(self, **params: Any) -> str:
        query = urllib.parse.urlencode(params)
        return f"{self.url}/api/public/traces" + (f"?{query}" if query else "")

    # -- the data --

    @property
    def data(self):
        """http_store.TraceData: the served traces (API shape), ids, manifest. Built in this
        process also in subprocess mode (deterministic, cached)."""
        hs = _http_store_module()
        return hs.load_data(self.traces, self.seed, self.payload_bytes, self.shared_data)

    def trace_ids(self) -> list[str]:
        """Every served trace id: generated, framework exports, then bench-30k and pii-1."""
        return self.data.ids()

    def trace(self, trace_id: str) -> dict:
        """The trace as GET /api/public/traces/{id} serves it (with no knobs set)."""
        return json.loads(self.data.bodies[trace_id])

    def trace_body(self, trace_id: str) -> bytes:
        return self.data.bodies[trace_id]

    @property
    def manifest(self) -> dict[str, list[dict]]:
        """{trace_id: [{kind, value}]} of planted synthetic PII (incl. pii-1)."""
        return self.data.manifest

    # -- knobs --

    def set(self, **knobs: Any) -> None:
        """Changes knobs at run time (see http_store.KNOB_DEFAULTS): delay_seconds, gzip,
        chunked, encoding_override, huge_bytes, lie_trace_id, status_override,
        close_after_response. Takes effect for the next request."""
        hs = _http_store_module()
        checked = hs.check_knobs(knobs)
        self._knobs.update(checked)
        if self._server is not None:
            self._server.set(**checked)
        elif self.subprocess:
            self._write_control()

    def reset(self) -> None:
        """All knobs back to their defaults (not to the constructor's knobs=)."""
        hs = _http_store_module()
        self._knobs = dict(hs.KNOB_DEFAULTS)
        if self._server is not None:
            self._server.reset()
        elif self.subprocess:
            self._write_control()

    def knobs(self) -> dict[str, Any]:
        return dict(self._knobs)

    def _write_control(self) -> None:
        if not self.control_file:
            return
        tmp = self.control_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self._knobs, f)
        os.replace(tmp, self.control_file)  # atomic: the server never reads half a file

    # -- recorded requests --

    def requests(self, path: str | None = None) -> list:
        """Recorded requests (http_store.RecordedRequest: method, target, path, query,
        version, headers [(name, value)...], body, client, connection, seq, tls, time;
        header(name), header_all(name), header_names()), oldest first; `path` filters on the
        path without query."""
        hs = _http_store_module()
        if self._server is not None:
            reqs = self._server.requests()
        elif self.record_file and os.path.exists(self.record_file):
            with open(self.record_file, "rb") as f:
                f.seek(self._record_offset)
                raw = f.read()
            raw = raw[:raw.rfind(b"\n") + 1]
            reqs = [hs.RecordedRequest.from_json(json.loads(line))
                    for line in raw.splitlines() if line.strip()]
        else:
            reqs = []
        return [r for r in reqs if path is None or r.path == path]

    def clear_requests(self) -> None:
        if self._server is not None:
            self._server.clear_requests()
        elif self.record_file and os.path.exists(self.record_file):
            with open(self.record_file, "rb") as f:
                raw = f.read()
            self._record_offset = raw.rfind(b"\n") + 1

    def wait_for_requests(self, count: int, path: str | None = None,
                          timeout: float = 10.0) -> list:
        return wait_for(lambda: (lambda r: r if len(r) >= count else None)(
            self.requests(path)), timeout, what=f"{count} request(s) at the http store")

    def open_connections(self) -> int | None:
        """Client connections open right now (in-process only; None in subprocess mode)."""
        return self._server.open_connections() if self._server is not None else None


# --- test fixtures: small local HTTP servers, class-level parts -----------------------------


def read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """A request's body, by its Content-Length (empty without one)."""
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


def reply(handler: BaseHTTPRequestHandler, status: int, body: Any = b"", *,
          headers: dict[str, str] | None = None,
          content_type: str | None = "application/json") -> None:
    """Answers one request: `body` as is if bytes, else as JSON. `headers` are sent first,
    then Content-Type (none if None) and Content-Length."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    if content_type is not None:
        handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class LocalHttpServer:
    """A small HTTP server on a free loopback port for a test's fake endpoint (an
    introspection endpoint, a webhook, a JWKS host): each request with one of `methods` is
    passed to `handle(handler)` on its own daemon thread, which answers it (reply()) or not
    at all. Quiet (no request log). Serving once constructed; close() or leaving the `with`
    stops it.

        with LocalHttpServer(lambda h: reply(h, 200, {"active": False})) as srv:
            url = srv.url + "/introspect"
    """

    def __init__(self, handle: Callable[[BaseHTTPRequestHandler], None],
                 methods: Iterable[str] = ("POST",), protocol_version: str = "HTTP/1.0"):
        attrs: dict[str, Any] = {"protocol_version": protocol_version,
                                 "log_message": lambda self, *args: None}
        for method in methods:
            attrs["do_" + method] = lambda self: handle(self)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                          type("Handler", (BaseHTTPRequestHandler,), attrs))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        self.port: int = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = False

    def __enter__(self) -> "LocalHttpServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._httpd.shutdown()
            self._httpd.server_close()


def start_class_fixtures(cls: Any, prefix: str) -> str:
    """Starts the class-level parts of test class `cls` (a unittest.TestCase): a fresh temp
    dir cls.tmp and an empty stack of parts (enter_class_fixture()). stop_class_fixtures()
    leaves the parts in reverse order, then removes cls.tmp; unittest calls it as a class
    cleanup too, so a setUpClass that raises after this still stops what it started."""
    cls._fixtures = contextlib.ExitStack()
    cls.tmp = tempfile.mkdtemp(prefix=prefix)
    cls._fixtures.callback(shutil.rmtree, cls.tmp, ignore_errors=True)
    cls.addClassCleanup(stop_class_fixtures, cls)
    return cls.tmp


def enter_class_fixture(cls: Any, part: Any) -> Any:
    """Enters `part` (a context manager) for the class; returns `part` itself."""
    cls.__dict__["_fixtures"].enter_context(part)
    return part


def stop_class_fixtures(cls: Any) -> None:
    stack = cls.__dict__.get("_fixtures")
    cls._fixtures = None
    if stack is not None:
        stack.close()


class ClassFixtures:
    """Mixin for a unittest.TestCase whose parts (PgServer, OidcProvider, Gateway, ...) live as
    long as the class:

        class MyTest(harness.ClassFixtures, unittest.TestCase):
            @classmethod
            def setUpClass(cls):
                cls.start_fixtures("tg-my-")      # makes cls.tmp
                cls.pg = cls.enter(PgServer())
                cls.gw = cls.enter(Gateway(Gateway.config_for(cls.pg, users={})))

    The parts are left in reverse order, then cls.tmp is removed: in tearDownClass, or, if
    setUpClass raises after start_fixtures(), in the class cleanup unittest runs then."""

    tmp: str = ""

    @classmethod
    def start_fixtures(cls, prefix: str) -> str:
        return start_class_fixtures(cls, prefix)

    @classmethod
    def enter(cls, part: Any) -> Any:
        """Enters `part` (a context manager) for the class; returns `part` itself."""
        return enter_class_fixture(cls, part)

    @classmethod
    def stop_fixtures(cls) -> None:
        stop_class_fixtures(cls)

    @classmethod
    def tearDownClass(cls) -> None:
        stop_class_fixtures(cls)
