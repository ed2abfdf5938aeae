#!/usr/bin/env python3
"""Requests just-in-time grants from tracegate's API, as an agent does: POST /v1/grants with
a bearer token over HTTPS (the gateway's certificate verified), one keep-alive connection.

Prints one line per grant, "<postgres user> <password>", in request order; nothing else on
stdout (the passwords are one-time secrets: callers read them, never log them). The token is
read from a file, never taken on the command line. Exit 1 on the first failure, with the
status and the start of the response body on stderr. Standard library only.

    grants.py --api-url https://127.0.0.1:PORT --cacert gateway.crt --token-file token \\
              --connection traces-pg --trace-id ID [--reason TEXT] [--count N]
"""

from __future__ import annotations

import argparse
import http.client
import json
import ssl
import sys
import urllib.parse


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--api-url", required=True)
    ap.add_argument("--cacert", required=True)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--connection", required=True)
    ap.add_argument("--trace-id", required=True)
    ap.add_argument("--reason", default="benchmark")
    ap.add_argument("--count", type=int, default=1)
    args = ap.parse_args()

    with open(args.token_file, encoding="utf-8") as f:
        token = f.read().strip()
    url = urllib.parse.urlsplit(args.api_url)
    ctx = ssl.create_default_context(cafile=args.cacert)
    conn = http.client.HTTPSConnection(url.hostname, url.port or 443, context=ctx, timeout=10)
    body = json.dumps({"connection": args.connection, "trace_id": args.trace_id,
                       "reason": args.reason})
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    out = []
    for _ in range(args.count):
        try:
            conn.request("POST", "/v1/grants", body=body, headers=headers)
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as e:
            print(f"POST /v1/grants: {e}", file=sys.stderr)
            return 1
        if resp.status != 201:
            print(f"POST /v1/grants: HTTP {resp.status}: {text[:300]}", file=sys.stderr)
            return 1
        try:
            pg = json.loads(text).get("postgres") or {}
        except ValueError:
            pg = {}
        if not pg.get("user") or not pg.get("password"):
            print("POST /v1/grants: 201 without a postgres credential", file=sys.stderr)
            return 1
        out.append(f"{pg['user']} {pg['password']}")
    conn.close()
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
