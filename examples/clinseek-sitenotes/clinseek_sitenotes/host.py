"""The `keyword` host: search the notes for one keyword, answer yes when a note mentions it."""
from __future__ import annotations

import asyncio

from clinseek import Host, HostConfig, HostResponse, ToolCall


class KeywordConfig(HostConfig):
    keyword: str
    delay_s: float = 0.0  # simulate a slow model (used by clinseek's own crash-and-resume test)


class KeywordHost(Host):
    provider = "keyword"
    Config = KeywordConfig

    def default_site_local(self) -> bool:
        return True  # runs in-process

    async def generate(self, messages, tools, ctx):
        if self.config.delay_s:
            await asyncio.sleep(self.config.delay_s)
        observations = [m for m in messages if m["role"] == "tool"]
        if not observations:
            return HostResponse(content=None, tool_calls=[
                ToolCall(id="c1", name="sitenotes_search", arguments={"keyword": self.config.keyword})])
        last = observations[-1]
        answer = "no" if "no note mentions" in last["content"] else "yes"
        return HostResponse(content=None, tool_calls=[ToolCall(
            id="c2", name="finish", arguments={"answer": [answer], "evidence": [last["evidence_id"]]})])

    def describe(self):
        return {"provider": self.provider, "model": f"keyword:{self.config.keyword}"}
