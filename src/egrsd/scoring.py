"""Teacher scoring: log-probs of the sampled tokens and full-vocabulary entropies, in chunks of positions.

A 16k-token thinking rollout with Qwen3's 151,936-symbol vocabulary has 9.7 GB of float32 logits. The backbone's
hidden states are small (T x hidden), so the LM head is applied to a few positions at a time and reduced at once to
(log-prob, entropy): memory grows with the chunk, never with T x V.
"""

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


@torch.no_grad()
def score_tokens(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    *,
    score_mask: torch.Tensor | None = None,
    temperature: float = 1.0,
    batch_size: int | None = None,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs and entropies of the last `logits_to_keep` tokens of `input_ids` under `model`.

    The model runs its usual forward (so DDP, DeepSpeed ZeRO-3 and PEFT hooks all fire) with `logits_to_keep=1`,
    the backbone's output is captured, and the LM head is applied in chunks to the scored positions only.

    Args:
        input_ids, attention_mask: (B, P + T) prompt (left-padded) followed by the completion (right-padded).
        logits_to_keep: T, the completion length.
        score_mask: (B, T) positions to score (default: attention_mask's completion part); others are 0.
        batch_size: rows per forward (default: all).

    Returns:
        (B, T) float32 log-probs and entropies.
    """
    causal_lm = _unwrap_causal_lm(model)
    backbone = causal_lm.get_decoder()
    head = causal_lm.get_output_embeddings()
    if getattr(causal_lm.config.get_text_config(), "final_logit_softcapping", None):
        raise NotImplementedError("teacher scoring does not implement final-logit softcapping (e.g. Gemma 2)")
    if score_mask is None:
        score_mask = attention_mask[:, -logits_to_keep:]
    rows = input_ids.size(0)
    batch_size = batch_size or rows
    logps = torch.zeros(rows, logits_to_keep, dtype=torch.float32, device=input_ids.device)
    entropy = torch.zeros_like(logps)
    for start in range(0, rows, batch_size):
        end = min(start + batch_size, rows)
        with _capture_output(backbone) as captured:
            model(
                input_ids=input_ids[start:end],
                attention_mask=attention_mask[start:end],
                logits_to_keep=1,
                use_cache=False,
            )
        # Position i predicts token i + 1: the completion tokens are predicted by the T positions before the last.
        hidden = captured["hidden"][:, -logits_to_keep - 1 : -1]
        targets = input_ids[start:end, -logits_to_keep:]
        selected = score_mask[start:end].bool()
        with _gather_params_ctx(head.weight, getattr(head, "bias", None)):
            chunk_logps, chunk_entropy = chunked_logps_and_entropy(
                hidden[selected],
                head.weight,
                targets[selected],
                bias=getattr(head, "bias", None),
                temperature=temperature,
                chunk_size=chunk_size,
            )
        logps[start:end][selected] = chunk_logps
        entropy[start:end][selected] = chunk_entropy
    return logps, entropy
