"""The package's shape: no import cycle, no module named like a standard-library one, every CLI's --help, every
runnable module file runnable by path, and rewards/ installed as egrsd.rewards."""

import ast
import configparser
import importlib
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import ROOT, run_python


SRC = ROOT / "src"
# Where each installed package's files live (setup.cfg's package_dir): the rewards/ folder is egrsd.rewards.
PACKAGE_ROOTS = {"egrsd": SRC / "egrsd", "egrsd.rewards": ROOT / "rewards"}


def module_files() -> dict[str, Path]:
    """Every module of the installed package by dotted name (a package by its __init__.py)."""
    modules = {}
    for package, folder in PACKAGE_ROOTS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


MODULES = module_files()


def imported_modules(name: str, path: Path) -> set[str]:
    """The modules of the package that `name` imports anywhere in its file (lazy imports in functions count too).

    `from .x import y` is the submodule `x.y` when there is one, else the module `x`; a package's __init__ is not
    counted for importing its submodules (every import of a submodule runs it, which is no cycle of its own making).
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {module for module in found if module.split(".")[0] == "egrsd"}


def import_graph() -> dict[str, set[str]]:
    return {name: imported_modules(name, path) - {name} for name, path in MODULES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_no_import_cycle_and_every_import_resolves():
    graph = import_graph()
    assert "egrsd.trainer" in graph and "egrsd.credit_pages.callback" in graph["egrsd.trainer"]
    unknown = {name: sorted(targets - set(MODULES)) for name, targets in graph.items() if targets - set(MODULES)}
    assert not unknown, f"imports of modules that do not exist: {unknown}"
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_nothing_imports_rewards_as_a_top_level_package():
    """The checkout's root on sys.path (`python -m pytest`) makes a stray `import rewards` work here, not for users."""
    offenders = []
    for folder in (SRC, ROOT / "rewards", ROOT / "tests", ROOT / "bench"):
        for path in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module or ""]
                offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "rewards"]
    assert offenders == []


def test_no_module_is_named_like_a_standard_library_module():
    """Run by path, a file's folder comes first on sys.path: a sibling named like a stdlib module shadows it."""
    folders = [*PACKAGE_ROOTS.values(), ROOT / "tests", ROOT / "bench", ROOT / "scripts"]
    names = {}
    for folder in folders:
        for path in folder.rglob("*"):
            if path.suffix == ".py" or (path.is_dir() and (path / "__init__.py").exists()):
                names[path.relative_to(ROOT)] = path.stem
    assert len(names) > 40
    assert sorted(str(path) for path, stem in names.items() if stem in sys.stdlib_module_names) == []


def entry_points() -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    lines = parser["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(line.replace(" ", "").split("=") for line in lines)


@pytest.mark.parametrize("script", sorted(entry_points()))
def test_every_cli_prints_its_help(script, capsys):
    module, function = entry_points()[script].split(":")
    with pytest.raises(SystemExit) as exited:
        getattr(importlib.import_module(module), function)(["--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage: ")


def runnable_files() -> list[Path]:
    """Module files meant to be run: a `__main__.py`, or a module with an `if __name__ == "__main__"` block."""
    return [
        path
        for path in MODULES.values()
        if path.name == "__main__.py" or 'if __name__ == "__main__":' in path.read_text(encoding="utf-8")
    ]


def test_runnable_module_files_run_by_path(tmp_path):
    """`python src/egrsd/.../x.py --help`, as a user may run it: the file's folder first on sys.path, no package."""
    files = [path for path in runnable_files() if path.name != "verify_worker.py"]  # a worker on stdin, below
    assert {path.relative_to(SRC).as_posix() for path in files} >= {
        "egrsd/train.py",
        "egrsd/eval/cli.py",
        "egrsd/eval/__main__.py",
        "egrsd/eval/frontier.py",
        "egrsd/credit_pages/cli.py",
        "egrsd/credit_pages/__main__.py",
        "egrsd/testbed/cli.py",
        "egrsd/testbed/demo.py",
    }
    children = {
        path: subprocess.Popen(
            [sys.executable, str(path), "--help"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for path in files
    }
    failures = {}
    for path, child in children.items():
        out, err = child.communicate(timeout=300)
        if child.returncode != 0 or not out.startswith(b"usage: "):
            failures[str(path.relative_to(ROOT))] = err.decode()[-1500:]
    assert failures == {}


def test_the_grading_worker_runs_by_path_from_any_folder(tmp_path):
    worker = ROOT / "rewards" / "verify_worker.py"
    assert worker in runnable_files()
    request = '{"pairs": [["1/2", "0.5"], ["3", "4"]], "budget": 10}\n'
    result = subprocess.run(
        [sys.executable, str(worker)], input=request, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[0] == '{"ready": true}'
    assert [json.loads(line)[:2] for line in result.stdout.splitlines()[1:]] == [[0, 1.0], [1, 0.0]]


def test_rewards_install_as_egrsd_rewards_with_names_and_import_strings(tmp_path):
    """Outside the checkout: no top-level `rewards`; recipe names and a user's `module:function` both resolve."""
    (tmp_path / "my_rewards.py").write_text("def short(completions, **kwargs):\n    return [1.0] * len(completions)\n")
    code = textwrap.dedent(
        """
        import importlib.util
        import egrsd.rewards
        from egrsd.rewards import get_reward_funcs
        print(importlib.util.find_spec("rewards"))
        funcs = get_reward_funcs(["accuracy", "format", "cosine_scaled(max_len=8)", "my_rewards:short"])
        print([getattr(f, "__name__", type(f).__name__) for f in funcs])
        print(funcs[-1](["a", "b"]))
        """
    )
    result = run_python("-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == [
        "None",
        "['accuracy_reward', 'format_reward', 'cosine_scaled_reward', 'short']",
        "[1.0, 1.0]",
    ]


def makefile_phony_targets_and_rules(text: str) -> tuple[set[str], set[str]]:
    """The Makefile's .PHONY names and the targets that have a rule (`target ...: ...`; assignments excluded)."""
    text = text.replace("\\\n", " ")
    phony, ruled = set(), set()
    for line in text.splitlines():
        if line.startswith(".PHONY:"):
            phony.update(line.partition(":")[2].split())
        elif not line.startswith(("\t", "#", " ")) and ":" in line:
            head, _, rest = line.partition(":")
            if not rest.startswith("=") and not re.search(r"[?+!]$|\$\(", head):
                ruled.update(head.split())
    return phony, ruled


def test_every_phony_make_target_has_a_rule():
    """A .PHONY target without a rule is `Nothing to be done` with exit 0: `make test-vllm` once passed so in CI."""
    phony, ruled = makefile_phony_targets_and_rules((ROOT / "Makefile").read_text())
    assert {"install", "test", "test-vllm", "test-slurm", "demo", "train-8b"} <= phony
    assert sorted(phony - ruled) == []
