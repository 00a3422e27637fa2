"""Which template files a recipe may use: the folders of the templates it declares and clinseek's shipped prompts;
only `.j2`/`.jinja` files, never by an absolute or `..` path or through a link out of those folders, and never the
site file (known by its path and by its content, whatever its name) or a file holding one of the site's secrets.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

from clinseek.errors import UserError
from clinseek.template_bounds import RenderLimits, TemplateRefused

DEFAULTS_DIR = Path(__file__).parent / "prompts"   # the shipped templates (package data)
TEMPLATE_SUFFIXES = (".j2", ".jinja")
MIN_SECRET_CHARS = 6  # shorter "secrets" (a port, "yes") would match ordinary template text


# The loader ----------------------------------------------------------------------------------------------------

class TemplateFiles:
    """The template files a recipe may use: what it declares, what is beside them, and the shipped prompts.

    Declared names are resolved against the recipe's folder (falling back to the shipped prompts); every other
    name, as written in an include, import or extends, against the declared templates' folders and then the
    shipped prompts.
    """

    def __init__(self, recipe_dir: Path, declared: dict[str, Path], roots: list[Path], limits: RenderLimits):
        self.recipe_dir = Path(recipe_dir)
        self.declared = dict(declared)  # name as the recipe writes it -> the file, links not followed
        self.roots = list(dict.fromkeys(r.resolve() for r in roots))
        self.limits = limits
        self.site: dict[str, Any] | None = None
        self.site_path: Path | None = None
        self.secrets: set[str] = set()
        self.served: dict[Path, str] = {}  # resolved path -> source, for checks made after loading

    def protect(self, site: dict[str, Any] | None, secrets: Iterable[str] = (),
                site_path: str | Path | None = None) -> None:
        """Refuse the site file (by path and by content) and any template holding one of its secrets."""
        self.site = site if isinstance(site, dict) else None
        self.site_path = Path(site_path).resolve() if site_path else None
        found = {s for s in secrets if isinstance(s, str)}
        stack: list[Any] = [(site or {}).get("secrets")] if isinstance(site, dict) else []
        while stack:
            v = stack.pop()
            if isinstance(v, dict):
                stack.extend(v.values())
            elif isinstance(v, list):
                stack.extend(v)
            elif isinstance(v, (str, int)) and not isinstance(v, bool):
                found.add(str(v))
        self.secrets = {s for s in found if len(s.strip()) >= MIN_SECRET_CHARS}

    def display(self, path: Path) -> str:
        for base, prefix in ((self.recipe_dir.resolve(), ""), (DEFAULTS_DIR.resolve(), "<clinseek>/")):
            if path.is_relative_to(base) and path != base:
                return prefix + path.relative_to(base).as_posix()
        return str(path)

    def folders(self) -> str:
        named = {self.recipe_dir.resolve(): "the recipe's folder",
                 DEFAULTS_DIR.resolve(): "clinseek's shipped prompts"}
        return ", ".join(named.get(r) or self.display(r) + "/" for r in self.roots)

    def locate(self, name: str) -> Path:
        from jinja2 import TemplateNotFound

        if name in self.declared:
            return self._inside(name, self.declared[name])
        inside = f"include templates by a path relative to the template folders ({self.folders()})"
        if not name or "\\" in name or "\0" in name:
            raise TemplateRefused(name, "is not a template path", inside)
        if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or name.startswith("~"):
            raise TemplateRefused(name, "is an absolute path: templates may only include other templates in "
                                        "their own folders", inside)
        if ".." in name.split("/"):
            raise TemplateRefused(name, "leaves the template folders (`..`)",
                                  f"move the file into one of the template folders and {inside}")
        if not name.lower().endswith(TEMPLATE_SUFFIXES):
            raise TemplateRefused(name, "is not a template: only .j2 and .jinja files can be included (site "
                                        "files, recipes and other data never can)",
                                  "give the template a .j2 name; pass data to prompts through the task instead")
        for root in self.roots:
            candidate = root / name
            if candidate.is_file():
                return self._inside(name, candidate)
        raise TemplateNotFound(name)

    def _inside(self, name: str, path: Path) -> Path:
        """The file a template name leads to, once links are followed: still a template in the folders."""
        real = path.resolve()
        if not any(real.is_relative_to(r) for r in self.roots) or not real.name.lower().endswith(TEMPLATE_SUFFIXES):
            raise TemplateRefused(name, f"is a link to {real}, outside the template folders or not a template",
                                  "copy the template into the template folder instead of linking to it")
        return real

    def _check_content(self, name: str, path: Path, source: str) -> None:
        if self.site_path is not None and path.resolve() == self.site_path:
            raise TemplateRefused(name, "is the site file; its paths and secrets never go into prompts",
                                  "remove the include, and keep the site file out of the template folders")
        if len(source) > self.limits.max_template_chars:
            raise TemplateRefused(name, f"is {len(source):,} characters, over the template limit of "
                                        f"{self.limits.max_template_chars:,}", "shorten the template")
        if self.site and ":" in source:
            import yaml

            try:
                data = yaml.safe_load(source)
            except Exception:  # noqa: BLE001 - most templates are not YAML; those are not the site file
                data = None
            if data == self.site:
                raise TemplateRefused(name, "is the site file; its paths and secrets never go into prompts",
                                      "remove the include, and keep the site file out of the template folders")
        if any(s in source for s in self.secrets):
            raise TemplateRefused(name, "contains a secret from the site file; secrets never go into prompts",
                                  "remove it from the template")

    def loader(self) -> Any:
        from jinja2 import BaseLoader

        files = self

        class Loader(BaseLoader):
            def get_source(self, environment: Any, template: str) -> tuple[str, str, Any]:
                path = files.locate(template)
                source = path.read_text(encoding="utf-8")
                files._check_content(template, path, source)
                files.served[path] = source
                mtime = path.stat().st_mtime
                return source, str(path), lambda: path.exists() and path.stat().st_mtime == mtime

        return Loader()


def declare_template(recipe_dir: Path, name: str, role: str, where: str | None) -> tuple[Path, bool]:
    """(file, is it the recipe's own) for a declared template; refused with a message saying how to fix it."""
    hint = "write prompts.system / prompts.user as a path relative to the recipe, to a .j2 or .jinja file"
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"prompts.{role}: the template name is empty", where=where, hint=hint)
    if Path(name).expanduser().is_absolute() or name.startswith("~"):
        raise UserError(f"prompts.{role}: {name!r} is an absolute path; recipes name templates relative to the "
                        "recipe, so they run unchanged at another site", where=where, hint=hint)
    if not name.lower().endswith(TEMPLATE_SUFFIXES):
        raise UserError(f"prompts.{role}: {name!r} is not a template (only .j2 and .jinja files are)",
                        where=where, hint=hint)
    own = Path(recipe_dir) / name
    if own.is_file():
        return own, True
    shipped = DEFAULTS_DIR / name
    if ".." not in Path(name).parts and shipped.is_file():
        return shipped, False
    raise UserError(f"prompts.{role}: template {name!r} not found (looked in {Path(recipe_dir)} and clinseek's "
                    f"shipped prompts: {', '.join(sorted(p.name for p in DEFAULTS_DIR.glob('*.j2')))})",
                    where=where, hint="paths are relative to the recipe's folder")
