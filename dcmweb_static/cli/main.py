"""The `dcmweb` command line: parses options, runs the library, reports. No work here."""

from __future__ import annotations

import errno
import logging
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import click
import orjson

from .. import __version__
from ..encode.dicom_json import BulkThresholds
from ..errors import OptionError
from ..index.aggregate import aggregate, all_studies
from ..index.deduplicated import rebuild_instances
from ..p10.parse import MAX_INFLATED_SIZE
from ..pathnames import display_path
from ..plugins.manager import (
    PluginFailures,
    PluginManager,
    get_plugin_manager,
    plugin_summaries,
    prepare_transforms,
    run_hook,
)
from ..run.batch import Converter
from ..run.inputs import InputSpool, iter_input_files, output_overlap
from ..run.options import ConvertOptions
from ..run.report import ExitCode, write_report
from ..run.result import InstanceResult
from ..run.stopping import Interrupted
from ..serve.nginx import nginx_server_block
from ..store import LocalStore, Store, is_url, open_store
from ..store import describe_os_error as describe

_plugins: PluginManager | None = None


def plugin_manager() -> PluginManager:
    """The command line's plugin manager: made once per process, handed to the library."""
    global _plugins
    if _plugins is None:
        _plugins = get_plugin_manager()
    return _plugins


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, package_name="dcmweb-static", prog_name="dcmweb")
def main() -> None:
    """Turn DICOM Part 10 files into a static DICOMweb tree."""


def _plugin_options(names: tuple[str, ...], values: tuple[str, ...], output: Path,
                    quiet: bool) -> dict[str, dict[str, str]]:
    """Checked options per transform, prepared by each transform's plugin."""
    try:
        options, notices = prepare_transforms(plugin_manager(), names, values, output)
    except OptionError as exc:
        raise click.UsageError(str(exc)) from None
    if not quiet:
        for notice in notices:
            click.echo(notice, err=True)
    return options


def _plugin_failures(failures: PluginFailures) -> None:
    """Parent-side plugin failures of `index`/`rebuild`: each on stderr, exit 1."""
    for line in failures.lines():
        click.echo(line, err=True)
    if failures:
        sys.exit(ExitCode.FILES_FAILED)




@main.command(name="nginx-config")
@click.argument("output", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--listen", default="127.0.0.1:8080", show_default=True,
              help="nginx listen address.")
def nginx_config(output: Path, listen: str) -> None:
    """Print an nginx server block that serves OUTPUT as DICOMweb."""
    click.echo(nginx_server_block(output, listen), nl=False)


@main.command(name="plugins")
def list_plugins() -> None:
    """List installed plugins, the hooks they implement and the transforms they register."""
    summaries = plugin_summaries(plugin_manager())
    click.echo(orjson.dumps(summaries, option=orjson.OPT_INDENT_2).decode())


class _NoProgress:
    """What --quiet uses instead of a tqdm bar (tqdm's import alone costs ~25 ms)."""

    def update(self, n: int) -> None:
        pass

    def write(self, line: str, file: Any = None) -> None:
        click.echo(line, err=True)

    def close(self) -> None:
        pass


def _progress_bar(total: int, quiet: bool) -> Any:
    if quiet:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=total, unit="file", file=sys.stderr, dynamic_ncols=True)


def _open_output(target: str, option_values: tuple[str, ...], cache_control: str | None
                 ) -> Store:
    """The store -d names: a URL is never made a local folder (`s3:`); its options and
    prefix are checked here, so a bad one is a usage error before any file is read."""
    if not is_url(target):
        if cache_control:
            raise click.UsageError("--cache-control needs an object store URL as -d "
                                   "(s3://bucket/prefix)")
        return LocalStore(target)
    try:
        return open_store(target, _storage_options(option_values), cache_control)
    except ImportError as exc:
        raise click.UsageError(f"{target}: {exc.name or exc} is not installed "
                               "(pip install 'dcmweb-static[s3]')") from None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="-d") from None


