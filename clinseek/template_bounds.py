"""Bounds on rendering a prompt template: a time limit, an output size limit, a cap on range(), and checks on the
operations that could make a huge value (string and list multiplication, `%` and str.format widths, repeat-heavy
str methods and filters, big integers). Each bound ends rendering with one message naming the bound.
"""
from __future__ import annotations

import functools
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable

SIZE_FILTERS = ("center", "indent", "batch", "slice")  # their numbers are widths or counts of what they make
LOOP_FILTER = "_clinseek_budget"  # wraps every for loop's iterable (a template using it gains nothing)


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
def environment_class() -> type:
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
            bits = self.limits.max_int_bits
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


class render_budget:
    """`with render_budget(seconds):` the time limit of one render on this thread (renders may nest: an include
    renders inside its parent, and the outer budget is restored after)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __enter__(self) -> None:
        self.previous = getattr(_budget, "deadline", None), getattr(_budget, "limit_s", None)
        _budget.deadline, _budget.limit_s = time.monotonic() + self.seconds, self.seconds

    def __exit__(self, *exc: Any) -> None:
        _budget.deadline, _budget.limit_s = self.previous


