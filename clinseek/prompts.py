"""Prompt templates: a sandboxed, bounded Jinja environment that reads only template files.

Where templates come from: the folders of the templates the recipe declares (`prompts.system`, `prompts.user`,
relative to the recipe) and clinseek's shipped prompts. Only `.j2` and `.jinja` files are served, never by an
absolute or `..` path or through a link out of those folders, and never the site file (known by its path and by
its content, whatever its name) or a file holding one of the site's secrets.

Rendering is bounded: a time limit, an output size limit, a cap on range(), and checks on the operations that
could make a huge value (string and list multiplication, `%` and str.format widths, repeat-heavy str methods and
filters, big integers). Each bound ends rendering with one message naming the template and the bound.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from clinseek.errors import UserError
from clinseek.template_bounds import RenderLimits, TemplateLimit, TemplateRefused, environment_class, render_budget
from clinseek.template_files import DEFAULTS_DIR, TemplateFiles, declare_template

__all__ = ["DEFAULTS_DIR", "PromptSet", "RenderLimits", "TemplateFiles", "make_env", "prompt_context"]

DEFAULT_SYSTEM = {"seek": "seek_system.j2", "curated": "curated_system.j2"}
DEFAULT_USER = {"seek": "seek_user.j2", "curated": "curated_user.j2"}


def make_env(files: TemplateFiles, limits: RenderLimits | None = None) -> Any:
    from jinja2 import StrictUndefined

    return environment_class()(limits or files.limits, loader=files.loader(), undefined=StrictUndefined,
                                autoescape=False, keep_trailing_newline=False, trim_blocks=True,
                                lstrip_blocks=True)


def _template_frame(tb: Any, files: TemplateFiles) -> tuple[str, int] | None:
    """The innermost template line in a traceback Jinja rewrote (template file names and lines)."""
    served = {str(p): p for p in list(files.served)}
    found = None
    while tb is not None:
        path = served.get(tb.tb_frame.f_code.co_filename)
        if path is not None:
            found = (files.display(path), tb.tb_lineno)
        tb = tb.tb_next
    return found


class PromptSet:
    """The system and user templates of a recipe, loaded once and rendered per task."""

    def __init__(self, recipe_dir: Path, system: str | None, user: str | None, mode: str = "seek",
                 where: dict[str, str | None] | None = None, *, limits: RenderLimits | None = None,
                 site: dict[str, Any] | None = None, secrets: Iterable[str] = (),
                 site_path: str | Path | None = None):
        self.limits = limits or RenderLimits()
        self.where = where or {}
        self.names = {"system": system or DEFAULT_SYSTEM[mode], "user": user or DEFAULT_USER[mode]}
        declared, roots = {}, []
        for role, name in self.names.items():
            path, own = declare_template(recipe_dir, name, role, self.where.get(role))
            declared[name] = path
            if own:
                roots.append(path.parent.resolve())
        self.files = TemplateFiles(recipe_dir, declared, [*roots, DEFAULTS_DIR], self.limits)
        self.files.protect(site, secrets, site_path)
        self.env = make_env(self.files)
        self._load()

    def protect(self, site: dict[str, Any] | None, secrets: Iterable[str] = (),
                site_path: str | Path | None = None) -> None:
        """Keep the site file and its secrets out of every template: what is loaded is loaded again, checked."""
        self.files.protect(site, secrets, site_path)
        self.files.served.clear()
        self.env.cache.clear()
        self._load()

    def _load(self) -> None:
        from jinja2 import TemplateNotFound, TemplateSyntaxError

        self.templates = {}
        for role, name in self.names.items():
            try:
                self.templates[role] = self.env.get_template(name)
                self._check_references(role, self.templates[role], seen=set())
            except TemplateRefused as exc:
                raise self._refused(role, exc) from None
            except TemplateNotFound as exc:
                raise UserError(f"prompts.{role} ({name}): template {exc.name!r} not found (looked in "
                                f"{self.files.folders()})", where=self.where.get(role),
                                hint="include templates by their path relative to the template folder") from None
            except TemplateSyntaxError as exc:
                raise UserError(f"prompts.{role}: template syntax error in {exc.name or name} line {exc.lineno}: "
                                f"{exc.message}", where=self.where.get(role)) from None

    def _check_references(self, role: str, template: Any, seen: set) -> None:
        """Load what a template includes, imports or extends by a constant name, so refusals show at validate."""
        from jinja2 import TemplateNotFound, nodes

        if template.filename in seen or template.filename is None:
            return
        seen.add(template.filename)
        source = self.files.served.get(Path(template.filename))
        if source is None:
            return
        tree = self.env.parse(source)
        for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
            targets = node.template.items if isinstance(node.template, (nodes.List, nodes.Tuple)) \
                else [node.template]
            for target in targets:
                if not isinstance(target, nodes.Const) or not isinstance(target.value, str):
                    continue  # a name computed at render time is checked when it is loaded
                try:
                    child = self.env.get_template(target.value)
                except TemplateRefused as exc:
                    raise self._refused(role, exc, (self.files.display(Path(template.filename)),
                                                    node.lineno)) from None
                except TemplateNotFound:
                    if getattr(node, "ignore_missing", False) or len(targets) > 1:
                        continue
                    raise UserError(f"prompts.{role} ({self.files.display(Path(template.filename))} line "
                                    f"{node.lineno}): template {target.value!r} not found (looked in "
                                    f"{self.files.folders()})", where=self.where.get(role),
                                    hint="include templates by their path relative to the template folder") \
                        from None
                self._check_references(role, child, seen)

    def _refused(self, role: str | None, exc: TemplateRefused, at: tuple[str, int] | None = None) -> UserError:
        place = f"{at[0]} line {at[1]}" if at else self.names.get(role or "", "")
        return UserError(f"prompts{'.' + role if role else ''}{f' ({place})' if place else ''}: template "
                         f"{exc.name!r} {exc.reason}", where=self.where.get(role or "system"), hint=exc.hint)

    def render(self, context: dict[str, Any]) -> tuple[str, str]:
        return self.render_one("system", context), self.render_one("user", context)

    def render_one(self, role: str, context: dict[str, Any]) -> str:
        from jinja2 import TemplateNotFound, TemplateSyntaxError, UndefinedError
        from jinja2.exceptions import SecurityError

        try:
            with render_budget(self.limits.time_s):
                return self.templates[role].render(**context).strip()
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever a template does wrong is the recipe's to fix
            at = _template_frame(exc.__traceback__, self.files)
            own = self.files.display(self.files.declared[self.names[role]].resolve())
            place = self.names[role] if not at else f"{self.names[role]} line {at[1]}" if at[0] == own \
                else f"{self.names[role]}, {at[0]} line {at[1]}"
            prefix = f"prompts.{role} ({place})"
            where = self.where.get(role)
            if isinstance(exc, TemplateRefused):
                raise self._refused(role, exc, at) from None
            if isinstance(exc, TemplateLimit):
                raise UserError(f"{prefix}: {exc}", where=where,
                                hint="a prompt template lays out the task; keep loops, ranges and repeated text "
                                     "small") from None
            if isinstance(exc, UndefinedError):
                raise UserError(f"{prefix}: {exc.message}; available variables: "
                                f"{', '.join(sorted(context))}", where=where) from None
            if isinstance(exc, SecurityError):
                raise UserError(f"{prefix}: refused by the sandbox: {exc}", where=where) from None
            if isinstance(exc, TemplateNotFound):
                raise UserError(f"{prefix}: template {exc.name!r} not found (looked in {self.files.folders()})",
                                where=where, hint="include templates by their path relative to the template "
                                                  "folder") from None
            if isinstance(exc, TemplateSyntaxError):
                raise UserError(f"{prefix}: template syntax error in {exc.name} line {exc.lineno}: "
                                f"{exc.message}", where=where) from None
            if isinstance(exc, RecursionError):
                raise UserError(f"{prefix}: templates include, extend or call themselves too deeply", where=where,
                                hint="look for a template that includes itself or a macro without an end") \
                    from None
            if isinstance(exc, MemoryError):
                raise UserError(f"{prefix}: rendering ran out of memory", where=where) from None
            raise UserError(f"{prefix}: the template failed: {type(exc).__name__}: {exc}", where=where) from None


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
