"""Prompt templates: a sandboxed Jinja environment with StrictUndefined and a search path.

Template names resolve against the recipe's folder, then a `prompts/` folder beside it or above it (the
project's prompts/), then clinseek's built-in defaults. Jinja is sandboxed: recipes are data, not code.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from clinseek.errors import UserError

DEFAULTS_DIR = Path(__file__).parent / "prompts"
DEFAULT_SYSTEM = {"seek": "seek_system.j2", "curated": "curated_system.j2"}
DEFAULT_USER = {"seek": "seek_user.j2", "curated": "curated_user.j2"}


def search_path(recipe_dir: Path) -> list[Path]:
    paths = [recipe_dir]
    for ancestor in [recipe_dir, *list(recipe_dir.parents)[:3]]:
        candidate = ancestor / "prompts"
        if candidate.is_dir() and candidate not in paths:
            paths.append(candidate)
    paths.append(DEFAULTS_DIR)
    return paths


def make_env(recipe_dir: Path):
    from jinja2 import FileSystemLoader, StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(loader=FileSystemLoader([str(p) for p in search_path(recipe_dir)]),
                                        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False,
                                        trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson_compact"] = lambda v: __import__("json").dumps(v, ensure_ascii=False)
    return env


class PromptSet:
    """The system and user templates of a recipe, loaded once and rendered per task."""

    def __init__(self, recipe_dir: Path, system: str | None, user: str | None, mode: str = "seek",
                 where: dict[str, str | None] | None = None):
        from jinja2 import TemplateNotFound, TemplateSyntaxError

        self.env = make_env(recipe_dir)
        self.names = {"system": system or DEFAULT_SYSTEM[mode], "user": user or DEFAULT_USER[mode]}
        self.templates = {}
        where = where or {}
        for role, name in self.names.items():
            try:
                self.templates[role] = self.env.get_template(name)
            except TemplateNotFound:
                looked = ", ".join(str(p) for p in search_path(recipe_dir))
                raise UserError(f"prompts.{role}: template {name!r} not found (looked in {looked})",
                                where=where.get(role), hint="paths are relative to the recipe or to prompts/") \
                    from None
            except TemplateSyntaxError as exc:
                raise UserError(f"prompts.{role}: template syntax error in {name} line {exc.lineno}: "
                                f"{exc.message}", where=where.get(role)) from None

    def render(self, context: dict[str, Any]) -> tuple[str, str]:
        return self.render_one("system", context), self.render_one("user", context)

    def render_one(self, role: str, context: dict[str, Any]) -> str:
        from jinja2 import UndefinedError
        from jinja2.exceptions import SecurityError

        try:
            return self.templates[role].render(**context).strip()
        except UndefinedError as exc:
            raise UserError(f"prompts.{role} ({self.names[role]}): {exc.message}; available variables: "
                            f"{', '.join(sorted(context))}") from None
        except SecurityError as exc:
            raise UserError(f"prompts.{role} ({self.names[role]}): refused by the sandbox: {exc}") from None


def prompt_context(task: Any, tools: list[dict[str, Any]], recipe: Any, evidence: str | None = None,
                   mode: str = "seek") -> dict[str, Any]:
    """The variables a template sees. The label is never among them."""
    view = task.public_view()
    return {
        "task": view,
        "question": task.question,
        "candidates": list(task.candidates),
        "tools": tools,
        "tool_names": [t["name"] for t in tools],
        "evidence": evidence,
        "mode": mode,
        "recipe": {"name": recipe.name, "description": recipe.description},
    }
