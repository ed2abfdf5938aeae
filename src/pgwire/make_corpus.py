#!/usr/bin/env python3
"""Writes the seed corpora for pgwire's fuzz targets (framing, messages, scram).

Run from anywhere: python3 src/pgwire/make_corpus.py
It rewrites only the seed_* files it owns in framing_corpus/, messages_corpus/ and
scram_corpus/ next to this script; crash reproducers committed there are left alone.
Standard library only.
"""

import base64
import hashlib
import hmac
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# ---- Message encoders -------------------------------------------------------------------


def i16(v):
    return struct.pack("!h", v)


def u16(v):
    return struct.pack("!H", v)


def i32(v):
    return struct.pack("!i", v)


def u32(v):
    return struct.pack("!I", v)


def cstr(s):
    if isinstance(s, str):
        s = s.encode()
    return s + b"\0"


def msg(t, body=b""):
    return t.encode() + u32(len(body) + 4) + body


def untyped(body):
    return u32(len(body) + 4) + body


def startup(params):
    body = u32(196608)
    for k, v in params:
        body += cstr(k) + cstr(v)
    return untyped(body + b"\0")


PSQL_STARTUP = startup([
    ("user", "g_7f3a9c"),
    ("database", "traces"),
    ("application_name", "psql"),
    ("client_encoding", "UTF8"),
])
JDBC_STARTUP = startup([
    ("user", "g_jdbc"), ("database", "traces"), ("client_encoding", "UTF8"),
    ("DateStyle", "ISO"), ("TimeZone", "UTC"), ("extra_float_digits", "2"),
])
SSL_REQUEST = untyped(u32(80877103))
GSSENC_REQUEST = untyped(u32(80877104))
CANCEL_REQUEST = untyped(u32(80877102) + i32(4242) + i32(0x5EC2E7))


def query(sql):
    return msg("Q", cstr(sql))


def parse(name, sql, oids=()):
    return msg("P", cstr(name) + cstr(sql) + u16(len(oids)) + b"".join(u32(o) for o in oids))


def bind(portal, stmt, formats, params, result_formats):
    body = cstr(portal) + cstr(stmt) + u16(len(formats)) + b"".join(i16(f) for f in formats)
    body += u16(len(params))
    for p in params:
        body += i32(-1) if p is None else i32(len(p)) + p
    body += u16(len(result_formats)) + b"".join(i16(f) for f in result_formats)
    return msg("B", body)


def describe(kind, name):
    return msg("D", kind.encode() + cstr(name))


def close(kind, name):
    return msg("C", kind.encode() + cstr(name))


def execute(portal, rows=0):
    return msg("E", cstr(portal) + i32(rows))


SYNC, FLUSH, TERMINATE, COPY_DONE = msg("S"), msg("H"), msg("X"), msg("c")


def auth(code, extra=b""):
    return msg("R", i32(code) + extra)


def param_status(k, v):
    return msg("S", cstr(k) + cstr(v))


def row_description(fields):
    body = u16(len(fields))
    for name, type_oid, size in fields:
        body += cstr(name) + u32(16384) + i16(1) + u32(type_oid) + i16(size) + i32(-1) + i16(0)
    return msg("T", body)


def data_row(values):
    body = u16(len(values))
    for v in values:
        body += i32(-1) if v is None else i32(len(v)) + v
    return msg("D", body)


def error(code, text, t="E", severity="ERROR"):
    fields = [("S", severity), ("V", severity), ("C", code), ("M", text)]
    return msg(t, b"".join(k.encode() + cstr(v) for k, v in fields) + b"\0")


def ready(status="I"):
    return msg("Z", status.encode())


def command_complete(tag):
    return msg("C", cstr(tag))


# ---- Scram ----------------------------------------------------------------------------------

CLIENT_NONCE = base64.b64encode(bytes(range(18))).decode()  # the fuzz target's fixed nonce
SALT = b"salt"


