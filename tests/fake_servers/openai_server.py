"""A fake OpenAI-compatible chat-completions server (the wire format vLLM, SGLang, Ollama and llama.cpp speak).

Replies are scripted: `server.script.append(...)` with a `Reply`, a `Hang(seconds)` or a callable
`(request) -> Reply`; when the script is empty, `default` answers (by default: a plain text reply). Every request
is kept in `server.requests`. Run as a script it serves with a fixed delay, for the benchmark:
    python tests/fake_servers/openai_server.py --delay 0.2
"""
from __future__ import annotations

import asyncio
import itertools
import json
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fake_servers.http import FakeHTTPServer, Reply, Request  # noqa: E402

_ids = itertools.count(1)


@dataclass
class Hang:
    """Answer only after `seconds` (longer than the client's timeout makes a timeout)."""

    seconds: float
    then: Reply | None = None


def tool_call(name: str, arguments: dict | str, call_id: str | None = None) -> dict:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id or f"call_{next(_ids)}", "type": "function",
            "function": {"name": name, "arguments": args}}


def completion(content: str | None = None, tool_calls: list[dict] | None = None, *, model: str = "fake-model",
               prompt_tokens: int = 11, completion_tokens: int = 7, cached_tokens: int | None = None,
               finish_reason: str | None = None, extra_message: dict | None = None) -> Reply:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    message.update(extra_message or {})
    usage: dict[str, Any] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                             "total_tokens": prompt_tokens + completion_tokens}
    if cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return Reply(200, {
        "id": f"chatcmpl-{next(_ids)}", "object": "chat.completion", "created": 1700000000, "model": model,
        "choices": [{"index": 0, "message": message,
                     "finish_reason": finish_reason or ("tool_calls" if tool_calls else "stop")}],
        "usage": usage,
    })


def error(status: int, message: str = "error", *, retry_after: str | None = None,
          code: str | None = None) -> Reply:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    return Reply(status, {"error": {"message": message, "type": "error", "code": code}}, headers)


def malformed() -> Reply:
    return Reply(200, '{"id": "chatcmpl-x", "choices": [', {"content-type": "application/json"})


class FakeOpenAIServer(FakeHTTPServer):
    def __init__(self, default: Callable[[Request], Reply] | None = None, delay_s: float = 0.0):
        super().__init__(self._handle)
        self.script: deque = deque()
        self.requests: list[Request] = []
        self.default = default or (lambda request: completion("plain answer"))
        self.delay_s = delay_s

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def bodies(self) -> list[dict]:
        return [r.json() for r in self.requests if r.path.endswith("/chat/completions")]

    async def _handle(self, request: Request) -> Reply:
        if request.path.endswith("/models"):
            return Reply(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
        if not request.path.endswith("/chat/completions"):
            return error(404, f"no route {request.path}")
        self.requests.append(request)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        item = self.script.popleft() if self.script else self.default
        if isinstance(item, Hang):
            await asyncio.sleep(item.seconds)
            return item.then or completion("late answer")
        if callable(item):
            return item(request)
        return item


if __name__ == "__main__":  # the benchmark's server, in its own process
    import argparse
    import signal
    import threading

    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    def finish_after_one_tool(request: Request) -> Reply:
        body = request.json()
        if any(m.get("role") == "tool" for m in body["messages"]):
            return completion(None, [tool_call("finish", {"answer": ["yes"]})])
        return completion(None, [tool_call("probe_lookup", {"key": "a"})])

    server = FakeOpenAIServer(default=finish_after_one_tool, delay_s=args.delay)
    server.port = args.port
    server.start()
    print(server.base_url, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    server.stop()
