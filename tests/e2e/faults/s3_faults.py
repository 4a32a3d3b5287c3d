"""An HTTP proxy in front of the S3 server that holds or refuses chosen requests, for one service.

Each service under test reads its blobs through its own proxy, so a test can stop exactly
that service at a known point of a job: `hold(text)` parks every request whose path holds
`text` until released (the service is then in the middle of its job, waiting on its blob
store), `refuse(text)` answers them 403 AccessDenied (minio raises at once; it retries
only 5xx). Everything else passes through unchanged (moto checks no signatures).
"""
from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate"}
DENIED = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
          b"<Message>refused by the fault proxy</Message></Error>")


@dataclass
class Rule:
    text: str
    action: str  # "hold" or "refuse"
    hits: int = 0
    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()

    def wait_arrived(self, seconds: float) -> None:
        if not self.arrived.wait(seconds):
            raise AssertionError(f"no request for {self.text!r} reached the proxy in {seconds} s")


class FaultProxy:
    def __init__(self, upstream: str, name: str):
        self.upstream, self.name = upstream, name
        self.rules: list[Rule] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name=f"s3-proxy-{name}", daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> FaultProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.clear()
        self.server.shutdown()
        self.server.server_close()

    def hold(self, text: str) -> Rule:
        return self._add(Rule(text, "hold"))

    def refuse(self, text: str) -> Rule:
        return self._add(Rule(text, "refuse"))

    def _add(self, rule: Rule) -> Rule:
        with self.lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self.lock:
            rules, self.rules = self.rules, []
        for rule in rules:
            rule.release()

    def match(self, path: str) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.text in path:
                    rule.hits += 1
                    return rule
        return None


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet: moto's own log has the requests
            pass

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            rule = proxy.match(self.path)
            if rule is not None:
                rule.arrived.set()
                if rule.action == "refuse":
                    self._answer(403, {"Content-Type": "application/xml"}, DENIED)
                    return
                rule.released.wait()
            status, headers, data = _forward(proxy.upstream, self.command, self.path, self.headers, body)
            self._answer(status, headers, data)

        def _answer(self, status: int, headers: dict[str, str], data: bytes) -> None:
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
            except OSError:
                self.close_connection = True  # the client died while we held its request

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

    return Handler


def _forward(upstream: str, method: str, path: str, headers, body: bytes | None) -> tuple[int, dict, bytes]:
    host, port = upstream.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        sent = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        data = response.read()
        kept = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP | {"content-length"}}
        if method == "HEAD":  # no body, but the client reads the object's size from this header
            kept["Content-Length"] = response.getheader("Content-Length") or "0"
        return response.status, kept, data
    finally:
        connection.close()
