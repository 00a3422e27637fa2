"""A fake Anthropic Messages API server (POST /v1/messages), scripted like the OpenAI one."""
from __future__ import annotations

import asyncio
import itertools
import sys
from collections import deque
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fake_servers.http import FakeHTTPServer, Reply, Request  # noqa: E402
from fake_servers.openai_server import Hang  # noqa: E402

_ids = itertools.count(1)


def text(value: str) -> dict:
    return {"type": "text", "text": value}


def tool_use(name: str, input: Any, block_id: str | None = None) -> dict:
    return {"type": "tool_use", "id": block_id or f"toolu_{next(_ids):04d}", "name": name, "input": input}


def thinking(value: str, signature: str = "sig-abc") -> dict:
    return {"type": "thinking", "thinking": value, "signature": signature}


def message(*blocks: dict, input_tokens: int = 20, output_tokens: int = 5, cache_read: int = 0,
            cache_creation: int = 0, stop_reason: str | None = None, model: str = "claude-test") -> Reply:
    has_tool = any(b["type"] == "tool_use" for b in blocks)
    return Reply(200, {
        "id": f"msg_{next(_ids):04d}", "type": "message", "role": "assistant", "model": model,
        "content": list(blocks), "stop_reason": stop_reason or ("tool_use" if has_tool else "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                  "cache_read_input_tokens": cache_read, "cache_creation_input_tokens": cache_creation},
    })


def error(status: int, kind: str = "api_error", message: str = "error", *, retry_after: str | None = None) -> Reply:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    return Reply(status, {"type": "error", "error": {"type": kind, "message": message}}, headers)


class FakeAnthropicServer(FakeHTTPServer):
    def __init__(self, default: Callable[[Request], Reply] | None = None):
        super().__init__(self._handle)
        self.script: deque = deque()
        self.requests: list[Request] = []
        self.default = default or (lambda request: message(text("plain answer")))

    def bodies(self) -> list[dict]:
        return [r.json() for r in self.requests]

    async def _handle(self, request: Request) -> Reply:
        if not request.path.startswith("/v1/messages"):
            return error(404, "not_found_error", f"no route {request.path}")
        self.requests.append(request)
        item = self.script.popleft() if self.script else self.default
        if isinstance(item, Hang):
            await asyncio.sleep(item.seconds)
            return item.then or message(text("late"))
        if callable(item):
            return item(request)
        return item
