"""Teacher scoring: log-probs of the sampled tokens and full-vocabulary entropies, in chunks of positions.

A 16k-token thinking rollout with Qwen3's 151,936-symbol vocabulary has 9.7 GB of float32 logits. The backbone's
hidden states are small (T x hidden), so the LM head is applied to a few positions at a time and reduced at once to
(log-prob, entropy): memory grows with the chunk, never with T x V.
"""

from collections.abc import Sequence
from contextlib import contextmanager, nullcontext

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


@torch.no_grad()
def chunked_logps_and_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    temperature: float = 1.0,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log p(target) and entropy of softmax((hidden @ weight.T + bias) / temperature), chunk by chunk of positions.

    Args:
        hidden: (N, H) final hidden states (after the last norm).
        weight: (V, H) LM head weight; bias: (V,) or None.
        targets: (N,) token ids scored at each position.
        chunk_size: positions per chunk (default: `default_chunk_size(V)`).

    Returns:
        (N,) float32 log-probs and (N,) float32 entropies (nats).
    """
    num_positions = hidden.size(0)
    chunk_size = chunk_size or default_chunk_size(weight.size(0))
    logps = torch.empty(num_positions, dtype=torch.float32, device=hidden.device)
    entropy = torch.empty(num_positions, dtype=torch.float32, device=hidden.device)
    for start in range(0, num_positions, chunk_size):
        end = min(start + chunk_size, num_positions)
        logits = nn.functional.linear(hidden[start:end], weight, bias).float()
        if temperature != 1.0:
            logits.div_(temperature)
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
    try:
        from trl.trainer.utils import maybe_gather_lm_head_ctx
    except ImportError:  # pragma: no cover - TRL always has it in the supported range
        return nullcontext()
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
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs and entropies of each row's completion tokens after its own prompt, under `model`.

    One forward per row batch over (left-padded prompt + completion), through the model's usual forward (so DDP,
    DeepSpeed ZeRO-3 and PEFT hooks fire; the same count on every rank) with `logits_to_keep=1`; the backbone's
    output is captured and the LM head applied in chunks to the scored positions only. (Running each distinct
    prompt once and the completions on its key/value cache would save the prompt's compute within a GRPO group, but
    SDPA then needs a dense (T, P + T) mask per row: 1.3 GB instead of 0.2 GB at T = 16k. Prompts are short next
    to thinking rollouts, so the single pass is the better trade.)

    Args:
        prompt_ids: B token-id lists (unpadded).
        completion_ids, completion_mask: (B, T), right-padded; positions with mask 0 are not scored (0 returned).
        batch_size: rows per forward (default: all).

    Returns:
        (B, T) float32 log-probs and entropies.
    """
    causal_lm = _unwrap_causal_lm(model)
    backbone = causal_lm.get_decoder()
    head = causal_lm.get_output_embeddings()
    if getattr(causal_lm.config.get_text_config(), "final_logit_softcapping", None):
        raise NotImplementedError("teacher scoring does not implement final-logit softcapping (e.g. Gemma 2)")
    rows, length = completion_ids.shape
    device = completion_ids.device
    batch_size = batch_size or rows
    logps = torch.zeros(rows, length, dtype=torch.float32, device=device)
    entropy = torch.zeros_like(logps)
    for start in range(0, rows, batch_size):
        end = min(start + batch_size, rows)
        padded_prompts, prompt_mask = _left_pad(prompt_ids[start:end], pad_token_id, device)
        with _capture_output(backbone) as captured:
            model(
                input_ids=torch.cat([padded_prompts, completion_ids[start:end]], dim=1),
                attention_mask=torch.cat([prompt_mask, completion_mask[start:end]], dim=1),
                use_cache=False,
                logits_to_keep=1,
            )
        # Position i predicts token i + 1: the completion is predicted by the T positions before the last.
        hidden = captured["hidden"][:, -length - 1 : -1]
        selected = completion_mask[start:end].bool()
        with _gather_params_ctx(head.weight, getattr(head, "bias", None)):
            chunk_logps, chunk_entropy = chunked_logps_and_entropy(
                hidden[selected],
                head.weight,
                completion_ids[start:end][selected],
                bias=getattr(head, "bias", None),
                temperature=temperature,
                chunk_size=chunk_size,
            )
        logps[start:end][selected] = chunk_logps
        entropy[start:end][selected] = chunk_entropy
    return logps, entropy
