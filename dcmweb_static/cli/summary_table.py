"""The one-screen end-of-run summary (a rich table on stderr)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..pathnames import display_path
from ..run.report import RunSummary

MAX_LISTED_PROBLEMS = 20


def print_summary(summary: RunSummary, console: Console, *, verbose: bool = False) -> None:
    seconds = max(summary.seconds, 1e-9)
    mb = summary.bytes_in / 1e6
    title = f"dcmweb convert → {escape(display_path(str(summary.output)))}"
    table = Table(title=title, title_justify="left")
    for column in ("converted", "duplicates", "skipped", "failed", "MB in", "seconds",
                   "MB/s", "files/s"):
        table.add_column(column, justify="right")
    converted = summary.count("converted")
    table.add_row(
        str(converted),
        str(summary.count("duplicate")),
        str(summary.count("skipped")),
        str(summary.count("failed")),
        f"{mb:.1f}",
        f"{summary.seconds:.2f}",
        f"{mb / seconds:.1f}",
        f"{converted / seconds:.1f}",
    )
    console.print(table)
    if summary.objects:
        o = summary.objects
        console.print(f"objects: {o['written']} written, {o['unchanged']} unchanged, "
                      f"{o['removed']} removed", highlight=False)
    for line in summary.plugin_failures.lines():
        console.print(f"[red]plugin failure[/red] {escape(line)}", markup=True, highlight=False,
                      soft_wrap=True)
    problems = summary.problems
    shown = problems if verbose else problems[:MAX_LISTED_PROBLEMS]
    for result in shown:
        style = "red" if result.status == "failed" else "yellow"
        shown_text = escape(f"{result.path}: {result.reason}")  # "[" in a name is no markup
        console.print(f"[{style}]{result.status}[/{style}] {display_path(shown_text)}",
                      markup=True, highlight=False, soft_wrap=True)
    total = sum(summary.count(s) for s in ("duplicate", "skipped", "failed"))
    if total > len(shown):
        console.print(f"… and {total - len(shown)} more (see --report)")
