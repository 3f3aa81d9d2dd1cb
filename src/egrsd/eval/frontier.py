"""Compare evaluation runs on the accuracy-length plane: a markdown table and one PNG, Pareto-optimal runs marked.

    egrsd-frontier outputs/eval/base/results.json outputs/eval/egrsd/results.json --labels base,egrsd

Higher accuracy and fewer tokens are better; a run is Pareto-optimal on a benchmark when no other run is at least
as good on both and strictly better on one. The average panel is recomputed over the benchmarks every run has, so
runs evaluated on different benchmark sets are still compared on equal terms.

Points are comparable only under one token budget (`max_new_tokens`), one K (`num_samples`) and one problem set per
benchmark (its `num_problems` and source): runs that differ in any of them are refused, naming the field, unless
`--allow-mixed`, which then marks each run with its budget and K in the table and the plot.
"""

import argparse
import json
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from egrsd.cli import ArgumentParser, UserError, run_cli


AVERAGE = "average"
TABLE_FILE = "frontier.md"
PLOT_FILE = "frontier.png"


@dataclass
class Run:
    """One evaluation run: its label and per-benchmark metrics as written by `egrsd-eval`."""

    label: str
    path: Path
    benchmarks: dict[str, dict[str, Any]]
    budget: int | None = None  # max_new_tokens
    k: int | None = None  # num_samples
    sources: dict[str, Any] = field(default_factory=dict)  # benchmark_sources

    def marked_label(self) -> str:
        return f"{self.label} [budget {self.budget}, K {self.k}]"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For (accuracy, tokens) points, whether each is Pareto-optimal (more accuracy and fewer tokens are better).

    A point is dominated when another has accuracy >= and tokens <= with at least one strict; equal points do not
    dominate each other.
    """
    optimal = []
    for accuracy, tokens in points:
        dominated = any(
            other_acc >= accuracy and other_tok <= tokens and (other_acc > accuracy or other_tok < tokens)
            for other_acc, other_tok in points
        )
        optimal.append(not dominated)
    return optimal


def default_label(path: Path) -> str:
    # egrsd-eval writes <dir>/results.json, so the directory names the run.
    return path.parent.name if path.stem == "results" and path.parent.name else path.stem


def load_runs(paths: Sequence[str | Path], labels: Sequence[str] | None = None) -> list[Run]:
    """Read results JSONs; labels default to each file's run directory (or stem), made unique."""
    if labels is not None and len(labels) != len(paths):
        raise UserError(f"got {len(labels)} labels for {len(paths)} runs", "give one label per results file, in order")
    runs = []
    for index, path in enumerate(map(Path, paths)):
        results = _read_results(path)
        label = labels[index] if labels is not None else default_label(path)
        runs.append(
            Run(
                label=label,
                path=path,
                benchmarks=results["benchmarks"],
                budget=results.get("max_new_tokens"),
                k=results.get("num_samples"),
                sources=results.get("benchmark_sources") or {},
            )
        )
    seen: dict[str, int] = {}
    for run in runs:
        seen[run.label] = seen.get(run.label, 0) + 1
        if seen[run.label] > 1:
            run.label = f"{run.label}-{seen[run.label]}"
    return runs


def _read_results(path: Path) -> dict[str, Any]:
    """An egrsd-eval results file, or a `UserError` naming the file (and the line of a JSON syntax error)."""
    hint = "pass the results.json that egrsd-eval wrote (<output-dir>/results.json)"
    if path.is_dir() and (path / "results.json").is_file():
        path = path / "results.json"
    if not path.is_file():
        raise UserError("no such results file", hint, path=str(path))
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError("not a text file", hint, path=str(path)) from None
    except json.JSONDecodeError as error:
        raise UserError(
            f"not valid JSON ({error.msg}, column {error.colno})", hint, path=str(path), line=error.lineno
        ) from None
    if not isinstance(results, dict) or not isinstance(results.get("benchmarks"), dict):
        raise UserError("not an egrsd-eval results file (no 'benchmarks' table)", hint, path=str(path))
    for name, metrics in results["benchmarks"].items():
        needed = ("accuracy", "pass@1", "pass@k", "mean_completion_tokens")
        missing = [key for key in needed if key not in metrics] if isinstance(metrics, dict) else list(needed)
        if missing:
            raise UserError(f"benchmark {name!r} lacks the metrics {missing}", hint, path=str(path))
    return results


