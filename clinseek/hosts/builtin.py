"""The built-in host providers. Each module imports its SDK lazily, so importing this list is cheap."""
from __future__ import annotations

from clinseek.hosts.anthropic_host import AnthropicHost
from clinseek.hosts.base import Host
from clinseek.hosts.openai_host import OpenAIHost
from clinseek.hosts.rules import RulesHost
from clinseek.hosts.transformers_host import TransformersHost

BUILTIN_HOSTS: list[type[Host]] = [OpenAIHost, AnthropicHost, TransformersHost, RulesHost]
