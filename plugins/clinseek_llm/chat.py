"""Render a conversation with a GGUF model's Jinja chat template, as Hugging Face's apply_chat_template does.

llama.cpp's C API applies only a fixed set of built-in templates and none with tools, so the template runs here in
a sandboxed Jinja environment with the helpers model templates rely on (`tojson` that keeps non-ASCII text and does
not HTML-escape, `raise_exception`, `strftime_now`).
"""
from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

from clinseek.chat_template import function_tools, hf_messages


class TemplateError(ValueError):
    """The chat template failed to render (its own error or a missing feature)."""


def _tojson(value: Any, indent: int | None = None, ensure_ascii: bool = False, sort_keys: bool = False) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)


def _raise(message: str) -> None:
    raise TemplateError(message)


@lru_cache(maxsize=8)
def _compiled(source: str) -> Any:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)


def render_chat(source: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                **variables: Any) -> str:
    """The prompt text for canonical `messages` and provider-neutral `tools`, generation prompt added."""
    try:
        return _compiled(source).render(messages=hf_messages(messages), tools=function_tools(tools or []) or None,
                                        add_generation_prompt=True, bos_token="", eos_token="", **variables)
    except TemplateError:
        raise
    except Exception as exc:  # noqa: BLE001 - any Jinja error is the template's
        raise TemplateError(f"{type(exc).__name__}: {exc}") from exc
