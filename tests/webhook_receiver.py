"""A local webhook receiver for the approval tests: records every POST (path, headers, raw
body) and answers per path, so a test can check what tracegate delivered, recompute its
signature over the raw bytes, and make a hook fail to see the retry. Standard library only,
hermetic (port 0 on loopback), stopped by the context manager.

    with WebhookReceiver(fail_first={"/flaky"}) as hooks:
        url = hooks.url + "/hook"
        ...
        delivery = hooks.wait_for(lambda d: d.event == "approval.requested", path="/hook")
        assert delivery.signature_ok(secret)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from harness import wait_for


@dataclass
class Delivery:
    """One POST as received, and what the receiver answered."""

    path: str
    headers: dict[str, str]  # lower-cased names
    raw: bytes
    status: int
    json: Any = field(default=None)

    @property
    def event(self) -> str | None:
        return self.headers.get("x-tracegate-event")

    @property
    def delivery_id(self) -> str | None:
        return self.headers.get("x-tracegate-delivery")

    @property
    def data(self) -> dict:
        """The generic body's "data" (the approval), or {}."""
        if isinstance(self.json, dict) and isinstance(self.json.get("data"), dict):
            return self.json["data"]
        return {}

    def signature_parts(self) -> tuple[int, str]:
        """(t, v1) of X-Tracegate-Signature: "t=<unix seconds>,v1=<hex>"."""
        parts = dict(p.split("=", 1) for p in self.headers["x-tracegate-signature"].split(","))
        return int(parts["t"]), parts["v1"]

    def expected_signature(self, secret: str) -> str:
        t, _ = self.signature_parts()
        return hmac.new(secret.encode(), f"{t}.".encode() + self.raw, hashlib.sha256).hexdigest()

    def signature_ok(self, secret: str) -> bool:
        _, v1 = self.signature_parts()
        return hmac.compare_digest(v1, self.expected_signature(secret))


class WebhookReceiver:
    """Records POSTs on any path. Paths in `fail_first` answer 500 to the first attempt of each
    delivery (by X-Tracegate-Delivery) and 200 afterwards; every other path answers 200."""

    def __init__(self, fail_first: set[str] | None = None):
        self.fail_first = set(fail_first or ())
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        self._failed_once: set[tuple[str, str]] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "WebhookReceiver":
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = urllib.parse.urlsplit(self.path).path
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = outer._status_for(path, headers.get("x-tracegate-delivery", ""))
                try:
                    parsed = json.loads(raw)
                except ValueError:
                    parsed = None
                with outer._lock:
                    outer._deliveries.append(Delivery(path, headers, raw, status, parsed))
                body = b"{}"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # quiet
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def _status_for(self, path: str, delivery_id: str) -> int:
        if path not in self.fail_first:
            return 200
        with self._lock:
            if (path, delivery_id) in self._failed_once:
                return 200
            self._failed_once.add((path, delivery_id))
            return 500

    @property
    def url(self) -> str:
        assert self._httpd is not None, "not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def deliveries(self, path: str | None = None) -> list[Delivery]:
        with self._lock:
            return [d for d in self._deliveries if path is None or d.path == path]

    def wait_for(self, match: Callable[[Delivery], bool], path: str | None = None,
                 count: int = 1, timeout: float = 30.0, what: str = "a webhook delivery"
                 ) -> list[Delivery]:
        """Polls until `count` recorded deliveries (on `path`) satisfy `match`; returns them."""
        def found() -> list[Delivery] | None:
            hits = [d for d in self.deliveries(path) if match(d)]
            return hits if len(hits) >= count else None

        return wait_for(found, timeout, interval=0.05, what=what)
