"""The base's held-out check: sampled (T = 1) and greedy completions of plain and reference-conditioned prompts,
their accuracy, length, verbose and truncated shares (stored with a built base, printed by `egrsd-testbed eval-base`).
"""

from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from egrsd.teacher_prompts import DEFAULT_TEACHER_TEMPLATE, build_teacher_prompt
from egrsd.testbed import arithmetic


def render_prompts(tokenizer, prompts: Sequence[list[dict[str, str]]]) -> list[str]:
    return [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: Sequence[list[dict[str, str]]],
    greedy: bool = False,
    temperature: float = 1.0,
    max_new_tokens: int = 512,
    batch_size: int = 100,
    seed: int = 0,
    progress: bool = False,
) -> list[list[int]]:
    """Completion token ids (through the eos when one was produced) for each prompt; pure temperature sampling."""
    torch.manual_seed(seed)
    texts = render_prompts(tokenizer, prompts)
    completions = []
    batches = range(0, len(texts), batch_size)
    for begin in tqdm(batches, desc="generating", disable=not progress, leave=False):
        batch = tokenizer(
            texts[begin : begin + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(model.device)
        if greedy:
            sampling = {"do_sample": False}
        else:
            # transformers samples with top_k=50 unless told otherwise; rollouts and log-probs assume the full softmax.
            sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
        output = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **sampling,
        )
        for row in output[:, batch["input_ids"].shape[1] :].tolist():
            if tokenizer.eos_token_id in row:
                row = row[: row.index(tokenizer.eos_token_id) + 1]
            completions.append([t for t in row if t != tokenizer.pad_token_id])
    return completions


def evaluate_base(
    model,
    tokenizer,
    rows: Sequence[dict[str, Any]],
    teacher_template: str = DEFAULT_TEACHER_TEMPLATE,
    seed: int = 0,
    max_new_tokens: int = 512,
    progress: bool = False,
) -> dict[str, Any]:
    """Accuracy, mean completion tokens (eos included), verbose and truncated fractions, for plain and
    reference-conditioned prompts, sampled at T=1 and greedy."""
    results: dict[str, Any] = {}
    for kind in ("plain", "reference"):
        prompts = [
            row["prompt"] if kind == "plain" else build_teacher_prompt(row["prompt"], row, teacher_template)
            for row in rows
        ]
        results[kind] = {}
        for mode in ("sampled", "greedy"):
            ids = generate(
                model, tokenizer, prompts, greedy=mode == "greedy", max_new_tokens=max_new_tokens, seed=seed
            )
            texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
            answers = [arithmetic.extract_answer(t) for t in texts]
            results[kind][mode] = {
                "accuracy": mean_or_nan(a == row["answer"] for a, row in zip(answers, rows)),
                "mean_tokens": mean_or_nan(len(i) for i in ids),
                "verbose_fraction": mean_or_nan(arithmetic.is_verbose(t) for t in texts),
                "truncated_fraction": mean_or_nan(tokenizer.eos_token_id not in i for i in ids),
            }
            if progress:
                print(f"  {kind:9s} {mode:7s} {_format_metrics(results[kind][mode])}", flush=True)
    return results


def mean_or_nan(values) -> float:
    """The mean as a float; NaN for no values."""
    values = [float(v) for v in values]
    return sum(values) / len(values) if values else float("nan")


def _format_metrics(metrics: dict[str, float]) -> str:
    return (
        f"accuracy {metrics['accuracy']:.3f}  mean tokens {metrics['mean_tokens']:.1f}  "
        f"verbose {metrics['verbose_fraction']:.3f}  truncated {metrics['truncated_fraction']:.3f}"
    )


def format_evaluation(evaluation: dict[str, Any]) -> str:
    lines = ["| prompt | decoding | accuracy | mean tokens | verbose | truncated |", "|---|---|---|---|---|---|"]
    for kind in ("plain", "reference"):
        for mode in ("sampled", "greedy"):
            m = evaluation[kind][mode]
            lines.append(
                f"| {kind} | {mode} | {m['accuracy']:.3f} | {m['mean_tokens']:.1f} | {m['verbose_fraction']:.3f} "
                f"| {m['truncated_fraction']:.3f} |"
            )
    return "\n".join(lines)
