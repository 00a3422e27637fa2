"""The plugin manager: built-ins and third-party plugins, all found through the `clinseek` entry-point group.

`CLINSEEK_LOAD_PLUGINS=a,b` loads only the named third-party distributions' entry points (empty: none); the
built-in plugins (entry points of the clinseek distribution) always load. A plugin that fails to import is
remembered with its error and reported only when something it would provide is asked for.
"""
from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from typing import Any

import pluggy

from clinseek import hookspecs
from clinseek.errors import UserError

GROUP = "clinseek"
BUILTIN_DIST = "clinseek"
KINDS = ("toolsets", "hosts", "task_sources", "exporters", "scorers", "embedders")
_KIND_ATTR = {"toolsets": "name", "hosts": "provider", "task_sources": "name", "exporters": "name",
              "scorers": "name", "embedders": "name"}
_KIND_WORD = {"toolsets": "toolset", "hosts": "host provider", "task_sources": "task source",
              "exporters": "exporter", "scorers": "scorer", "embedders": "embedder"}


@dataclass
class PluginInfo:
    name: str
    distribution: str
    version: str
    module: str
    builtin: bool
    error: str | None = None
    hooks: list[str] = field(default_factory=list)


class Registry:
    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("clinseek")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.items: dict[str, dict[str, tuple[Any, str]]] = {k: {} for k in KINDS}
        self.conflicts: list[str] = []

    # Loading ---------------------------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        allow = os.environ.get("CLINSEEK_LOAD_PLUGINS")
        allowed = None if allow is None else {a.strip() for a in allow.split(",") if a.strip()}
        for ep in metadata.entry_points(group=GROUP):
            dist = ep.dist.name if ep.dist else "?"
            builtin = _normalise(dist) == BUILTIN_DIST
            if not builtin and allowed is not None and ep.name not in allowed and _normalise(dist) not in allowed:
                continue
            if ep.name in self.plugins:
                continue
            info = PluginInfo(name=ep.name, distribution=dist, version=ep.dist.version if ep.dist else "?",
                              module=ep.value, builtin=builtin)
            try:
                module = ep.load()
                self.pm.register(module, name=ep.name)
            except Exception as exc:  # noqa: BLE001 - a broken plugin fails only the recipes that use it
                info.error = f"{type(exc).__name__}: {exc}"
                if os.environ.get("CLINSEEK_DEBUG"):
                    traceback.print_exc(file=sys.stderr)
            self.plugins[ep.name] = info

    def register_module(self, module: Any, name: str, distribution: str = "(in-process)",
                        version: str = "") -> None:
        """Register a plugin object directly (tests, notebooks)."""
        self.pm.register(module, name=name)
        self.plugins[name] = PluginInfo(name=name, distribution=distribution, version=version,
                                        module=getattr(module, "__name__", repr(module)), builtin=False)

    def collect(self) -> None:
        self.items = {k: {} for k in KINDS}
        self.conflicts = []
        for kind in KINDS:
            hook = getattr(self.pm.hook, f"register_{kind}")
            for impl in hook.get_hookimpls():
                plugin_name = impl.plugin_name

                def register(obj: Any, _kind: str = kind, _plugin: str = plugin_name) -> None:
                    self._add(_kind, obj, _plugin)

                try:
                    impl.function(register=register)
                except Exception as exc:  # noqa: BLE001 - one plugin's bad registration must not stop the others
                    info = self.plugins.get(plugin_name)
                    message = exc.message if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
                    if info is None:
                        raise
                    info.error = info.error or message
        for info in self.plugins.values():
            plugin = self.pm.get_plugin(info.name)
            if plugin is not None:
                info.hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])

    def _add(self, kind: str, obj: Any, plugin: str) -> None:
        key = getattr(obj, _KIND_ATTR[kind], None) or getattr(obj, "name", None)
        if not key:
            raise UserError(f"plugin {plugin!r} registered a {_KIND_WORD[kind]} without a name")
        if kind == "toolsets":
            _check_tool_names(obj, plugin)
        if key in self.items[kind] and self.items[kind][key][1] != plugin:
            self.conflicts.append(f"{_KIND_WORD[kind]} {key!r} is registered by both "
                                  f"{self.items[kind][key][1]!r} and {plugin!r}")
            return
        self.items[kind][key] = (obj, plugin)

    # Lookup ----------------------------------------------------------------------------------------------
    def get(self, kind: str, name: str, where: str | None = None) -> Any:
        if name in self.items[kind]:
            return self.items[kind][name][0]
        broken = [p for p in self.plugins.values() if p.error and _could_provide(p, name)]
        if broken:
            p = broken[0]
            raise UserError(f"{_KIND_WORD[kind]} {name!r} comes from plugin {p.name!r} ({p.distribution}), "
                            f"which failed to load: {p.error}", where=where,
                            hint="fix or reinstall that plugin; `clinseek plugins` lists every plugin's state")
        from clinseek.recipe.suggest import did_you_mean

        known = sorted(self.items[kind])
        raise UserError(f"unknown {_KIND_WORD[kind]} {name!r}{did_you_mean(name, known)}", where=where,
                        hint=f"available: {', '.join(known) or 'none'}; install the plugin that provides it "
                             f"(and list it in CLINSEEK_LOAD_PLUGINS if that is set)")

    def names(self, kind: str) -> list[str]:
        return sorted(self.items[kind])

    def provider_of(self, kind: str, name: str) -> str | None:
        entry = self.items[kind].get(name)
        return entry[1] if entry else None


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-")