def scram_values(password, server_nonce_suffix, iterations=4096, bare_user="", extension=""):
    nonce = CLIENT_NONCE + server_nonce_suffix
    server_first = "r=%s,s=%s,i=%d" % (nonce, base64.b64encode(SALT).decode(), iterations)
    server_first += extension
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), SALT, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored = hashlib.sha256(client_key).digest()
    without_proof = "c=biws,r=" + nonce
    auth_message = ("n=%s,r=%s,%s,%s" % (bare_user, CLIENT_NONCE, server_first,
                                         without_proof)).encode()
    signature = hmac.new(stored, auth_message, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    server_sig = hmac.new(server_key, auth_message, hashlib.sha256).digest()
    return (server_first, without_proof + ",p=" + base64.b64encode(proof).decode(),
            "v=" + base64.b64encode(server_sig).decode())


def verifier(password, salt, iterations):
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    b64 = lambda b: base64.b64encode(b).decode()
    return "SCRAM-SHA-256$%d:%s$%s:%s" % (
        iterations, b64(salt), b64(hashlib.sha256(client_key).digest()),
        b64(hmac.new(salted, b"Server Key", hashlib.sha256).digest()))


# ---- Seeds ----------------------------------------------------------------------------------

EXTENDED = (parse("", "SELECT id, name FROM traces WHERE id = $1", [23]) +
            bind("", "", [0], [b"42"], [0]) + describe("P", "") + execute("", 0) + SYNC)
SASL_INITIAL = msg("p", cstr("SCRAM-SHA-256") + i32(len(b"n,,n=,r=abc")) + b"n,,n=,r=abc")
FRONTEND_STREAMS = {
    "sasl_then_query": SASL_INITIAL + query("SELECT 1;") + TERMINATE,
    "extended": EXTENDED,
    "prepared_named": (parse("s1", "SELECT $1::int, $2::text", [23, 25]) +
                       bind("p1", "s1", [1, 0], [b"\x00\x00\x00\x07", None], [1]) +
                       describe("S", "s1") + execute("p1", 100) + close("P", "p1") +
                       close("S", "s1") + SYNC + FLUSH),
    "copy_in": (query("COPY t FROM STDIN") + msg("d", b"1\tfoo\n2\tbar\n") + COPY_DONE),
    "copy_fail": msg("d", b"1\t") + msg("f", cstr("client aborted")),
    "function_call": msg("F", u32(1598) + u16(1) + i16(1) + u16(1) + i32(4) + b"\0\0\0\1" +
                         i16(1)),
    "password": msg("p", cstr("md5bb41a296aab6baccb36ff243a562abff")),
    "sasl_response": msg("p", b"c=biws,r=abc,p=" + b"A" * 44),
    "multi_statement": query("BEGIN; SELECT * FROM traces LIMIT 10; COMMIT;"),
}
BACKEND_STREAMS = {
    "auth_sasl": (auth(10, cstr("SCRAM-SHA-256-PLUS") + cstr("SCRAM-SHA-256") + b"\0") +
                  auth(11, b"r=abc,s=c2FsdA==,i=4096") + auth(12, b"v=abc=") + auth(0)),
    "auth_md5": auth(5, b"\x01\x02\x03\x04"),
    "auth_cleartext": auth(3),
    "startup_reply": (auth(0) + param_status("server_version", "16.2") +
                      param_status("client_encoding", "UTF8") +
                      msg("K", i32(4242) + i32(0x5EC2E7)) + ready("I")),
    "select_result": (row_description([("id", 23, 4), ("name", 25, -1)]) +
                      data_row([b"1", b"alice"]) + data_row([b"2", None]) +
                      command_complete("SELECT 2") + ready("I")),
    "extended_result": (msg("1") + msg("2") + msg("t", u16(1) + u32(23)) + msg("n") +
                        command_complete("UPDATE 3") + msg("s") + msg("3") + ready("T")),
    "error": error("42501", "permission denied for table traces") + ready("E"),
    "notice": error("01000", "some notice", t="N", severity="NOTICE") + msg("I"),
    "notify": msg("A", i32(77) + cstr("chan") + cstr("payload")),
    "copy_out": (msg("H", b"\0" + u16(2) + i16(0) + i16(0)) + msg("d", b"1\tx\n") + msg("c") +
                 command_complete("COPY 1")),
    "copy_in_binary": msg("G", b"\1" + u16(1) + i16(1)) + msg("W", b"\0" + u16(0)),
    "function_result": msg("V", i32(4) + b"\0\0\0\1") + msg("V", i32(-1)),
    "negotiate": msg("v", i32(0) + i32(1) + cstr("_pq_.compression")),
}
MALFORMED = {
    "huge_length": b"Q\xff\xff\xff\xff",
    "length_2_31": b"d\x80\x00\x00\x00",
    "short_length": b"Q\x00\x00\x00\x02",
    "sync_with_body": msg("S", b"x"),
    "query_no_nul": msg("Q", b"SELECT 1"),
    "bind_huge_count": msg("B", cstr("") + cstr("") + u16(0) + u16(32767) + b"ab"),
    "bind_param_too_long": msg("B", cstr("") + cstr("") + u16(0) + u16(1) + i32(1 << 20) + b"x"),
    "datarow_negative_len": msg("D", u16(1) + i32(-7)),
    "unknown_type": b"\x00\x00\x00\x00\x04",
    "startup_too_short": u32(4) + b"\0\0\0\0",
    "startup_protocol2": untyped(u32(0x20000) + cstr("user") + cstr("u") + b"\0"),
    "startup_no_user": startup([("database", "x")]),
}


def write_corpus(name, seeds):
    directory = os.path.join(HERE, name + "_corpus")
    os.makedirs(directory, exist_ok=True)
    for old in os.listdir(directory):
        if old.startswith("seed_"):
            os.remove(os.path.join(directory, old))
    for seed_name, data in sorted(seeds.items()):
        with open(os.path.join(directory, "seed_" + seed_name), "wb") as f:
            f.write(data)
    print("%s_corpus: %d seeds" % (name, len(seeds)))


def main():
    framing = {
        "psql_startup": PSQL_STARTUP + query("SELECT 1;"),
        "jdbc_startup": JDBC_STARTUP + EXTENDED,
        "ssl_request": SSL_REQUEST,
        "gssenc_request": GSSENC_REQUEST,
        "cancel_request": CANCEL_REQUEST,
        "partial_header": b"Q\x00\x00",
        "partial_body": query("SELECT 1")[:-3],
    }
    for k, v in FRONTEND_STREAMS.items():
        framing["frontend_" + k] = v
    for k, v in BACKEND_STREAMS.items():
        framing["backend_" + k] = v
    for k, v in MALFORMED.items():
        framing["malformed_" + k] = v
    write_corpus("framing", framing)

    # messages: first byte bit 0 = backend, bit 1 = frontend stream starts with a startup.
    messages = {
        "startup_psql": b"\x02" + PSQL_STARTUP + query("SELECT 1;"),
        "startup_ssl": b"\x02" + SSL_REQUEST,
        "startup_gssenc": b"\x02" + GSSENC_REQUEST,
        "startup_cancel": b"\x02" + CANCEL_REQUEST,
        "startup_jdbc": b"\x02" + JDBC_STARTUP,
        "startup_protocol2": b"\x02" + MALFORMED["startup_protocol2"],
        "startup_no_user": b"\x02" + MALFORMED["startup_no_user"],
    }
    for k, v in FRONTEND_STREAMS.items():
        messages["frontend_" + k] = b"\x00" + v
    for k, v in BACKEND_STREAMS.items():
        messages["backend_" + k] = b"\x01" + v
    for k in ("query_no_nul", "bind_huge_count", "bind_param_too_long", "sync_with_body"):
        messages["malformed_" + k] = b"\x00" + MALFORMED[k]
    messages["malformed_datarow_negative_len"] = b"\x01" + MALFORMED["datarow_negative_len"]
    write_corpus("messages", messages)

    server_first, client_final, server_final = scram_values("pencil", "srvnonce")
    pg_server_nonce = base64.b64encode(bytes(range(18))).decode()
    _, pg_client_final, _ = scram_values("pencil", pg_server_nonce)
    ext_first, _, ext_final = scram_values("pencil", "srvnonce", extension=",x=ext")
    scram = {
        # 0: server fed client messages (ours: nonce "abc" and the PG-style client final).
        "server_first_only": b"\x00n,,n=,r=" + CLIENT_NONCE.encode(),
        "server_exchange": (b"\x00n,,n=,r=" + CLIENT_NONCE.encode() + b"\n" +
                            pg_client_final.encode()),
        "server_y_flag": b"\x00y,,n=user,r=abc\nc=eSws,r=abc" + pg_server_nonce.encode() +
                         b",p=" + base64.b64encode(b"x" * 32),
        "server_channel_binding": b"\x00p=tls-server-end-point,,n=,r=abc\nc=biws",
        "server_authzid": b"\x00n,a=admin,n=,r=abc",
        "server_bad_proof": (b"\x00n,,n=,r=abc\nc=biws,r=abc" + pg_server_nonce.encode() +
                             b",p=AAAA"),
        # 1: client fed server messages.
        "client_exchange": b"\x01" + server_first.encode() + b"\n" + server_final.encode(),
        "client_bad_signature": b"\x01" + server_first.encode() + b"\nv=" +
                                base64.b64encode(b"\0" * 32),
        "client_server_error": b"\x01" + server_first.encode() + b"\ne=invalid-proof",
        "client_low_iterations": (b"\x01r=" + CLIENT_NONCE.encode() +
                                  b"x,s=c2FsdA==,i=1024\nv=x"),
        "client_foreign_nonce": b"\x01r=someoneelse,s=c2FsdA==,i=4096",
        "client_extension": b"\x01" + ext_first.encode() + b"\n" + ext_final.encode(),
        # 2: verifiers.
        "verifier_pencil": b"\x02" + verifier("pencil", base64.b64decode(
            "W22ZaJ0SNY7soEsUEjb6gQ=="), 4096).encode(),
        "verifier_other": b"\x02" + verifier("s3cret", b"sixteen byte slt", 10000).encode(),
        "verifier_truncated": b"\x02SCRAM-SHA-256$4096:c2FsdA==$Zm9v",
        "verifier_md5": b"\x02md5bb41a296aab6baccb36ff243a562abff",
        # 3: base64.
        "base64_padded": b"\x03Zm9vYg==",
        "base64_noncanonical": b"\x03Zh==",
        "base64_garbage": b"\x03Zm 9v",
        # 4: full exchange with the rest as password.
        "exchange_ascii": b"\x04correct horse battery staple",
        "exchange_binary": b"\x04\x00\xff\n,=",
    }
    write_corpus("scram", scram)
    # The client exchange seed must be self-consistent: same values via the client's path.
    assert client_final.startswith("c=biws,r=" + CLIENT_NONCE + "srvnonce,p=")


if __name__ == "__main__":
    main()
