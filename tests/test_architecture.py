"""The package's shape, checked: no import cycle, and no write into a tree but through the
storage seam (`dcmweb_static/store/`)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from dcmweb_static import Converter, ConvertOptions, MemoryStore

PACKAGE = Path(__file__).resolve().parent.parent / "dcmweb_static"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Modules of the package that `path` imports, at any depth of its code, except
    imports only made for type checkers."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("dcmweb_static"):
                continue
            found.add(target)
            for alias in node.names:  # `from . import x` may name a module
                found.add(f"{target}.{alias.name}")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("dcmweb_static"))
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name}
            for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, " → ".join(cycle or [])


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


_WRITES = re.compile(
    r"os\.replace\(|os\.rename\(|\.write_bytes\(|\.write_text\(|shutil\.move\("
    r"|open\([^)]*['\"][wax]b?\+?['\"]|mode=['\"][wax]")


def test_no_writer_outside_the_store() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("store/") or relative == "synthetic.py":
            continue  # synthetic.py writes test inputs, not trees
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if _WRITES.search(line):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_the_writer_check_sees_writes() -> None:
    for line in ('open(path, "wb")', "os.replace(a, b)", "p.write_bytes(x)",
                 "open(p, mode='w')", 'open(p, "xb", buffering=0)'):
        assert _WRITES.search(line), line
    assert not _WRITES.search('open(path, "rb")')


ROOT = PACKAGE.parent


@pytest.mark.parametrize("deduplicate", [False, True], ids=["plain", "deduplicated"])
def test_a_memory_store_gets_the_same_bytes_as_a_folder(tmp_path: Path,
                                                        deduplicate: bool) -> None:
    """The seam is real: a conversion into a MemoryStore writes, name for name, the bytes a
    conversion into a folder writes (so nothing is written around the store)."""
    inputs = sorted((ROOT / "samples").rglob("*.dcm"))
    folder = tmp_path / "out"
    options = ConvertOptions(output=folder, deduplicate=deduplicate)
    on_disk = Converter(options, jobs=2).run(inputs)
    memory = MemoryStore()
    in_memory = Converter(options, jobs=2, store=memory).run(inputs)
    assert on_disk.counts == in_memory.counts and on_disk.count("converted") == len(inputs)
    files = {p.relative_to(folder).as_posix(): p.read_bytes()
             for p in folder.rglob("*") if p.is_file() and p.name != ".dcmweb.lock"}
    assert sorted(memory.objects) == sorted(files)
    for name, data in files.items():
        assert memory.objects[name].data == data, name
