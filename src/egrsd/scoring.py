"""Teacher scoring: log-probs of the sampled tokens and full-vocabulary entropies, in chunks of positions.

A 16k-token thinking rollout with Qwen3's 151,936-symbol vocabulary has 9.7 GB of float32 logits. The backbone's
hidden states are small (T x hidden), so the LM head is applied to a few positions at a time and reduced at once to
(log-prob, entropy): memory grows with the chunk, never with T x V.
"""

from collections.abc import Sequence
from contextlib import contextmanager

import torch
from torch import nn


# Bytes of float32 logits one chunk may hold; the working set is about three times this (logits, probabilities and
# logsumexp's temporary).
DEFAULT_CHUNK_BYTES = 64 * 2**20


def default_chunk_size(vocab_size: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Positions per chunk so that one chunk's float32 logits take about `chunk_bytes`."""
    return max(1, chunk_bytes // (4 * vocab_size))


def naive_logps_and_entropy(
    logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference computation on full logits (..., V): log p(target) and entropy, in float32."""
    log_probs = torch.log_softmax(logits.float() / temperature, dim=-1)
    logps = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    return logps, entropy


def logit_transform(config) -> tuple[float, float | None]:
    """(logit scale, final-logit softcap) of a model config, read as TRL's fused LM head reads them.

    Cohere's `logit_scale` (or `output_multiplier`) and Falcon-H1's `lm_head_multiplier` multiply the logits; Granite's
    and MiniCPM3's `logits_scaling` divides them (HyperCLOVA X multiplies by it); Gemma 2's `final_logit_softcapping`
    caps them at +-c with c * tanh(z / c), after the scale.
    """
    text_config = config.get_text_config()
    scale = None
    for name in ("logit_scale", "output_multiplier", "lm_head_multiplier"):
        scale = getattr(text_config, name, None)
        if scale is not None:
            break
    logits_scaling = getattr(text_config, "logits_scaling", None)
    if scale is None and logits_scaling is not None:
        scale = logits_scaling if text_config.model_type == "hyperclovax" else 1 / logits_scaling
    return (1.0 if scale is None else scale), getattr(text_config, "final_logit_softcapping", None)


@torch.no_grad()
def chunked_logps_and_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    temperature: float = 1.0,
    chunk_size: int | None = None,
    logit_scale: float = 1.0,
    softcap: float | None = None,
    fp32_head: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log p(target) and entropy of softmax(transform(hidden @ weight.T + bias) / temperature), chunk by chunk.

    The semantics are those of TRL's fused LM head (what the student's log-probs come from): the projection runs in
    the autocast dtype when autocast is on, else in the hidden states' dtype, or in float32 with `fp32_head` (TRL's
    `cast_lm_head_to_fp32`); then, in float32, the logits are multiplied by `logit_scale`, softcapped
    (`softcap * tanh(z / softcap)`) and divided by the temperature.

    Args:
        hidden: (N, H) final hidden states (after the last norm).
        weight: (V, H) LM head weight; bias: (V,) or None.
        targets: (N,) token ids scored at each position.
        chunk_size: positions per chunk (default: `default_chunk_size(V)`).
        logit_scale, softcap: the model's logit transform (see `logit_transform`).
        fp32_head: project in float32, outside autocast.

    Returns:
        (N,) float32 log-probs and (N,) float32 entropies (nats).
    """
    device = hidden.device
    if fp32_head:
        compute_dtype = torch.float32
    elif torch.is_autocast_enabled(device.type):
        compute_dtype = torch.get_autocast_dtype(device.type)
    else:
        compute_dtype = hidden.dtype
    # Cast once, not per chunk (a no-op when the dtypes already agree).
    weight = weight.to(compute_dtype)
    bias = None if bias is None else bias.to(compute_dtype)
    inverse_temperature = 1 / temperature
    num_positions = hidden.size(0)
    chunk_size = chunk_size or default_chunk_size(weight.size(0))
    logps = torch.empty(num_positions, dtype=torch.float32, device=device)
    entropy = torch.empty(num_positions, dtype=torch.float32, device=device)
    with torch.autocast(device.type, enabled=False):
        for start in range(0, num_positions, chunk_size):
            end = min(start + chunk_size, num_positions)
            logits = hidden[start:end].to(compute_dtype) @ weight.t()
            if bias is not None:
                logits.add_(bias)
            logits = logits.float()
            if logit_scale != 1.0:
                logits.mul_(logit_scale)
            if softcap is not None:
                logits = logits.div_(softcap).tanh_().mul_(softcap)
            if inverse_temperature != 1.0:
                logits.mul_(inverse_temperature)
            log_probs = logits.sub_(torch.logsumexp(logits, dim=-1, keepdim=True))  # in place: one (c, V) buffer
            logps[start:end] = log_probs.gather(-1, targets[start:end].unsqueeze(-1)).squeeze(-1)
            entropy[start:end] = -log_probs.exp().mul_(log_probs).sum(-1)
    return logps, entropy


def _unwrap_causal_lm(model: nn.Module) -> nn.Module:
    """The transformers CausalLM inside DDP / DeepSpeed / PEFT wrappers."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):  # DDP, DeepSpeedEngine
        model = model.module
    if hasattr(model, "get_base_model"):  # PEFT
        model = model.get_base_model()
    return model


@contextmanager
def _capture_output(module: nn.Module):
    captured = {}

    def hook(_module, _args, output):
        captured["hidden"] = output[0] if isinstance(output, tuple) else output.last_hidden_state

    handle = module.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def _gather_params_ctx(*params):
    """Under DeepSpeed ZeRO-3 the head's weight is partitioned: gather it for the direct matmul (TRL's helper)."""
    from trl.trainer.utils import maybe_gather_lm_head_ctx

    return maybe_gather_lm_head_ctx(*[p for p in params if p is not None])


def _left_pad(rows: Sequence[Sequence[int]], pad_token_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.as_tensor(row, device=device)
            mask[i, width - len(row) :] = 1
    return ids, mask


def _distinct_rows(rows: Sequence[Sequence[int]]) -> tuple[list[list[int]], list[int]]:
    """The distinct rows in first-seen order, and each row's index among them."""
    index: dict[tuple[int, ...], int] = {}
    row_to_distinct = [index.setdefault(tuple(row), len(index)) for row in rows]
    return [list(row) for row in index], row_to_distinct


def _completion_hidden(model, backbone, prompt_ids, completion_ids, completion_mask, pad_token_id):
    """(B, T, H) final hidden states at the positions predicting each completion token: one forward."""
    padded_prompts, prompt_mask = _left_pad(prompt_ids, pad_token_id, completion_ids.device)
    with _capture_output(backbone) as captured:
        model(
            input_ids=torch.cat([padded_prompts, completion_ids], dim=1),
            attention_mask=torch.cat([prompt_mask, completion_mask], dim=1),
            use_cache=False,
            logits_to_keep=1,
        )
    # Position i predicts token i + 1: the completion is predicted by the T positions before the last.
    return captured["hidden"][:, -completion_ids.size(1) - 1 : -1]


def _completion_hidden_shared_prompts(model, backbone, prompt_ids, completion_ids, completion_mask, pad_token_id):
    """As `_completion_hidden`, but each distinct prompt runs once and its rows continue on its key/value cache.

    Two forwards: the distinct prompts (left-padded to the same width as the single pass, so every position and
    mask is the same), then all completions on the cache gathered row by row.
    """
    distinct, row_to_distinct = _distinct_rows(prompt_ids)
    padded_prompts, prompt_mask = _left_pad(distinct, pad_token_id, completion_ids.device)
    with _capture_output(backbone) as captured:
        cache = model(
            input_ids=padded_prompts, attention_mask=prompt_mask, use_cache=True, logits_to_keep=1
        ).past_key_values
    if cache is None or not hasattr(cache, "batch_select_indices"):
        raise ValueError(
            f"teacher_prompt_cache: {type(_unwrap_causal_lm(model)).__name__} returned no selectable key/value cache "
            f"(got {type(cache).__name__}); set teacher_prompt_cache: false to score in a single pass."
        )
    # The prompt's last position predicts the first completion token.
    index = torch.as_tensor(row_to_distinct, device=completion_ids.device)
    first = captured["hidden"][:, -1:][index]
    cache.batch_select_indices(index)
    with _capture_output(backbone) as captured:
        model(
            input_ids=completion_ids,
            attention_mask=torch.cat([prompt_mask[index], completion_mask], dim=1),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
    return torch.cat([first, captured["hidden"][:, :-1]], dim=1)


@torch.no_grad()
def score_tokens(
    model: nn.Module,
    prompt_ids: Sequence[Sequence[int]],
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    *,
    pad_token_id: int,
    temperature: float = 1.0,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    share_prompts: bool = False,
    fp32_head: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs and entropies of each row's completion tokens after its own prompt, under `model`.

    Each row batch goes through the model's usual forward (so DDP, DeepSpeed ZeRO-3 and PEFT hooks fire) with
    `logits_to_keep=1`; the backbone's output is captured and the LM head applied in chunks to the scored positions
    only. The number of forwards depends on the number of rows only, so it is the same on every rank (ZeRO-3
    gathers parameters collectively): one per row batch over (left-padded prompt + completion), or with
    `share_prompts` two: each distinct prompt once (a GRPO group's rollouts share it), then the completions on its
    key/value cache. Sharing saves the prompt's compute for all but one rollout of a group, but keeps every layer's
    keys and values and makes SDPA use a dense (T, P + T) mask per row (1.3 GB instead of 0.2 GB at T = 16k): worth
    it when prompts are long next to the completions, not for long thinking rollouts.

    Args:
        prompt_ids: B token-id lists (unpadded, non-empty).
        completion_ids, completion_mask: (B, T), right-padded; positions with mask 0 are not scored (0 returned).
        batch_size: rows per forward (default: all).
        share_prompts: run each distinct prompt of a row batch once (see above).
        fp32_head: project the LM head in float32 (TRL's `cast_lm_head_to_fp32`); otherwise in the autocast dtype
            when the caller runs under autocast, as TRL's fused head.

    Returns:
        (B, T) float32 log-probs and entropies.
    """
    causal_lm = _unwrap_causal_lm(model)
    backbone = causal_lm.get_decoder()
    head = causal_lm.get_output_embeddings()
    logit_scale, softcap = logit_transform(causal_lm.config)
    if any(len(row) == 0 for row in prompt_ids):
        raise ValueError("every teacher prompt needs at least one token: its last one predicts the completion")
    rows, length = completion_ids.shape
    device = completion_ids.device
    batch_size = batch_size or rows
    completion_hidden = _completion_hidden_shared_prompts if share_prompts else _completion_hidden
    logps = torch.zeros(rows, length, dtype=torch.float32, device=device)
    entropy = torch.zeros_like(logps)
    for start in range(0, rows, batch_size):
        end = min(start + batch_size, rows)
        hidden = completion_hidden(
            model,
            backbone,
            prompt_ids[start:end],
            completion_ids[start:end],
            completion_mask[start:end],
            pad_token_id,
        )
        selected = completion_mask[start:end].bool()
        with _gather_params_ctx(head.weight, getattr(head, "bias", None)):
            chunk_logps, chunk_entropy = chunked_logps_and_entropy(
                hidden[selected],
                head.weight,
                completion_ids[start:end][selected],
                bias=getattr(head, "bias", None),
                temperature=temperature,
                chunk_size=chunk_size,
                logit_scale=logit_scale,
                softcap=softcap,
                fp32_head=fp32_head,
            )
        logps[start:end][selected] = chunk_logps
        entropy[start:end][selected] = chunk_entropy
    return logps, entropy
