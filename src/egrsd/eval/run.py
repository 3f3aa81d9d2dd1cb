"""One evaluation run: load the benchmarks, generate, grade, summarize, and write results.json and samples.jsonl.

From Python: `evaluate(EvalConfig(model="Qwen/Qwen3-1.7B", benchmarks=["math500"], num_samples=4))` (both exported by
`egrsd.eval`) returns what it writes to results.json, plus `output_dir`.
"""

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..cli import UserError, looks_like_path, one_line
from ..testbed import TESTBED_MODELS, testbed_model_path
from .benchmarks import Problem, check_benchmark_name, is_local_spec, load_benchmark, parse_local_spec
from .config import EvalConfig
from .generation import default_backend, generate_with_transformers
from .metrics import average_metrics, summarize
from .tokens import (
    count_thinking_tokens,
    end_of_sequence_ids,
    prompt_opens_thinking,
    render_prompt_ids,
    thinking_token_ids,
)


RESULTS_FILE = "results.json"
SAMPLES_FILE = "samples.jsonl"


def grade_completions(
    completions: Sequence[str], golds: Sequence[str], chunk_size: int = 64
) -> list[tuple[float | None, str | None]]:
    """(score, extracted answer) per completion from the shared grader (one round-trip to its worker per chunk), with
    a progress bar."""
    from ..rewards import grade_batch

    grades: list[tuple[float | None, str | None]] = []
    with tqdm(total=len(completions), desc="grade", unit="sample") as progress:
        for start in range(0, len(completions), chunk_size):
            texts, answers = completions[start : start + chunk_size], golds[start : start + chunk_size]
            grades.extend(grade_batch(list(texts), list(answers)))
            progress.update(len(texts))
    return grades


