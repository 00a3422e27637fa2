"""Host LLMs: the Host protocol and the built-in providers."""
from clinseek.hosts.base import GenerateContext, Host, HostCheck, HostConfig, HostResponse, Price, ToolCall, Usage
from clinseek.hosts.errors import HostError, HostRequestRejected, HostUnreachable

__all__ = ["GenerateContext", "Host", "HostCheck", "HostConfig", "HostError", "HostRequestRejected", "HostResponse",
           "HostUnreachable", "Price", "ToolCall", "Usage"]
