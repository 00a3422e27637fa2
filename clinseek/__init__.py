"""clinseek: a declarative engine for evidence-seeking clinical agents.

The public API for plugin authors lives here. Names load on first use (PEP 562), so importing the package (as
`clinseek --help` does) pulls in neither pydantic nor the hosts.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "ClinseekError": "clinseek.errors", "ToolError": "clinseek.errors", "UserError": "clinseek.errors",
    "hookimpl": "clinseek.hookspecs",
    "GenerateContext": "clinseek.hosts.base", "Host": "clinseek.hosts.base", "HostConfig": "clinseek.hosts.base",
    "HostResponse": "clinseek.hosts.base", "ToolCall": "clinseek.hosts.base", "Usage": "clinseek.hosts.base",
    "HostError": "clinseek.hosts.errors",
    "Task": "clinseek.tasks", "TaskSource": "clinseek.tasks", "TaskView": "clinseek.tasks",
    "RunContext": "clinseek.engine", "Exporter": "clinseek.exporters.base", "Scorer": "clinseek.scorers",
    "Binding": "clinseek.toolsets", "Episode": "clinseek.toolsets", "Toolset": "clinseek.toolsets",
    "ToolsetConfig": "clinseek.toolsets", "tool": "clinseek.toolsets",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'clinseek' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from clinseek.errors import ClinseekError, ToolError, UserError
    from clinseek.hookspecs import hookimpl
    from clinseek.hosts.base import GenerateContext, Host, HostConfig, HostResponse, ToolCall, Usage
    from clinseek.hosts.errors import HostError
    from clinseek.engine import RunContext
    from clinseek.exporters.base import Exporter
    from clinseek.scorers import Scorer
    from clinseek.tasks import Task, TaskSource, TaskView
    from clinseek.toolsets import Binding, Episode, Toolset, ToolsetConfig, tool
