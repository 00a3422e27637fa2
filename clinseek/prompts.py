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

import functools
import math
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from clinseek.errors import UserError

DEFAULTS_DIR = Path(__file__).parent / "prompts"
DEFAULT_SYSTEM = {"seek": "seek_system.j2", "curated": "curated_system.j2"}
DEFAULT_USER = {"seek": "seek_user.j2", "curated": "curated_user.j2"}
TEMPLATE_SUFFIXES = (".j2", ".jinja")
SIZE_FILTERS = ("center", "indent", "batch", "slice")  # their numbers are widths or counts of what they make
LOOP_FILTER = "_clinseek_budget"  # wraps every for loop's iterable (a template using it gains nothing)
MIN_SECRET_CHARS = 6  # shorter "secrets" (a port, "yes") would match ordinary template text


@dataclass(frozen=True)
class RenderLimits:
    """Bounds on one render of one template (includes and macros count toward the template that uses them)."""

    time_s: float = 5.0
    max_chars: int = 1_000_000     # the rendered text, and any one string, list or mapping made while rendering
    max_range: int = 100_000       # items in one range()
    max_int_bits: int = 10_000     # integers past this are refused (str() of them would fail anyway)
    max_template_chars: int = 1_000_000


class TemplateLimit(Exception):
    """A render bound was reached; the message says which one."""


class TemplateRefused(Exception):
    """The loader will not serve this template name: `reason` says why, `hint` what to do instead."""

    def __init__(self, name: str, reason: str, hint: str):
        self.name, self.reason, self.hint = name, reason, hint
        super().__init__(f"{name!r}: {reason}")


# The budget of the render in progress on this thread (episodes render in worker threads).
_budget = threading.local()


def _tick() -> None:
    deadline = getattr(_budget, "deadline", None)
    if deadline is not None and time.monotonic() > deadline:
        raise TemplateLimit(f"rendering took longer than the template time limit of {_budget.limit_s:g} s "
                            "(a loop or macro runs too long)")


def _text_size(value: Any, cap: int) -> int:
    """About len(str(value)), computed without building it; stops counting once past `cap`."""
    if isinstance(value, str):
        return len(value)
    total, stack, steps = 0, [value], 0
    while stack and total <= cap:
        v = stack.pop()
        steps += 1
        if steps % 4096 == 0:
            _tick()
        if isinstance(v, str):
            total += len(v) + 4
        elif isinstance(v, (bytes, bytearray)):
            total += len(v) + 3
        elif isinstance(v, dict):
            total += 2 + 2 * len(v)
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, (list, tuple, set, frozenset)):
            total += 2 + 2 * len(v)
            stack.extend(v)
        elif isinstance(v, int) and not isinstance(v, bool):
            total += v.bit_length() // 3 + 2
        else:
            total += 8
    return total


def _sized(value: Any) -> int | None:
    try:
        return len(value)
    except TypeError:
        return None


def _ints(args: Iterable[Any]) -> list[int]:
    return [a for a in args if isinstance(a, int) and not isinstance(a, bool)]