MIXED_HINT = (
    "compare runs of one budget, K and problem set, or pass --allow-mixed to plot them anyway, each marked with its "
    "budget and K"
)


def comparability_problems(runs: Sequence[Run]) -> list[str]:
    """One line per field in which the runs differ: the token budget, K, or a shared benchmark's problem set."""

    def differs(values: Sequence[Any]) -> bool:
        return len({json.dumps(v, sort_keys=True) for v in values}) > 1

    def listed(values: Sequence[Any]) -> str:
        return ", ".join(f"{run.label} {value}" for run, value in zip(runs, values))

    problems = []
    for key, meaning, values in (
        ("max_new_tokens", "the token budget", [run.budget for run in runs]),
        ("num_samples", "K, the samples per problem", [run.k for run in runs]),
    ):
        if differs(values):
            problems.append(f"the runs differ in {key} ({meaning}): {listed(values)} — {MIXED_HINT}")
    for name in common_benchmarks(runs):
        sizes = [run.benchmarks[name].get("num_problems") for run in runs]
        if differs(sizes):
            problems.append(
                f"the runs differ in {name}'s num_problems (the problem set): {listed(sizes)} — {MIXED_HINT}"
            )
        sources = [_source_identity(run.sources.get(name)) for run in runs]
        if differs([source for source in sources if source is not None]):
            problems.append(
                f"the runs read {name} from different sources (benchmark_sources): {listed(sources)} — {MIXED_HINT}"
            )
    return problems


def _source_identity(source: Any) -> str | None:
    """Where a benchmark's problems came from, by data set name (a local file by its name) and split."""
    if not isinstance(source, dict) or not source.get("dataset"):
        return None
    return f"{Path(str(source['dataset'])).name}:{source.get('config') or ''}:{source.get('split') or ''}"


def benchmark_names(runs: Sequence[Run]) -> list[str]:
    """Every benchmark any run has, in order of first appearance."""
    names: list[str] = []
    for run in runs:
        names.extend(name for name in run.benchmarks if name not in names)
    return names


def common_benchmarks(runs: Sequence[Run]) -> list[str]:
    return [name for name in benchmark_names(runs) if all(name in run.benchmarks for run in runs)]


def run_point(run: Run, benchmark: str, metric: str, over: Sequence[str]) -> tuple[float, float] | None:
    """(accuracy, mean tokens) of a run on a benchmark, or averaged over `over` for the average panel."""
    if benchmark == AVERAGE:
        if not over:
            return None
        accuracy = statistics.fmean(run.benchmarks[name][metric] for name in over)
        tokens = statistics.fmean(run.benchmarks[name]["mean_completion_tokens"] for name in over)
        return accuracy, tokens
    metrics = run.benchmarks.get(benchmark)
    return None if metrics is None else (metrics[metric], metrics["mean_completion_tokens"])


def panels(runs: Sequence[Run], metric: str) -> dict[str, list[tuple[float, float] | None]]:
    """Per panel (each benchmark, then the average), every run's point or None where the run lacks it."""
    over = common_benchmarks(runs)
    names = benchmark_names(runs) + [AVERAGE]
    return {name: [run_point(run, name, metric, over) for run in runs] for name in names}


def pareto_flags(points: Sequence[tuple[float, float] | None]) -> list[bool]:
    """pareto_front over the runs that have a point; runs without one are never optimal."""
    present = [p for p in points if p is not None]
    flags = iter(pareto_front(present))
    return [next(flags) if p is not None else False for p in points]


def build_table(runs: Sequence[Run], metric: str = "accuracy") -> str:
    """Markdown: per benchmark and the average, each run's accuracy, mean tokens and tokens relative to run 1."""
    over = common_benchmarks(runs)
    lines = [
        f"Accuracy is `{metric}` (%); relative tokens and Δ accuracy are against `{runs[0].label}`; "
        "`*` marks Pareto-optimal runs (no other run is at least as accurate with at most as many tokens, "
        "and strictly better on one).",
        f"The average is over the benchmarks every run has: {', '.join(over) or 'none'}.",
        "",
        "| benchmark | run | accuracy | Δ accuracy | mean tokens | relative tokens | Pareto |",
        "|---|---|---:|---:|---:|---:|:---:|",
    ]
    for name, points in panels(runs, metric).items():
        reference = points[0]
        for run, point, optimal in zip(runs, points, pareto_flags(points), strict=True):
            if point is None:
                lines.append(f"| {name} | {run.label} | — | — | — | — |  |")
                continue
            accuracy, tokens = point
            delta = f"{100 * (accuracy - reference[0]):+.1f}" if reference is not None else "—"
            relative = f"{tokens / reference[1]:.2f}x" if reference is not None and reference[1] > 0 else "—"
            mark = "*" if optimal else ""
            lines.append(
                f"| {name} | {run.label} | {100 * accuracy:.1f} | {delta} | {tokens:.0f} | {relative} | {mark} |"
            )
    return "\n".join(lines)


