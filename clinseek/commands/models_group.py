"""The `clinseek models` group, shared: each plugin that manages model files adds its own subcommands to it
(the cxr plugin: check, export; the llm plugin: get, list)."""
from __future__ import annotations

import click


@click.group("models", help="Model files: chest X-ray model cards (check, export) and local LLMs (get, list).")
def models() -> None:
    pass
