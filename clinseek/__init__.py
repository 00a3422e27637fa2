"""clinseek: a declarative engine for evidence-seeking clinical agents.

The public API for plugin authors lives here.
"""
from clinseek.errors import ClinseekError, ToolError, UserError
from clinseek.hookspecs import hookimpl
from clinseek.hosts.base import GenerateContext, Host, HostConfig, HostResponse, ToolCall, Usage
from clinseek.hosts.errors import HostError
from clinseek.tasks import Task, TaskSource
from clinseek.toolsets import Binding, Episode, Toolset, ToolsetConfig, tool

__version__ = "0.1.0"

__all__ = [
    "Binding", "ClinseekError", "HostError", "Episode", "GenerateContext", "Host", "HostConfig", "HostResponse", "Task",
    "TaskSource", "ToolCall", "ToolError", "Toolset", "ToolsetConfig", "Usage", "UserError", "hookimpl", "tool",
    "__version__",
]
