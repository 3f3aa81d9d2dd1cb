"""Benchmark metrics from graded samples (pure functions): avg@K accuracy, unbiased pass@k, lengths, truncation."""

import statistics
from collections.abc import Iterable, Mapping
from math import comb
from typing import Any


# Averaged over benchmarks (macro average); the count fields are summed instead.
AVERAGED_METRICS = (
    "accuracy",
    "pass@1",
    "pass@k",
    "mean_completion_tokens",
    "median_completion_tokens",
    "mean_thinking_tokens",
    "truncation_rate",
)
SUMMED_METRICS = ("num_problems", "num_samples", "ungradable_samples")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        # Every k-subset contains a correct sample.
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def summarize(samples: Iterable[Mapping[str, Any]], k: int | None = None) -> dict[str, Any]:
    """Benchmark metrics from graded samples.

    Each sample needs `prompt_id`, `correct` (bool), `completion_tokens`, `thinking_tokens` and `truncated`; an
    optional `score` of None marks an ungradable gold answer. A problem whose samples are all ungradable (its gold
    cannot be parsed) is left out of accuracy and pass@k, not counted as wrong; lengths and truncation count every
    sample. `k` defaults to the smallest number of samples any problem has. Accuracy is avg@K: the mean over the
    gradable problems of each problem's fraction of correct samples (equal to pass@1); 0 when none is gradable.
    """
    samples = list(samples)
    if not samples:
        raise ValueError("no samples to summarize")
    by_problem: dict[str, list[Mapping[str, Any]]] = {}
    for sample in samples:
        by_problem.setdefault(str(sample["prompt_id"]), []).append(sample)
    k = min(len(group) for group in by_problem.values()) if k is None else k
    counts = [
        (len(group), sum(bool(s["correct"]) for s in group))
        for group in by_problem.values()
        if not all(_ungradable(s) for s in group)
    ]

    def mean_over_problems(values) -> float:
        values = list(values)
        return statistics.fmean(values) if values else 0.0

    completion_tokens = [s["completion_tokens"] for s in samples]
    return {
        "num_problems": len(by_problem),
        "num_samples": len(samples),
        "k": k,
        "accuracy": mean_over_problems(c / n for n, c in counts),
        "pass@1": mean_over_problems(pass_at_k(n, c, 1) for n, c in counts),
        "pass@k": mean_over_problems(pass_at_k(n, c, k) for n, c in counts),
        "mean_completion_tokens": statistics.fmean(completion_tokens),
        "median_completion_tokens": float(statistics.median(completion_tokens)),
        "mean_thinking_tokens": statistics.fmean(s["thinking_tokens"] for s in samples),
        "truncation_rate": statistics.fmean(bool(s["truncated"]) for s in samples),
        "ungradable_samples": sum(1 for s in samples if _ungradable(s)),
    }


def _ungradable(sample: Mapping[str, Any]) -> bool:
    return "score" in sample and sample["score"] is None


def average_metrics(per_benchmark: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Unweighted mean over benchmarks of the rate and length metrics; counts are summed."""
    if not per_benchmark:
        raise ValueError("no benchmarks to average")
    metrics = list(per_benchmark.values())
    average: dict[str, Any] = {name: statistics.fmean(m[name] for m in metrics) for name in AVERAGED_METRICS}
    average.update({name: sum(m[name] for m in metrics) for name in SUMMED_METRICS})
    ks = {m["k"] for m in metrics}
    average["k"] = ks.pop() if len(ks) == 1 else None
    average["benchmarks"] = list(per_benchmark)
    return average
