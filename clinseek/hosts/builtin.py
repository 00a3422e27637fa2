"""The built-in host providers. Each module imports its SDK lazily, so importing this list is cheap."""
from __future__ import annotations

from clinseek.hosts.anthropic_host import AnthropicHost
from clinseek.hosts.base import Host
from clinseek.hosts.openai_host import OpenAIHost
from clinseek.hosts.transformers_host import TransformersHost

# The `rules` baseline is the demo plugin's (plugins/clinseek_demo/rules/).
BUILTIN_HOSTS: list[type[Host]] = [OpenAIHost, AnthropicHost, TransformersHost]
