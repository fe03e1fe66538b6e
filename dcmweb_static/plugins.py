"""The plugin manager: built-in plugins plus those installed under the entry-point group
``dcmweb``. Built once per process (workers build their own), never at import time."""

from __future__ import annotations

import importlib.metadata
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pluggy

from . import hookspecs

ENTRY_POINT_GROUP = "dcmweb"
DEFAULT_PLUGINS = (
    "dcmweb_static.default_plugins.strip_private",
    "dcmweb_static.default_plugins.deidentify",
)

_BUILT_IN = {m.rsplit(".", 1)[1].replace("_", "-") for m in DEFAULT_PLUGINS}
TransformFunction = Callable[[Any, Mapping[str, str]], None]


@dataclass(frozen=True)
class Transform:
    name: str
    function: TransformFunction
    description: str
    plugin: str


_manager: pluggy.PluginManager | None = None
_versions: dict[str, str] = {}


def get_plugin_manager() -> pluggy.PluginManager:
    """The process's plugin manager; a plugin that fails to load only warns."""
    global _manager
    if _manager is not None:
        return _manager
    pm = pluggy.PluginManager("dcmweb")
    pm.add_hookspecs(hookspecs)
    for module_name in DEFAULT_PLUGINS:
        module = importlib.import_module(module_name)
        pm.register(module, name=module_name.rsplit(".", 1)[1].replace("_", "-"))
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if pm.get_plugin(entry_point.name) is not None:
            continue
        try:
            pm.register(entry_point.load(), name=entry_point.name)
            if entry_point.dist is not None:
                _versions[entry_point.name] = entry_point.dist.version
        except Exception as exc:  # a broken plugin must not break dcmweb
            warnings.warn(f"dcmweb plugin {entry_point.name!r} ({entry_point.value}) could not "
                          f"be loaded: {type(exc).__name__}: {exc}", stacklevel=2)
    pm.check_pending()
    _manager = pm
    return pm


def transforms(pm: pluggy.PluginManager | None = None) -> dict[str, Transform]:
    """Every registered transform by name; a name registered twice is an error."""
    pm = pm or get_plugin_manager()
    found: dict[str, Transform] = {}
    for impl in pm.hook.register_transforms.get_hookimpls():
        plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)

        def register(name: str, function: TransformFunction, description: str = "",
                     _plugin: str = plugin_name) -> None:
            if name in found:
                raise ValueError(f"transform {name!r} registered by both "
                                 f"{found[name].plugin} and {_plugin}")
            found[name] = Transform(name, function, description, _plugin)

        impl.function(register=register)
    return found


def plugin_summaries(pm: pluggy.PluginManager | None = None) -> list[dict[str, Any]]:
    """For `dcmweb plugins`: each plugin with its hooks and the transforms it registers."""
    pm = pm or get_plugin_manager()
    registered = transforms(pm)
    out = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: str(item[0])):
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        out.append({
            "name": name,
            "version": _versions.get(name, "built-in" if name in _BUILT_IN else None),
            "hooks": hooks,
            "transforms": sorted(t.name for t in registered.values() if t.plugin == name),
        })
    return out
