"""Generation backends' shared record (`Generation`), the default backend, and the transformers backend.

The vLLM backend (tensor or data parallel) is `vllm_generation`; both return, per prompt, its K completions with the
end-of-sequence token removed, so lengths count the same tokens whichever ran.
"""

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass

from tqdm.auto import tqdm

from .config import EvalConfig
from .tokens import cut_at_eos


@dataclass
class Generation:
    """One sampled completion: its token ids without the end-of-sequence token, and whether the budget cut it."""

    token_ids: list[int]
    truncated: bool


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
