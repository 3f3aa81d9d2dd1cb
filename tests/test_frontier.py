"""The frontier: Pareto set on hand-built points, and the table and plot from fixture results."""

import json
from pathlib import Path

import pytest

from egrsd.eval.frontier import build_table, load_runs, main, panels, pareto_front, write_frontier


RESULTS = Path(__file__).parent / "fixtures" / "results"
# Order matters: the first run is the reference for relative tokens.
RUN_FILES = [RESULTS / f"{label}.json" for label in ("base", "grpo", "opsd", "egrsd")]


def test_pareto_front_hand_built():
    # (accuracy, mean tokens): grpo dominates base, egrsd dominates opsd.
    points = [(0.80, 4000), (0.84, 3800), (0.78, 2500), (0.82, 2000)]
    assert pareto_front(points) == [False, True, False, True]


def test_pareto_front_ties_and_edges():
    assert pareto_front([]) == []
    assert pareto_front([(0.5, 100)]) == [True]
    # Identical points do not dominate each other.
    assert pareto_front([(0.5, 100), (0.5, 100)]) == [True, True]
    # Same accuracy with fewer tokens dominates; same tokens with more accuracy dominates.
    assert pareto_front([(0.5, 100), (0.5, 90)]) == [False, True]
    assert pareto_front([(0.5, 100), (0.6, 100)]) == [False, True]
    # A trade-off keeps both.
    assert pareto_front([(0.9, 1000), (0.6, 100), (0.5, 500)]) == [True, True, False]


def pareto_runs_by_panel(table: str) -> dict[str, set[str]]:
    """Parse the markdown table back into {benchmark: {runs marked Pareto-optimal}}."""
    marked: dict[str, set[str]] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 7 or cells[0] in ("benchmark", "---"):
            continue
        marked.setdefault(cells[0], set())
        if cells[6] == "*":
            marked[cells[0]].add(cells[1])
    return marked


def test_table_marks_pareto_runs_and_relative_tokens():
    runs = load_runs(RUN_FILES)
    assert [run.label for run in runs] == ["base", "grpo", "opsd", "egrsd"]
    table = build_table(runs)
    assert pareto_runs_by_panel(table) == {
        "math500": {"grpo", "egrsd"},
        "aime2024": {"grpo", "opsd", "egrsd"},
        # Only egrsd has gsm8k.
        "gsm8k": {"egrsd"},
        # Averaged over math500 and aime2024, the benchmarks every run has.
        "average": {"grpo", "opsd", "egrsd"},
    }
    assert "| math500 | base | 80.0 | +0.0 | 4000 | 1.00x |  |" in table
    assert "| math500 | egrsd | 82.0 | +2.0 | 2000 | 0.50x | * |" in table
    assert "| gsm8k | base | — | — | — | — |  |" in table
    # egrsd's average: (0.82 + 0.43) / 2 and (2000 + 7000) / 2, against base's 8000 tokens.
    assert "| average | egrsd | 62.5 | +2.5 | 4500 | 0.56x | * |" in table


def test_average_panel_uses_common_benchmarks():
    runs = load_runs(RUN_FILES)
    average = panels(runs, "accuracy")["average"]
    assert average[3] == pytest.approx((0.625, 4500.0))
    # The stored average of egrsd includes gsm8k; the frontier's does not.
    stored = json.loads(RUN_FILES[3].read_text())["average"]
    assert stored["benchmarks"] == ["math500", "aime2024", "gsm8k"]


def test_cli_writes_table_and_png(tmp_path, capsys):
    main([*map(str, RUN_FILES), "--labels", "B,G,O,E", "--output-dir", str(tmp_path)])
    printed = capsys.readouterr().out
    table_path, plot_path = tmp_path / "frontier.md", tmp_path / "frontier.png"
    assert table_path.is_file() and plot_path.is_file()
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(table_path) in printed and str(plot_path) in printed
    assert pareto_runs_by_panel(table_path.read_text())["math500"] == {"G", "E"}


def test_labels_default_to_run_directory(tmp_path):
    paths = []
    for name in ("base", "egrsd"):
        run_dir = tmp_path / name
        run_dir.mkdir()
        (run_dir / "results.json").write_text((RESULTS / f"{name}.json").read_text())
        paths.append(run_dir / "results.json")
    written = write_frontier(paths, tmp_path / "out")
    assert "| math500 | egrsd |" in written["table"]
    with pytest.raises(ValueError, match="labels"):
        load_runs(paths, labels=["only-one"])
