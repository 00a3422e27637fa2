"""Host LLMs: the Host protocol and the built-in providers."""
from clinseek.hosts.base import Host, HostConfig, HostResponse, ToolCall, Usage

__all__ = ["Host", "HostConfig", "HostResponse", "ToolCall", "Usage"]
