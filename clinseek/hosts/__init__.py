"""Host LLMs: the Host protocol and the built-in providers."""
from clinseek.hosts.base import GenerateContext, Host, HostConfig, HostResponse, Price, ToolCall, Usage
from clinseek.hosts.errors import HostError, HostRequestRejected

__all__ = ["GenerateContext", "Host", "HostConfig", "HostError", "HostRequestRejected", "HostResponse", "Price",
           "ToolCall", "Usage"]
