"""The plugin manager: built-in plugins plus those installed under the entry-point group
``dcmweb``. Built once per process (workers build their own), never at import time.

A broken plugin (it cannot be imported, implements a hook that does not exist, or raises
while registering its transforms or commands) is named in one line on stderr, left out,
and listed by `dcmweb plugins` with the reason: it never breaks dcmweb itself. Hooks are
called one implementation at a time (`run_hook`) so a failure names its plugin.
"""

from __future__ import annotations

import importlib
import multiprocessing
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from ..errors import OptionError, PluginError, describe
from . import hookspecs
from .entry_points import entry_points

ENTRY_POINT_GROUP = "dcmweb"
DEFAULT_PLUGINS = (
    "dcmweb_static.plugins.builtin.strip_private",
    "dcmweb_static.plugins.builtin.deidentify",
)

_BUILT_IN = {m.rsplit(".", 1)[1].replace("_", "-") for m in DEFAULT_PLUGINS}
TransformFunction = Callable[[Any, Mapping[str, str]], None]
#: prepare(options, output): fills in or checks options in the parent before a run;
#: returns notices for stderr; raises OptionError to refuse the run (a usage error)
PrepareFunction = Callable[[dict[str, str], Path], Iterable[str] | None]




@dataclass(frozen=True)
class Transform:
    name: str
    function: TransformFunction
    description: str
    plugin: str
    #: option key → help text; any other key is a usage error
    options: Mapping[str, str] = field(default_factory=dict)
    prepare: PrepareFunction | None = None


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus what dcmweb knows about each plugin: versions, the broken
    ones and why, and the transforms (found again only when plugins change)."""

    def __init__(self) -> None:
        super().__init__("dcmweb")
        self.versions: dict[str, str] = {}
        self.broken: dict[str, str] = {}
        self.transforms: dict[str, Transform] | None = None

    def register(self, plugin: object, name: str | None = None) -> str | None:
        self.transforms = None
        return super().register(plugin, name)

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        self.transforms = None
        return super().unregister(plugin, name)

    def leave_out(self, name: str, reason: str) -> None:
        """Unregister a broken plugin and say so once (in the parent process only:
        workers inherit or rebuild the same finding)."""
        plugin = self.get_plugin(name)
        if plugin is not None:
            self.unregister(plugin)
        if name in self.broken:
            return
        self.broken[name] = reason
        if multiprocessing.parent_process() is None:
            sys.stderr.write(f"dcmweb: plugin {name!r} left out: {reason}\n")
            sys.stderr.flush()


def _unknown_hooks(pm: PluginManager, plugin: object) -> list[str]:
    """Hooks the plugin implements that dcmweb does not have (pluggy's check_pending,
    for one plugin, so the others stay)."""
    return sorted(caller.name for caller in pm.get_hookcallers(plugin) or []
                  if not caller.has_spec() and any(
                      impl.plugin is plugin and not impl.optionalhook
                      for impl in caller.get_hookimpls()))


def get_plugin_manager() -> PluginManager:
    """A new plugin manager with the built-in and the installed plugins; a plugin that
    fails to load is left out. The caller keeps it and passes it on (the CLI makes one
    per process; a library caller or a test may make its own, or build an empty
    `PluginManager` and register what it wants)."""
    pm = PluginManager()
    pm.add_hookspecs(hookspecs)
    for module_name in DEFAULT_PLUGINS:
        module = importlib.import_module(module_name)
        pm.register(module, name=module_name.rsplit(".", 1)[1].replace("_", "-"))
    for entry_point in entry_points(ENTRY_POINT_GROUP):
        name = entry_point.name
        if pm.get_plugin(name) is not None or name in pm.broken:
            continue
        version = entry_point.version
        if version is not None:
            pm.versions[name] = version
        try:
            plugin = entry_point.load()
        except Exception as exc:  # a broken plugin must not break dcmweb
            pm.leave_out(name, f"cannot be imported ({entry_point.value}): {describe(exc)}")
            continue
        try:
            pm.register(plugin, name=name)
        except Exception as exc:  # e.g. a hook with arguments its spec does not have
            pm.leave_out(name, describe(exc))
            continue
        unknown = _unknown_hooks(pm, plugin)
        if unknown:
            pm.leave_out(name, f"implements {', '.join(map(repr, unknown))}, not a dcmweb "
                               "hook (misspelt?)")
    transforms(pm)  # now, so a plugin broken there is left out before any command runs
    return pm


def run_hook(pm: PluginManager, hook: str, arguments: Mapping[str, Any], *,
             on_error: Callable[[PluginError], None] | None = None,
             context: str = "") -> list[Any]:
    """Call each implementation of `hook` in pluggy's order and return the results
    (``*_results`` hooks: as lists, so a generator's errors are caught here too).

    An exception becomes a PluginError naming the plugin and hook: raised, or, given
    `on_error`, passed to it while the other plugins still run."""
    values = []
    for impl in reversed(getattr(pm.hook, hook).get_hookimpls()):
        try:
            value = impl.function(*(arguments[arg] for arg in impl.argnames))
            if hook.endswith("_results"):
                value = list(value or [])
        except Exception as exc:
            error = PluginError(pm.get_name(impl.plugin) or repr(impl.plugin), hook, exc,
                                context)
            if on_error is None:
                raise error from exc
            on_error(error)
            continue
        values.append(value)
    return values


@dataclass
class PluginFailures:
    """Failures of parent-side hooks (instance_converted, series/study_results) in a
    run: the first reason and a count per plugin and hook, for the summary and report."""

    found: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def add(self, error: PluginError) -> None:
        entry = self.found.setdefault((error.plugin, error.hook), {
            "plugin": error.plugin, "hook": error.hook, "reason": str(error), "count": 0})
        entry["count"] += 1

    def __bool__(self) -> bool:
        return bool(self.found)

    def records(self) -> list[dict[str, Any]]:
        return [dict(entry) for entry in self.found.values()]

    def lines(self) -> list[str]:
        return [entry["reason"] + (f" ({entry['count']} times)" if entry["count"] > 1 else "")
                for entry in self.found.values()]


def transforms(pm: PluginManager) -> dict[str, Transform]:
    """Every registered transform by name. A plugin whose register_transforms raises, or
    that registers a name another plugin has, is left out."""
    if getattr(pm, "transforms", None) is not None:
        return pm.transforms
    found: dict[str, Transform] = {}
    for impl in list(pm.hook.register_transforms.get_hookimpls()):  # registration order
        plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
        mine: dict[str, Transform] = {}

        def register(name: str, function: TransformFunction, description: str = "",
                     options: Mapping[str, str] | None = None,
                     prepare: PrepareFunction | None = None,
                     _plugin: str = plugin_name, _mine: dict[str, Transform] = mine) -> None:
            other = found.get(name) or _mine.get(name)
            if other is not None:
                raise ValueError(f"transform {name!r} is already registered by plugin "
                                 f"{other.plugin!r}")
            _mine[name] = Transform(name, function, description, _plugin,
                                    dict(options or {}), prepare)

        try:
            impl.function(register=register)
        except Exception as exc:
            pm.leave_out(plugin_name, f"failed in register_transforms: {describe(exc)}")
            continue
        found.update(mine)
    pm.transforms = found
    return found


def prepare_transforms(pm: PluginManager, names: Iterable[str], values: Iterable[str],
                       output: Path) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Options per transform from ``NAME.KEY=VALUE`` items, checked against what each
    transform declares and given to its `prepare` in the parent before the run.
    Returns (options, notices); raises OptionError for anything unusable."""
    available = transforms(pm)
    options: dict[str, dict[str, str]] = {}
    for name in names:
        if name not in available:
            raise OptionError(f"no transform named {name!r}; installed: "
                              f"{', '.join(sorted(available)) or 'none'}")
        options[name] = {}
    for item in values:
        key, sep, value = item.partition("=")
        name, dot, option = key.partition(".")
        if not sep or not dot or name not in options:
            raise OptionError(f"{item!r} is not NAME.KEY=VALUE for a --plugin NAME")
        declared = available[name].options
        if not declared:
            raise OptionError(f"transform {name!r} takes no options (got {option!r})")
        if option not in declared:
            raise OptionError(f"transform {name!r} has no option {option!r}; valid keys: "
                              f"{', '.join(sorted(declared))}")
        options[name][option] = value
    notices: list[str] = []
    for name, given in options.items():
        prepare = available[name].prepare
        if prepare is None:
            continue
        try:
            notices.extend(prepare(given, output) or [])
        except OptionError as exc:
            raise OptionError(f"transform {name!r}: {exc}") from exc
        except Exception as exc:
            raise OptionError(str(PluginError(available[name].plugin, f"prepare of {name!r}",
                                              exc))) from exc
    return options, notices


def plugin_summaries(pm: PluginManager) -> list[dict[str, Any]]:
    """For `dcmweb plugins`: each plugin with its hooks, transforms and their options;
    broken plugins with the reason they were left out."""
    registered = transforms(pm)
    out = []
    for name, plugin in pm.list_name_plugin():
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        mine = sorted((t for t in registered.values() if t.plugin == name),
                      key=lambda t: t.name)
        out.append({
            "name": name,
            "version": pm.versions.get(name, "built-in" if name in _BUILT_IN else None),
            "hooks": hooks,
            "transforms": [t.name for t in mine],
            "options": {t.name: dict(t.options) for t in mine},
        })
    for name, reason in pm.broken.items():
        out.append({"name": name, "version": pm.versions.get(name), "broken": reason,
                    "hooks": [], "transforms": [], "options": {}})
    return sorted(out, key=lambda entry: str(entry["name"]))
