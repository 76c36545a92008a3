"""A Slack-like Web API on a loopback port, checking what Slack would check.

slack-sdk is pointed at it through ``base_url``. It checks the bearer token, enforces the
Block Kit and text limits (answering ``invalid_blocks`` / ``msg_too_long`` as Slack does),
stores posted messages with their metadata, and serves ``conversations.history``,
``conversations.replies`` and ``conversations.list``. Failures on demand: a queued
answer (a 429 with ``Retry-After``, ``channel_not_found``, a 503...) is served to the next
request. Every raw request body is kept so tests can assert what never left the process.
A message's ``ts`` is the time of ``clock`` (Unix seconds): the real clock, as Slack's, or
the clock of the code under test when that runs on a fixed one.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

Answer = tuple[int, dict[str, Any], dict[str, str]]


@dataclass
class FakeSlack:
    token: str = "xoxb-test-token"
    channels: dict[str, str] = field(
        default_factory=lambda: {
            "onc-2101-imaging": "C0ONC2101",
            "ct-techs": "C0CTTECHS",
            "ct3-console": "C0CT3CON",
        }
    )
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    queued: list[Answer] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    clock: Callable[[], float] = time.time  # real clock by default: Slack stamps ts with its own time
    _last: float = 0.0

    def __post_init__(self) -> None:
        for channel_id in self.channels.values():
            self.messages.setdefault(channel_id, [])

    # -- failures on demand ------------------------------------------------------------------

    def rate_limit(self, retry_after: int, times: int = 1) -> None:
        for _ in range(times):
            self.queued.append(
                (429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)})
            )

    def fail(self, error: str, times: int = 1) -> None:
        self.queued.extend([(200, {"ok": False, "error": error}, {})] * times)

    def server_error(self, status: int = 503) -> None:
        self.queued.append((status, {"ok": False, "error": "service_unavailable"}, {}))

    # -- what was posted ----------------------------------------------------------------------

    def posted(self, channel_id: str) -> list[dict[str, Any]]:
        return self.messages[channel_id]

    def all_raw(self) -> str:
        return b"\n".join(self.raw).decode("utf-8")

    # -- the API ----------------------------------------------------------------------------

    def handle(self, method: str, auth: str, params: dict[str, Any]) -> Answer:
        with self.lock:
            self.calls.append(method)
            if self.queued:
                return self.queued.pop(0)
            if not auth:
                return 200, {"ok": False, "error": "not_authed"}, {}
            if auth != f"Bearer {self.token}":
                return 200, {"ok": False, "error": "invalid_auth"}, {}
            handler = getattr(self, "api_" + method.replace(".", "_"), None)
            if handler is None:
                return 200, {"ok": False, "error": "unknown_method"}, {}
            result: dict[str, Any] = handler(params)
            return 200, result, {}

    def _channel(self, value: str, *, names: bool) -> str | None:
        if value in self.messages:
            return value
        if names:
            return self.channels.get(value.lstrip("#"))
        return None

    @staticmethod
    def _check_layout(params: dict[str, Any]) -> str | None:
        text = params.get("text") or ""
        blocks = params.get("blocks") or []
        if not text and not blocks:
            return "no_text"
        if len(text) > 40_000:
            return "msg_too_long"
        if len(blocks) > 50:
            return "invalid_blocks"
        for block in blocks:
            kind = block.get("type")
            if kind == "header" and len(block["text"]["text"]) > 150:
                return "invalid_blocks"
            if kind == "section":
                if "text" in block and len(block["text"]["text"]) > 3000:
                    return "invalid_blocks"
                fields = block.get("fields") or []
                if len(fields) > 10 or any(len(f["text"]) > 2000 for f in fields):
                    return "invalid_blocks"
                if "text" not in block and not fields:
                    return "invalid_blocks"
            if kind == "context" and not 1 <= len(block.get("elements") or []) <= 10:
                return "invalid_blocks"
        metadata = params.get("metadata")
        if metadata is not None and not (
            isinstance(metadata, dict)
            and metadata.get("event_type")
            and isinstance(metadata.get("event_payload"), dict)
        ):
            return "invalid_metadata_format"
        return None

    def api_chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(str(params.get("channel", "")), names=True)
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        problem = self._check_layout(params)
        if problem:
            return {"ok": False, "error": problem}
        self._last = max(self.clock(), self._last + 0.000001)  # like Slack: epoch seconds, unique per channel
        ts = f"{self._last:.6f}"
        message = {
            "type": "message",
            "ts": ts,
            "text": params.get("text", ""),
            "blocks": params.get("blocks", []),
            "metadata": params.get("metadata"),
            "thread_ts": params.get("thread_ts"),
            "reply_broadcast": bool(params.get("reply_broadcast")),
        }
        self.messages[channel].append(message)
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def api_chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(str(params.get("channel", "")), names=False)
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        problem = self._check_layout(params)
        if problem:
            return {"ok": False, "error": problem}
        for message in self.messages[channel]:
            if message["ts"] == params.get("ts"):
                message.update(text=params.get("text", ""), blocks=params.get("blocks", []), edited=True)
                if params.get("metadata") is not None:
                    message["metadata"] = params["metadata"]
                return {"ok": True, "channel": channel, "ts": message["ts"]}
        return {"ok": False, "error": "message_not_found"}

    @staticmethod
    def _visible(message: dict[str, Any], with_metadata: bool) -> dict[str, Any]:
        shown = {k: v for k, v in message.items() if v is not None and k != "metadata"}
        if with_metadata and message.get("metadata"):
            shown["metadata"] = message["metadata"]
        return shown

    def _page(self, found: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        start = int(params.get("cursor") or 0)
        limit = int(params.get("limit") or 100)
        with_metadata = str(params.get("include_all_metadata", "")).lower() in ("1", "true")
        page = [self._visible(m, with_metadata) for m in found[start : start + limit]]
        more = start + limit < len(found)
        return {
            "ok": True,
            "messages": page,
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def api_conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(str(params.get("channel", "")), names=False)  # ids only, like Slack
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        oldest = float(params.get("oldest") or 0)
        top = [
            m
            for m in reversed(self.messages[channel])
            if (m["thread_ts"] in (None, m["ts"]) or m["reply_broadcast"]) and float(m["ts"]) >= oldest
        ]
        return self._page(top, params)

    def api_conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(str(params.get("channel", "")), names=False)
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        root = params.get("ts")
        thread = [m for m in self.messages[channel] if m["ts"] == root or m["thread_ts"] == root]
        if not thread:
            return {"ok": False, "error": "thread_not_found"}
        return self._page(thread, params)

    def api_conversations_list(self, params: dict[str, Any]) -> dict[str, Any]:
        channels = [{"id": cid, "name": name} for name, cid in self.channels.items()]
        return {"ok": True, "channels": channels, "response_metadata": {"next_cursor": ""}}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _answer(self, params: dict[str, Any], body: bytes) -> None:
        fake = self.server.fake
        fake.raw.append(self.path.encode("utf-8") + b" " + body)
        method = urlparse(self.path).path.rsplit("/", 1)[-1]
        status, payload, headers = fake.handle(method, self.headers.get("Authorization", ""), params)
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
        self._answer(query, b"")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Type", "").startswith("application/json"):
            params = json.loads(body or b"{}")
        else:
            params = {k: v[0] for k, v in parse_qs(body.decode("utf-8")).items()}
        self._answer(params, body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeSlack) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


class SlackServer:
    """Runs a :class:`FakeSlack` on ``127.0.0.1:0``; ``base_url`` is what slack-sdk gets."""

    def __init__(self, fake: FakeSlack | None = None) -> None:
        self.fake = fake or FakeSlack()
        self.httpd = _Server(self.fake)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/api/"

    def __enter__(self) -> SlackServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