def _storage_options(values: tuple[str, ...]) -> dict[str, Any]:
    """--storage-option pairs (for an object store output and object store inputs)."""
    from ..store.opening import parse_storage_options

    try:
        return parse_storage_options(values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--storage-option") from None


def _ensure_output(output: Path) -> None:
    """Create -d; a path that cannot be a folder is a usage error (exit 2), a folder that
    cannot be written an error (exit 1), each said as what it is."""
    if output.is_symlink() and not output.exists():
        raise click.BadParameter(f"{output} is a symbolic link to a missing target "
                                 f"({os.readlink(output)})", param_hint="-d")
    blocker = next((p for p in (output, *output.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise click.BadParameter(f"{blocker} is a file, not a folder", param_hint="-d")
    try:
        LocalStore(output).folders("")
        if os.statvfs(output).f_flag & os.ST_RDONLY:
            raise OSError(errno.EROFS, "read-only file system")
        if not os.access(output, os.W_OK):
            raise PermissionError(errno.EACCES, "not writable")
    except OSError as exc:
        raise click.ClickException(f"cannot create output folder {output}: "
                                   f"{getattr(exc, 'strerror', None) or exc}") from None


def _existing_tree(output: Path) -> None:
    if not (output / "studies").is_dir():
        raise click.ClickException(f"{output} holds no studies/ folder: not a dcmweb tree")


class ByteSize(click.ParamType):
    """A size in bytes: plain digits or with a binary unit (512M, 4G, 1GiB)."""

    name = "size"
    _SIZE = re.compile(r"(\d+)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = self._SIZE.fullmatch(str(value).strip())
        if not match:
            self.fail(f"{value!r} is not a size (e.g. 1048576, 512M, 4G)", param, ctx)
        return int(match[1]) << (10 * " kmgt".index(match[2].lower() or " "))


gzip_option = click.option("--gzip/--no-gzip", "use_gzip", default=True, show_default=True,
                           help="Write study/series files as .gz.")
base_url_option = click.option("--base-url", default=None,
                               help="Absolute base URL for RetrieveURL attributes.")


@main.command()
@click.argument("output", type=click.Path(file_okay=False, path_type=Path))
@gzip_option
@base_url_option
def index(output: Path, use_gzip: bool, base_url: str | None) -> None:
    """Regenerate every study/series metadata and QIDO file of OUTPUT from its instances."""
    _existing_tree(output)
    failures = PluginFailures()
    try:
        store = LocalStore(output)
        count = aggregate(store, all_studies(store), plugin_manager(), gzip=use_gzip,
                          base_url=base_url,
                          failures=failures)
    except OSError as exc:
        raise _tree_error(output, exc) from None
    click.echo(f"indexed {count} studies in {output}", err=True)
    _plugin_failures(failures)


def _tree_error(output: Path, exc: OSError) -> click.ClickException:
    """An I/O error of the tree as one line (exit 1); files written before it stay whole."""
    return click.ClickException(f"study and series files of {output} not (all) updated: "
                                f"{describe(exc)}")


@main.command()
@click.argument("output", type=click.Path(file_okay=False, path_type=Path))
@gzip_option
@base_url_option
def rebuild(output: Path, use_gzip: bool, base_url: str | None) -> None:
    """Regenerate the full instance metadata files from the deduplicated form, then the
    study/series files."""
    _existing_tree(output)
    failures = PluginFailures()
    try:
        store = LocalStore(output)
        count = rebuild_instances(store, gzip=use_gzip)
        aggregate(store, all_studies(store), plugin_manager(), gzip=use_gzip, base_url=base_url,
                  failures=failures)
    except OSError as exc:
        raise _tree_error(output, exc) from None
    click.echo(f"rebuilt {count} instance metadata files in {output}", err=True)
    _plugin_failures(failures)


@main.command()
@click.argument("output", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--output-dir", "dest", default=".", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the <SOPInstanceUID>.dcm files.")
@click.option("--study", default=None, help="Only this study.")
@click.option("--series", default=None, help="Only this series (needs --study).")
@click.option("--instance", default=None, help="Only this instance (needs --series).")
def part10(output: Path, dest: Path, study: str | None, series: str | None,
           instance: str | None) -> None:
    """Write instances of OUTPUT as DICOM Part 10 files, rebuilt from the tree alone:
    byte for byte the source unless a transform changed them."""
    from ..errors import InvalidUIDError
    from ..p10.uids import check_uid
    from ..tree.part10 import write_part10

    _existing_tree(output)
    if (series and not study) or (instance and not series):
        raise click.UsageError("--series needs --study, and --instance needs --series")
    try:
        study, series, instance = (None if uid is None else check_uid(uid, what) for uid, what
                                   in ((study, "--study"), (series, "--series"),
                                       (instance, "--instance")))
    except InvalidUIDError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        results = write_part10(output, dest, study, series, instance)
    except OSError as exc:
        raise click.ClickException(f"cannot write into {dest}: {describe(exc)}") from None
    if not results:
        raise click.ClickException(f"no instance of {output} matches the selection")
    failed = [r for r in results if r.status != "written"]
    for result in failed:
        click.echo(f"failed: {result.sop_uid}: {result.reason}", err=True)
    click.echo(f"wrote {len(results) - len(failed)} of {len(results)} instances to {dest}",
               err=True)
    if failed:
        sys.exit(ExitCode.FILES_FAILED)


class _InputType(click.ParamType):
    """An existing file or folder, or an object store URL (`s3://bucket/prefix/`, kept as
    text: a Path would fold its `//`)."""

    name = "path"
    _path = click.Path(exists=True, path_type=Path)

    def convert(self, value: Any, param: Any, ctx: Any) -> Path | str:
        if isinstance(value, str) and is_url(value):
            return value
        return self._path.convert(value, param, ctx)


_CONVERSION_OPTIONS = (
    click.option("--gzip/--no-gzip", "use_gzip", default=True, show_default=True,
                 help="Write metadata as .gz files (served with Content-Encoding: gzip)."),
    click.option("--private-bulk-size", "--privateBulkSize", "private_bulk_size", default=64,
                 show_default=True, type=click.IntRange(min=0),
                 help="Private values longer than this many bytes become BulkDataURI."),
    click.option("--public-bulk-size", "--publicBulkSize", "public_bulk_size", default=131074,
                 show_default=True, type=click.IntRange(min=0),
                 help="Public values longer than this many bytes become BulkDataURI."),
    click.option("--base-url", default=None,
                 help="Write absolute BulkDataURIs under this URL instead of relative ones."),
    click.option("--deduplicate", is_flag=True,
                 help="Write the deduplicated metadata form under OUT/deduplicated/."),
    click.option("--instances", is_flag=True,
                 help="With --deduplicate: write the per-instance metadata files as well."),
    click.option("--plugin", "plugin_names", multiple=True, metavar="NAME",
                 help="Turn on a named transform (see `dcmweb plugins`); repeatable, in order."),
    click.option("--plugin-option", "plugin_option_values", multiple=True,
                 metavar="NAME.KEY=VALUE",
                 help="An option for a transform (keys: see `dcmweb plugins`); repeatable."),
    click.option("--max-inflated-size", type=ByteSize(), default=MAX_INFLATED_SIZE,
                 show_default="4G",
                 help="A deflated file inflating to more bytes fails (e.g. 512M, 4G)."),
    click.option("--part10", is_flag=True,
                 help="Also write each instance's P10 as a ready multipart file, so static "
                      "servers answer WADO-RS retrieval of instances (about doubles the tree)."),
    click.option("--rendered", is_flag=True,
                 help="Also write each frame rendered (.../frames/N/rendered, .../rendered)."),
    click.option("--thumbnails", is_flag=True,
                 help="Also write instance, series and study thumbnails (fit in 256x256)."),
    click.option("--rendered-format", type=click.Choice(["jpeg", "png"]), default="jpeg",
                 show_default=True, help="Format of rendered frames and thumbnails."),
)


def conversion_options(command: Any) -> Any:
    """The options of how instances are converted, shared by `convert` and the receivers
    (`listen`); `conversion_from` makes the ConvertOptions of their values."""
    for option in reversed(_CONVERSION_OPTIONS):
        command = option(command)
    return command


def conversion_from(output: Path, values: dict[str, Any], *, quiet: bool,
                    storage_options: dict[str, Any] | None = None) -> ConvertOptions:
    """The ConvertOptions of `conversion_options`' values (popped from `values`)."""
    plugin_names = values.pop("plugin_names")
    plugin_options = _plugin_options(plugin_names, values.pop("plugin_option_values"), output,
                                     quiet)
    deduplicate, instances = values.pop("deduplicate"), values.pop("instances")
    return ConvertOptions(
        output=output,
        gzip=values.pop("use_gzip"),
        thresholds=BulkThresholds(private=values.pop("private_bulk_size"),
                                  public=values.pop("public_bulk_size")),
        base_url=values.pop("base_url"),
        deduplicate=deduplicate,
        instances=instances or not deduplicate,
        plugins=plugin_names,
        plugin_options=plugin_options,
        max_inflated_size=values.pop("max_inflated_size"),
        part10=values.pop("part10"),
        rendered=values.pop("rendered"),
        thumbnails=values.pop("thumbnails"),
        rendered_format=values.pop("rendered_format"),
        storage_options=storage_options or {},
    )


@main.command()
@click.argument("output", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--stow", is_flag=True,
              help="Accept STOW-RS (POST /studies) and convert what arrives into OUTPUT, "
                   "with the conversion options below (use the tree's).")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --stow: POSTs must carry 'Authorization: Bearer <the token in this "
                   "file>' (a file only its owner can read).")
@click.option("--max-part-size", type=ByteSize(), default="4G", show_default=True,
              help="With --stow: a larger part of a request fails (out of resources).")
@click.option("--max-parts", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="With --stow: parts of one request past this many fail.")
@click.option("--debounce", "debounce_seconds", default=2.0, show_default=True,
              type=click.FloatRange(min=0), metavar="SECONDS",
              help="With --stow: study/series/QIDO files follow this long after a study's "
                   "last instance.")
@conversion_options
def serve(output: Path, host: str, port: int, stow: bool, token_file: Path | None,
          max_part_size: int, max_parts: int, debounce_seconds: float,
          **conversion: Any) -> None:
    """Serve OUTPUT as DICOMweb (WADO-RS, QIDO-RS) for local use; with --stow also
    receive instances (STOW-RS) into it."""
    from ..serve.app import serve as run_server
    from ..serve.stow import StowConfig, StowSettings, read_token

    config = None
    if stow:
        try:
            token = read_token(token_file) if token_file is not None else None
        except OptionError as exc:
            raise click.BadParameter(str(exc), param_hint="--token-file") from None
        options = conversion_from(output, conversion, quiet=False)
        base_url = options.base_url.rstrip("/") if options.base_url else None
        settings = StowSettings(token=token, max_parts=max_parts, max_part_bytes=max_part_size,
                                base_url=base_url)
        config = StowConfig(options, plugin_manager(), settings, debounce_seconds)
    elif token_file is not None:
        raise click.UsageError("--token-file protects STOW-RS: it needs --stow")
    what = "DICOMweb with STOW-RS" if stow else "DICOMweb"
    click.echo(f"serving {output} as {what} at http://{host}:{port}/ (Ctrl-C stops)", err=True)
    run_server(output, host, port, config)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=_InputType())
@click.option("-d", "--dicomweb-dir", "output_target", default="/dicomweb", show_default=True,
              metavar="DIR|URL",
              help="Output folder, or object store URL (s3://bucket/prefix): the DICOMweb "
                   "base URL.")
@click.option("--storage-option", "storage_option_values", multiple=True, metavar="KEY=VALUE",
              help="An fsspec option of the object store (e.g. endpoint_url=..., anon=true); "
                   "repeatable. Credentials come from the standard AWS configuration.")
@click.option("--cache-control", default=None, metavar="VALUE",
              help="Cache-Control header of every object written into an object store.")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT|local",
              help="Convert on a Dask cluster (pip install 'dcmweb-static[dask]'); `local` "
                   "starts a LocalCluster of -j workers.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Worker processes [default: all cores].")
@conversion_options
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a JSON record of every input file here.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary.")
@click.option("-v", "--verbose", is_flag=True, help="List every converted file and problem.")
def convert(inputs: tuple[Path | str, ...], output_target: str,
            storage_option_values: tuple[str, ...],
            cache_control: str | None, scheduler: str | None, jobs: int | None,
            report_path: Path | None, quiet: bool, verbose: bool, **conversion: Any) -> None:
    """Convert DICOM files and folders (searched recursively) into OUTPUT."""
    store = _open_output(output_target, storage_option_values, cache_control)
    storage_options = _storage_options(storage_option_values)
    url = getattr(store, "url", None)
    # a transform's prepare() looks into a local tree only: an object store's tree is not
    # checked there (see docs/deployment.md)
    output = Path(output_target)
    options = conversion_from(output, conversion, quiet=quiet, storage_options=storage_options)
    if url is None:
        try:
            notes = output_overlap([i for i in inputs if isinstance(i, Path)], output)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        for note in notes if not quiet else []:
            click.echo(note, err=True)
        _ensure_output(output)
    try:
        files = InputSpool(iter_input_files(inputs, exclude=None if url else output,
                                            storage_options=storage_options))
    except ImportError as exc:
        raise click.UsageError(f"{exc.name or exc} is not installed, needed for object "
                               "store inputs (pip install 'dcmweb-static[s3]')") from None
    except (OSError, ValueError) as exc:
        raise click.BadParameter(describe(exc) if isinstance(exc, OSError) else str(exc),
                                 param_hint="INPUTS") from None
    progress = _progress_bar(len(files), quiet)

    def on_result(result: InstanceResult) -> None:
        progress.update(1)
        if verbose:
            progress.write(display_path(f"{result.status}: {result.path}"
                                        + (f": {result.reason}" if result.reason else "")),
                           file=sys.stderr)

    try:
        converter = Converter(options, jobs=jobs, on_result=on_result, keep_results=False,
                              plugin_manager=plugin_manager(), store=store,
                              scheduler=scheduler)
    except OptionError as exc:  # a store Dask workers cannot reach (memory://)
        progress.close()
        raise click.UsageError(str(exc)) from None
    summary = None
    try:
        summary = converter.run(files)
    except ImportError as exc:
        progress.close()
        raise click.UsageError(str(exc)) from None
    except Interrupted as stopped:  # SIGINT, SIGTERM, SIGHUP: the report still says so
        summary = stopped.summary
        progress.close()
        click.echo(f"interrupted ({stopped}): {sum(summary.counts.values())} of {len(files)} "
                   "files done; nothing indexed, run again to finish", err=True)
    finally:
        progress.close()
        if summary is not None and summary.error:
            click.echo(f"Error: {summary.error}", err=True)
        if summary is not None and report_path is not None:
            try:
                write_report(summary, report_path)
            except OSError as exc:
                click.echo(f"Error: cannot write the report: {describe(exc)}", err=True)
                summary.error = summary.error or "report not written"
    if summary.interrupted is not None:
        sys.exit(summary.exit_code)
    if not quiet:
        from rich.console import Console  # imported only here: start-up time counts

        from .summary_table import print_summary

        print_summary(summary, Console(stderr=True), verbose=verbose)
    sys.exit(summary.exit_code)


@main.command()
@click.argument("output_target", metavar="OUT")
@click.option("--port", default=11112, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port to listen on (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface).")
@click.option("--ae-title", default="DCMWEB", show_default=True, help="This receiver's AE title.")
@click.option("--allow-ae", "allowed_aes", multiple=True, metavar="AE",
              help="Accept associations only from this calling AE title; repeatable "
                   "[default: from any].")
@click.option("--max-associations", default=10, show_default=True, type=click.IntRange(min=1),
              help="Associations served at once.")
@click.option("--debounce", "debounce_seconds", default=2.0, show_default=True,
              type=click.FloatRange(min=0), metavar="SECONDS",
              help="Study/series/QIDO files follow this long after a study's last instance.")
@click.option("--storage-option", "storage_option_values", multiple=True, metavar="KEY=VALUE",
              help="An fsspec option of an object store OUT (e.g. endpoint_url=...).")
@click.option("--cache-control", default=None, metavar="VALUE",
              help="Cache-Control header of every object written into an object store.")
@conversion_options
@click.option("-q", "--quiet", is_flag=True, help="Log only problems, not every association.")
def listen(output_target: str, port: int, host: str, ae_title: str,
           allowed_aes: tuple[str, ...], max_associations: int, debounce_seconds: float,
           storage_option_values: tuple[str, ...], cache_control: str | None, quiet: bool,
           **conversion: Any) -> None:
    """Receive instances over DICOM (C-ECHO, C-STORE) into OUT, a folder or an object store
    URL (s3://bucket/prefix), converted as `convert` does; runs until SIGTERM or Ctrl-C."""
    store = _open_output(output_target, storage_option_values, cache_control)
    storage_options = _storage_options(storage_option_values)
    output = Path(output_target)
    options = conversion_from(output, conversion, quiet=quiet, storage_options=storage_options)
    if getattr(store, "url", None) is None:
        _ensure_output(output)
    try:
        import pynetdicom  # noqa: F401  (an optional extra)

        from ..receive.scp import StorageSCP
    except ImportError as exc:
        raise click.UsageError(f"{exc.name or exc} is not installed, needed by `listen` "
                               "(pip install 'dcmweb-static[listen]')") from None
    from ..receive.ingest import Ingest
    from ..run.stopping import catch_stop

    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s dcmweb listen: %(message)s")
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)  # its own log: too chatty
    logging.getLogger("pydicom").setLevel(logging.ERROR)  # a data set's warnings: not ours
    try:
        with catch_stop() as stop, \
                Ingest(store, options, plugin_manager(), debounce_seconds=debounce_seconds) \
                as ingest:
            scp = StorageSCP(ingest, host=host, port=port, ae_title=ae_title,
                             allowed_aes=allowed_aes, max_associations=max_associations)
            try:
                bound = scp.start()
            except OSError as exc:
                raise click.ClickException(f"cannot listen on {host}:{port}: "
                                           f"{describe(exc)}") from None
            click.echo(f"listening on {bound[0]}:{bound[1]} as {ae_title!r} into "
                       f"{output_target} (SIGTERM or Ctrl-C stops)", err=True)
            try:
                signum = stop.wait()
                click.echo(f"stopping ({signal.Signals(signum).name}): finishing the "
                           "associations in progress", err=True)
            finally:
                scp.stop()
    except ValueError as exc:  # an AE title pynetdicom refuses
        raise click.UsageError(str(exc)) from None
    except OSError as exc:  # the port in use, a tree that cannot be written
        raise click.ClickException(describe(exc)) from None
    _plugin_failures(ingest.plugin_failures)


def _add_plugin_commands() -> None:
    """Commands from plugins; a plugin that fails here is left out, the others' stay."""
    pm = plugin_manager()
    run_hook(pm, "register_commands", {"cli": main},
             on_error=lambda error: pm.leave_out(error.plugin, f"failed in {error.hook}: "
                                                               f"{error.detail}"))


_add_plugin_commands()

if __name__ == "__main__":
    main()