def _could_provide(info: PluginInfo, name: str) -> bool:
    return name == info.name or name.startswith(info.name) or info.name.startswith(name)


@lru_cache(maxsize=1)
def loaded_registry() -> Registry:
    """Plugins imported, nothing collected yet: enough for `register_commands` (`clinseek --help` stays cheap,
    since collecting imports every toolset and host class)."""
    reg = Registry()
    reg.load_entry_points()
    return reg


@lru_cache(maxsize=1)
def get_registry() -> Registry:
    reg = loaded_registry()
    reg.collect()
    return reg


def reset_registry() -> None:
    get_registry.cache_clear()
    loaded_registry.cache_clear()


def _check_tool_names(cls: Any, plugin: str) -> None:
    """Enforced when a toolset is registered, so a bad name fails for its author, not in a user's run: every tool
    is `<toolset>_<verb>` and matches the pattern every provider accepts."""
    from clinseek.toolsets import TOOL_NAME_RE

    # A toolset that reproduces another system's vocabulary (names a model was trained on) keeps those names
    # unprefixed; they must still match the pattern, and never shadow the built-in finish.
    foreign = getattr(cls, "foreign_tool_names", False)
    for spec in cls.tool_specs():
        if foreign and TOOL_NAME_RE.match(spec.name) and spec.name != "finish":
            continue
        if not TOOL_NAME_RE.match(spec.name) or not spec.name.startswith(f"{cls.name}_"):
            raise UserError(f"plugin {plugin!r}: tool {spec.name!r} of toolset {cls.name!r} must be named "
                            f"{cls.name}_<verb> and match {TOOL_NAME_RE.pattern}",
                            hint=f"rename it, e.g. @tool(name=\"{cls.name}_{spec.name.split('_')[-1]}\")")


def resolve_database(spec: str, toolset: str, context: Any = None) -> str:
    """A toolset's `database:` value after the plugins' `resolve_database` hook (e.g. `demo:` -> the demo cohort's
    file); the value unchanged when no plugin claims it. Toolsets call this instead of importing another plugin."""
    answer = get_registry().pm.hook.resolve_database(spec=spec, toolset=toolset, context=context)
    return spec if answer is None else str(answer)