# The environment -----------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _environment_class() -> type:
    """Built on first use so that importing clinseek.prompts does not import jinja2."""
    from jinja2 import nodes
    from jinja2.compiler import CodeGenerator
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from jinja2.utils import pass_context

    class BoundedCodeGenerator(CodeGenerator):
        def visit_Concat(self, node: Any, frame: Any) -> None:
            # `a ~ b` stringifies its operands: estimate their size before joining (as Jinja would).
            if frame.eval_ctx.volatile:
                func = "(markup_join if context.eval_ctx.volatile else str_join)"
            else:
                func = "markup_join" if frame.eval_ctx.autoescape else "str_join"
            self.write(f"environment.budget_join({func}, (")
            for arg in node.nodes:
                self.visit(arg, frame)
                self.write(", ")
            self.write("))")

    class Ticking:
        """An iterable that checks the render budget at each step; keeps len() for loop.length."""

        __slots__ = ("inner",)

        def __init__(self, inner: Any):
            self.inner = inner

        def __len__(self) -> int:
            return len(self.inner)

        def __iter__(self):
            for item in self.inner:
                _tick()
                yield item

    class BoundedEnvironment(ImmutableSandboxedEnvironment):
        code_generator_class = BoundedCodeGenerator
        intercepted_binops = frozenset({"*", "%", "**", "+"})

        def __init__(self, limits: RenderLimits, **options: Any):
            super().__init__(**options)
            self.limits = limits
            self.finalize = self._finalize
            self.globals.pop("lipsum", None)  # makes text of any size; no use in a prompt
            self.globals["range"] = self._range
            self.filters = {name: self._bounded_filter(name, fn) for name, fn in self.filters.items()}
            self.filters["tojson_compact"] = self._bounded_filter(
                "tojson_compact", lambda v: __import__("json").dumps(v, ensure_ascii=False))
            # pass_context keeps Jinja from calling it at compile time on a constant iterable
            self.filters[LOOP_FILTER] = pass_context(lambda _context, iterable: self.budget_iter(iterable))

        # Bounds ---------------------------------------------------------------------------------------------
        def _too_big(self, what: str, size: float) -> TemplateLimit:
            return TemplateLimit(f"{what} would make about {size:,.0f} characters, over the template limit of "
                                 f"{self.limits.max_chars:,}")

        def _checked(self, value: Any) -> Any:
            if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)) \
                    and len(value) > self.limits.max_chars:
                raise TemplateLimit(f"a value of {len(value):,} items is over the template limit of "
                                    f"{self.limits.max_chars:,}")
            if isinstance(value, int) and value.bit_length() > self.limits.max_int_bits:
                raise TemplateLimit(f"an integer of {value.bit_length():,} bits is over the template limit of "
                                    f"{self.limits.max_int_bits:,}")
            return value

        def _check_text(self, what: str, size: float) -> None:
            if size > self.limits.max_chars:
                raise self._too_big(what, size)

        def _check_format(self, what: str, fmt: str, values: Iterable[Any], style: str = "%") -> None:
            # A width or precision sets the output's size: written in a field's spec, or taken from an argument
            # (`%*d`, `{:{w}}`); other numbers, in the text or among the arguments, are just values.
            cap = self.limits.max_chars
            values = list(values)
            if style == "%":
                specs = ["".join(m) for m in re.findall(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?", fmt)]
                dynamic = any("*" in spec for spec in specs)
            else:
                specs = [field.split(":", 1)[1] for field in re.findall(r"\{([^{}]*)\}", fmt) if ":" in field]
                dynamic = bool(re.search(r"\{[^{}]*\{", fmt))
            widths = [int(d) if len(d) <= 12 else math.inf for spec in specs for d in re.findall(r"\d+", spec)]
            if dynamic:
                widths += _ints(values)
            if any(w > cap for w in widths):
                raise self._too_big(what, max(widths))
            largest = max((_text_size(v, cap) for v in values), default=0)
            self._check_text(what, len(fmt) + (fmt.count("%") + fmt.count("{")) * largest)

        def _range(self, *args: Any) -> range:
            _tick()
            r = range(*args)
            try:
                n: float = len(r)
            except OverflowError:
                n = math.inf
            if n > self.limits.max_range:
                raise TemplateLimit(f"range() of {n:,.0f} items is over the template limit of "
                                    f"{self.limits.max_range:,}")
            return r

        def _finalize(self, value: Any) -> Any:
            _tick()
            if not isinstance(value, str):
                self._check_text("printing this value", _text_size(value, self.limits.max_chars))
            return value

        def budget_iter(self, iterable: Any) -> Any:
            _tick()
            return Ticking(iterable)

        def budget_join(self, join: Any, parts: tuple) -> str:
            _tick()
            cap = self.limits.max_chars
            self._check_text("`~`", sum(_text_size(p, cap) for p in parts))
            return join(parts)

        def concat(self, parts: Iterable[str]) -> str:  # type: ignore[override]
            # Every rendered body goes through here (the template, macros, {% set %} blocks, loop buffers).
            _tick()
            cap, total, out = self.limits.max_chars, 0, []
            for part in parts:
                total += len(part)
                if total > cap:
                    raise TemplateLimit(f"the rendered text is over the template limit of {cap:,} characters")
                out.append(part)
            return "".join(out)

        # Sandbox hooks -------------------------------------------------------------------------------------
        def getattr(self, obj: Any, attribute: str) -> Any:
            _tick()
            return super().getattr(obj, attribute)

        def getitem(self, obj: Any, argument: Any) -> Any:
            _tick()
            return super().getitem(obj, argument)

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            _tick()
            cap, bits = self.limits.max_chars, self.limits.max_int_bits
            if operator == "*":
                for seq, n in ((left, right), (right, left)):
                    if _ints([n]) and isinstance(seq, (str, bytes, list, tuple)):
                        self._check_text(f"{type(seq).__name__} * {n:,}", len(seq) * max(n, 0))
                if _ints([left]) and _ints([right]) and left.bit_length() + right.bit_length() > bits:
                    raise TemplateLimit(f"an integer product of {left.bit_length() + right.bit_length():,} bits "
                                        f"is over the template limit of {bits:,}")
            elif operator == "**" and _ints([left]) and _ints([right]) and abs(left) > 1 and right > 0:
                if right * math.log2(abs(left)) > bits:
                    raise TemplateLimit(f"{left} ** {right} is over the template limit of {bits:,} bits")
            elif operator == "%" and isinstance(left, str):
                values = right.values() if isinstance(right, dict) else right if isinstance(right, tuple) \
                    else (right,)
                self._check_format("`%` formatting", left, values)
            return self._checked(super().call_binop(context, operator, left, right))

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            _tick()
            __self._check_call(__obj, args, kwargs)
            return __self._checked(super().call(__context, __obj, *args, **kwargs))

        def _check_call(self, obj: Any, args: tuple, kwargs: dict) -> None:
            # The sandbox hands out str.format wrapped; the method it wraps says whose it is.
            method = getattr(obj, "__wrapped__", obj)
            owner, name = getattr(method, "__self__", None), getattr(method, "__name__", "")
            if not isinstance(owner, str):
                return
            cap = self.limits.max_chars
            if name in ("format", "format_map"):
                self._check_format(f"str.{name}", owner, [*args, *kwargs.values()], style="{")
                return
            big = [n for n in _ints([*args, *kwargs.values()]) if n > cap]
            if big and name in ("center", "ljust", "rjust", "zfill", "expandtabs"):  # their numbers are widths
                raise self._too_big(f"str.{name}({big[0]:,})", big[0])
            if name == "join" and args and _sized(args[0]) is not None:
                self._check_text("str.join", len(owner) * len(args[0]) + _text_size(args[0], cap))
            elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
                self._check_text("str.replace", self._replace_size(owner, args[0], args[1],
                                                                   args[2] if len(args) > 2 else -1))
            elif name == "expandtabs":
                tab = (_ints(args) or _ints(kwargs.values()) or [8])[0]
                self._check_text("str.expandtabs", len(owner) + owner.count("\t") * tab)
            elif name == "translate" and args and isinstance(args[0], dict):
                longest = max((_text_size(v, cap) for v in args[0].values()), default=1)
                self._check_text("str.translate", len(owner) * longest)

        @staticmethod
        def _replace_size(s: str, old: str, new: str, count: Any) -> int:
            n = len(s) + 1 if old == "" else s.count(old)
            if isinstance(count, int) and count >= 0:
                n = min(n, count)
            return len(s) + n * max(len(new) - len(old), 0)

        def _bounded_filter(self, name: str, fn: Any) -> Any:
            from jinja2.utils import _PassArg

            skip = 1 if _PassArg.from_obj(fn) is not None else 0
            env = self

            @functools.wraps(fn)
            def bounded(*args: Any, **kwargs: Any) -> Any:
                _tick()
                if len(args) > skip:
                    env._check_filter(name, args[skip], args[skip + 1:], kwargs)
                return env._checked(fn(*args, **kwargs))

            return bounded

        def _check_filter(self, name: str, value: Any, args: tuple, kwargs: dict) -> None:
            cap = self.limits.max_chars
            size = _text_size(value, cap)
            self._check_text(f"the {name} filter", size)
            numbers = _ints([*args, *kwargs.values()])
            if name in SIZE_FILTERS and any(n > cap for n in numbers):
                raise self._too_big(f"the {name} filter with {max(numbers):,}", max(numbers))
            if name == "indent":
                width = args[0] if args else kwargs.get("width", 4)
                per_line = width if isinstance(width, int) else len(str(width))
                lines = value.count("\n") + 1 if isinstance(value, str) else 1
                self._check_text("the indent filter", size + lines * per_line)
            elif name == "join" and _sized(value) is not None:
                sep = args[0] if args else kwargs.get("d", "")
                self._check_text("the join filter", size + len(str(sep)) * len(value))
            elif name == "replace" and isinstance(value, str) and len(args) >= 2:
                self._check_text("the replace filter", self._replace_size(value, str(args[0]), str(args[1]),
                                                                          args[2] if len(args) > 2 else -1))
            elif name == "format" and isinstance(value, str):
                self._check_format("the format filter", value, [*args, *kwargs.values()])

        # Every for loop's iterable goes through LOOP_FILTER, so every loop step passes the budget.
        def _parse(self, source: str, name: Any, filename: Any) -> Any:
            tree = super()._parse(source, name, filename)
            for loop in tree.find_all(nodes.For):
                if not (isinstance(loop.iter, nodes.Filter) and loop.iter.name == LOOP_FILTER):
                    loop.iter = nodes.Filter(loop.iter, LOOP_FILTER, [], [], None, None, lineno=loop.iter.lineno)
            return tree

    return BoundedEnvironment


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


def _declare(recipe_dir: Path, name: str, role: str, where: str | None) -> tuple[Path, bool]:
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


def make_env(files: TemplateFiles, limits: RenderLimits | None = None) -> Any:
    from jinja2 import StrictUndefined

    return _environment_class()(limits or files.limits, loader=files.loader(), undefined=StrictUndefined,
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
            path, own = _declare(recipe_dir, name, role, self.where.get(role))
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

        previous = getattr(_budget, "deadline", None), getattr(_budget, "limit_s", None)
        _budget.deadline, _budget.limit_s = time.monotonic() + self.limits.time_s, self.limits.time_s
        try:
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
        finally:
            _budget.deadline, _budget.limit_s = previous


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
