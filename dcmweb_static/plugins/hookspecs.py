"""The hooks a dcmweb plugin can implement (pluggy project name ``dcmweb``).

Every hook is documented in docs/plugins.md (a test checks). Hooks marked *worker* run
in the conversion worker processes: they must be importable module-level code and keep
no state between calls that other processes would need to see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from .api import InstanceView, ResultFile, SeriesView, StudyView

hookspec = pluggy.HookspecMarker("dcmweb")
hookimpl = pluggy.HookimplMarker("dcmweb")


@hookspec
def register_transforms(register: Callable[..., None]) -> None:
    """Register named dataset transforms, turned on per run with ``--plugin NAME``.

    Call ``register(name, function, description="...", options={KEY: help},
    prepare=None)`` for each. ``function(dataset, options)`` receives the pydicom Dataset
    of one instance (file meta excluded) before anything is written, changes it in place,
    and gets the ``--plugin-option NAME.KEY=VALUE`` values given for its name as a dict
    (keys not declared in ``options`` are a usage error). Runs in the *worker*, once per
    instance. ``prepare(options, output)`` runs once in the parent before the run: it may
    change the options dict (defaults, a per-run secret), returns notices for stderr and
    raises ``plugins.OptionError`` to refuse the run. Called once per process, when the
    plugin manager is built: a plugin that raises here is left out.
    """


@hookspec
def instance_results(instance: InstanceView) -> Iterable[ResultFile] | None:
    """Return files to write into underscore folders of an instance (``_vendor_name/``).

    Called in the *worker* after the instance's metadata and frames are staged, before
    the instance folder is moved into the tree. ``instance`` gives the metadata, the
    (transformed) dataset and the frame bytes.
    """


@hookspec
def series_results(series: SeriesView) -> Iterable[ResultFile] | None:
    """Return files for underscore folders of a series, called in the parent whenever the
    series' study/series files are rebuilt (so they always reflect every instance)."""


@hookspec
def study_results(study: StudyView) -> Iterable[ResultFile] | None:
    """Return files for underscore folders of a study; like ``series_results``."""


@hookspec
def instance_converted(record: dict[str, Any]) -> None:
    """See each input file's outcome in the parent process, as written to the report
    (``status`` converted, duplicate, skipped or failed; UIDs; reason). For summaries and
    exports; the return value is ignored."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands (or groups) to the ``dcmweb`` command line, e.g. ``@cli.command()``."""