def plot_frontier(runs: Sequence[Run], path: str | Path, metric: str = "accuracy") -> Path:
    """One PNG, one subplot per benchmark and one for the average; Pareto-optimal runs ringed and joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    all_panels = panels(runs, metric)
    columns = min(3, len(all_panels))
    rows = math.ceil(len(all_panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.8 * columns, 4.0 * rows), squeeze=False)
    colors = plt.get_cmap("tab10")
    for axis, (name, points) in zip(axes.flat, all_panels.items()):
        flags = pareto_flags(points)
        for index, (run, point, optimal) in enumerate(zip(runs, points, flags, strict=True)):
            if point is None:
                continue
            accuracy, tokens = point
            axis.scatter(
                tokens,
                100 * accuracy,
                color=colors(index % 10),
                s=90 if optimal else 40,
                edgecolors="black" if optimal else "none",
                linewidths=1.5,
                zorder=3,
            )
            axis.annotate(run.label, (tokens, 100 * accuracy), textcoords="offset points", xytext=(5, 5), fontsize=8)
        front = sorted((p[1], 100 * p[0]) for p, optimal in zip(points, flags) if p is not None and optimal)
        if len(front) > 1:
            axis.step(*zip(*front), where="post", color="black", linestyle="--", linewidth=1, zorder=2)
        axis.set_title(name)
        axis.set_xlabel("mean completion tokens")
        axis.set_ylabel(f"{metric} (%)")
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(all_panels) :]:
        axis.set_visible(False)
    # Proxy handles: a run may be missing from the first panel, and ringed markers would mislead in the legend.
    handles = [
        Line2D([], [], marker="o", linestyle="", color=colors(index % 10), label=run.label)
        for index, run in enumerate(runs)
    ]
    figure.legend(handles=handles, loc="lower center", ncol=min(len(runs), 6), frameon=False)
    figure.suptitle("Accuracy vs length (ringed: Pareto-optimal)")
    figure.tight_layout(rect=(0, 0.06, 1, 0.97))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_frontier(
    paths: Sequence[str | Path],
    output_dir: str | Path,
    labels: Sequence[str] | None = None,
    metric: str = "accuracy",
    allow_mixed: bool = False,
) -> dict[str, Any]:
    """Table (markdown file) and plot (PNG) for the runs; returns the table text and both paths.

    Runs of different budgets, K or problem sets are a `UserError` naming the field, unless `allow_mixed`, which
    labels every run with its budget and K instead."""
    runs = load_runs(paths, labels)
    if allow_mixed:
        for run in runs:
            run.label = run.marked_label()
    else:
        problems = comparability_problems(runs)
        if problems:
            raise UserError(problems[0], problems=problems)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    table = build_table(runs, metric)
    table_path = output_dir / TABLE_FILE
    table_path.write_text(table + "\n", encoding="utf-8")
    plot_path = plot_frontier(runs, output_dir / PLOT_FILE, metric)
    return {"table": table, "table_path": table_path, "plot_path": plot_path}


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="egrsd-frontier", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="results JSONs written by egrsd-eval; the first is the reference")
    parser.add_argument("--labels", default=None, help="comma-separated, one per run (default: run directory)")
    parser.add_argument("--output-dir", default="outputs/frontier")
    parser.add_argument("--metric", default="accuracy", choices=("accuracy", "pass@1", "pass@k"))
    parser.add_argument(
        "--allow-mixed",
        action="store_true",
        help="compare runs of different token budgets, K or problem sets, each marked with its budget and K",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)


def _main(argv: Sequence[str] | None) -> None:
    args = build_parser().parse_args(argv)
    labels = [label.strip() for label in args.labels.split(",")] if args.labels else None
    written = write_frontier(args.runs, args.output_dir, labels, args.metric, allow_mixed=args.allow_mixed)
    print(written["table"])
    print(f"\ntable: {written['table_path']}\nplot: {written['plot_path']}")


if __name__ == "__main__":
    sys.exit(main())
