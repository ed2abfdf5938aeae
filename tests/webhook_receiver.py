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
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable

from harness import LocalHttpServer, read_body, reply, wait_for


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
        self._server: LocalHttpServer | None = None

    def __enter__(self) -> "WebhookReceiver":
        self._server = LocalHttpServer(self._post, protocol_version="HTTP/1.1")
        return self

    def _post(self, handler: BaseHTTPRequestHandler) -> None:
        raw = read_body(handler)
        path = urllib.parse.urlsplit(handler.path).path
        headers = {k.lower(): v for k, v in handler.headers.items()}
        status = self._status_for(path, headers.get("x-tracegate-delivery", ""))
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        with self._lock:
            self._deliveries.append(Delivery(path, headers, raw, status, parsed))
        reply(handler, status, b"{}")

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

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
        assert self._server is not None, "not started"
        return self._server.url

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