def package_versions() -> dict[str, str | None]:
    versions = {}
    for package in ("torch", "transformers", "trl", "datasets", "vllm", "math-verify", "egrsd"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def load_tokenizer(model: str):
    """The model's tokenizer; a folder that does not exist or a model that cannot be loaded is a `UserError`."""
    from transformers import AutoTokenizer

    if looks_like_path(model) and not Path(model).exists():
        raise UserError(f"no model folder {model}", "pass a folder with config.json and the tokenizer, or a Hub id")
    try:
        return AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as error:  # not found on the Hub or offline, or a folder without a tokenizer
        raise UserError(
            f"cannot load the tokenizer of {model!r} ({one_line(error)[:300]})",
            "pass a model folder with its tokenizer files, or a Hub id this machine can download",
        ) from None


def default_output_dir(config: EvalConfig) -> Path:
    name = Path(config.model).name if Path(config.model).exists() else config.model.replace("/", "__")
    name = name.replace(":", "-")  # testbed:base -> testbed-base
    return Path("outputs") / "eval" / f"{name}-budget{config.max_new_tokens}-k{config.num_samples}"


def check_benchmarks(names: Sequence[str]) -> None:
    """Every benchmark a registry key or an existing file, before anything loads; else a `UserError`."""
    for name in names:
        try:
            check_benchmark_name(name)
        except ValueError as error:
            what, _, fix = str(error).partition(" Known benchmarks: ")
            raise UserError(what.rstrip("."), f"known benchmarks: {fix}" if fix else None) from None
        if is_local_spec(name) and not parse_local_spec(name)[0].is_file():
            raise UserError("no such benchmark file", "check the path", path=str(parse_local_spec(name)[0]))


def evaluate(config: EvalConfig) -> dict[str, Any]:
    """Generate, grade and summarize; writes results.json and samples.jsonl to the output dir, returns the results
    (with `output_dir` added). A mistake in the config is a `UserError`, raised before the model loads."""
    check_benchmarks(config.benchmarks)
    if config.model.startswith("testbed:") and config.model not in TESTBED_MODELS:
        raise UserError(f"{config.model!r} is not an embedded model", f"use one of {list(TESTBED_MODELS)}")
    backend = config.backend or default_backend()
    if backend not in ("vllm", "transformers"):
        raise UserError(f"unknown backend {backend!r}", "choose vllm or transformers")
    if config.num_samples < 1 or config.max_new_tokens < 1:
        raise UserError("num_samples and max_new_tokens must be at least 1", "pass positive values")
    if config.max_problems is not None and config.max_problems < 1:  # a negative one would slice from the end
        raise UserError(
            f"max_problems={config.max_problems} keeps no problem", "pass a positive number, or leave it out for all"
        )
    output_dir = Path(config.output_dir) if config.output_dir else default_output_dir(config)

    benchmarks: dict[str, list[Problem]] = {}
    sources: dict[str, dict[str, Any]] = {}
    for spec in config.benchmarks:
        name, problems, source = load_benchmark(spec, config.max_problems)
        if name in benchmarks:
            raise ValueError(f"two benchmarks are both named {name!r}; rename one of the files")
        benchmarks[name], sources[name] = problems, source
        empty = [p.id for p in problems if not p.problem.strip()]
        if empty:
            print(
                f"warning: {name}: {len(empty)} problem(s) with an empty text (ids {empty[:5]}); the model is asked "
                "to answer nothing there. Fix or remove those rows.",
                file=sys.stderr,
            )

    recorded = config  # the results name the model as the user did (testbed:base), generation loads its folder
    if config.model in TESTBED_MODELS:
        config = replace(config, model=str(testbed_model_path(config.model, output_dir, seed=config.seed)))
    tokenizer = load_tokenizer(config.model)
    eos_ids = end_of_sequence_ids(config.model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    think_open_id, think_close_id = thinking_token_ids(tokenizer)

    # One generation pass over every benchmark's prompts keeps the engine loaded once and its batches full.
    jobs = [(name, problem) for name, problems in benchmarks.items() for problem in problems]
    prompt_ids = render_prompt_ids(
        tokenizer, [p for _, p in jobs], config.instruction, config.system_prompt, config.enable_thinking
    )
    if backend == "vllm":
        from .vllm_generation import generate_with_vllm

        generations = generate_with_vllm(config, prompt_ids, eos_ids)
    else:
        generations = generate_with_transformers(config, prompt_ids, eos_ids, pad_id)

    samples: list[dict[str, Any]] = []
    for (name, problem), prompt, completions in zip(jobs, prompt_ids, generations, strict=True):
        open_at_start = prompt_opens_thinking(prompt, think_open_id, think_close_id)
        for index, generation in enumerate(completions):
            samples.append(
                {
                    "benchmark": name,
                    "prompt_id": problem.id,
                    "sample_index": index,
                    "completion_tokens": len(generation.token_ids),
                    "thinking_tokens": count_thinking_tokens(
                        generation.token_ids, think_open_id, think_close_id, open_at_start
                    ),
                    "truncated": generation.truncated,
                    "gold": problem.answer,
                    "completion": tokenizer.decode(generation.token_ids, skip_special_tokens=True),
                }
            )
    grades = grade_completions([s["completion"] for s in samples], [s["gold"] for s in samples])
    for sample, (score, extracted) in zip(samples, grades, strict=True):
        gold, completion = sample.pop("gold"), sample.pop("completion")
        # The long completion text last, so the JSONL stays readable line by line.
        sample.update(correct=score == 1.0, score=score, extracted_answer=extracted, gold=gold, completion=completion)

    ungradable = sorted({(s["benchmark"], s["prompt_id"]) for s in samples if s["score"] is None})
    if ungradable:
        print(
            f"warning: {len(ungradable)} problem(s) have no gold answer (empty, null or a placeholder) or one the "
            f"grader cannot parse, e.g. "
            f"{ungradable[:3]}: counted as ungradable (ungradable_samples) and left out of accuracy, not scored wrong",
            file=sys.stderr,
        )
    per_benchmark = {
        name: summarize([s for s in samples if s["benchmark"] == name], k=config.num_samples) for name in benchmarks
    }
    run_config = asdict(recorded)
    results = {
        "model": recorded.model,
        "backend": backend,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "num_samples": config.num_samples,
        "max_new_tokens": config.max_new_tokens,
        "sampling": {k: run_config[k] for k in ("temperature", "top_p", "top_k", "seed")},
        "prompt": {k: run_config[k] for k in ("enable_thinking", "system_prompt", "instruction")},
        "versions": package_versions(),
        "config": run_config,
        "benchmark_sources": sources,
        "benchmarks": per_benchmark,
        "average": average_metrics(per_benchmark),
        "samples_file": SAMPLES_FILE,
    }

    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    with open(output_dir / SAMPLES_FILE, "w", encoding="utf-8") as handle:
        for sample in samples:
            handle.write(json.dumps(sample, ensure_ascii=False) + "\n")
    results["output_dir"] = str(output_dir)
    return results


def format_summary(results: Mapping[str, Any]) -> str:
    """A short markdown table of the run's metrics, one row per benchmark and the average."""
    header = "| benchmark | accuracy (avg@K) | pass@1 | pass@K | mean tokens | median tokens | thinking | truncated |"
    lines = [header, "|" + "---|" * 8]
    rows = list(results["benchmarks"].items()) + [("average", results["average"])]
    for name, m in rows:
        lines.append(
            f"| {name} | {100 * m['accuracy']:.1f} | {100 * m['pass@1']:.1f} | {100 * m['pass@k']:.1f} "
            f"| {m['mean_completion_tokens']:.0f} | {m['median_completion_tokens']:.0f} "
            f"| {m['mean_thinking_tokens']:.0f} | {100 * m['truncation_rate']:.1f}% |"
        )
    return "\n".join(lines)


def format_outputs(results: Mapping[str, Any]) -> str:
    """Where the run wrote its results and samples."""
    output_dir = Path(results["output_dir"])
    return f"results: {output_dir / RESULTS_FILE}\nsamples: {output_dir / SAMPLES_FILE}"
