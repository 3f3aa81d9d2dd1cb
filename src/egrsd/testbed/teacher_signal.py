"""Teacher signal: what the gate and the ratio see on the base's own verbose rollouts (`egrsd-testbed signal`).

The teacher is the same weights on the reference-conditioned prompt, as at the start of RL: per segment of the
completions, the student's and the teacher's log-probs and entropies, and at each fork the probability of starting a
verification loop.
"""

from collections.abc import Sequence
from typing import Any

import torch

from egrsd.teacher_prompts import DEFAULT_TEACHER_TEMPLATE, build_teacher_prompt
from egrsd.testbed import arithmetic
from egrsd.testbed.base_eval import generate, mean_or_nan, render_prompts


@torch.no_grad()
def completion_log_probs(
    model, prompt_ids: Sequence[list[int]], completion_ids: Sequence[list[int]], batch_size: int = 32
) -> list[torch.Tensor]:
    """Per sequence: the (completion length, vocab) next-token log-probabilities at each completion token."""
    results = []
    for begin in range(0, len(prompt_ids), batch_size):
        prompts, completions = prompt_ids[begin : begin + batch_size], completion_ids[begin : begin + batch_size]
        sequences = [p + c for p, c in zip(prompts, completions)]
        width = max(len(s) for s in sequences)
        # Right padding keeps the default positions correct for every real token.
        input_ids = torch.zeros(len(sequences), width, dtype=torch.long)
        attention_mask = torch.zeros(len(sequences), width, dtype=torch.long)
        for i, sequence in enumerate(sequences):
            input_ids[i, : len(sequence)] = torch.tensor(sequence)
            attention_mask[i, : len(sequence)] = 1
        logits = model(input_ids=input_ids.to(model.device), attention_mask=attention_mask.to(model.device)).logits
        log_probs = torch.log_softmax(logits.float().cpu(), dim=-1)
        for i, (prompt, completion) in enumerate(zip(prompts, completions)):
            # Position t predicts token t+1: the completion is scored from the prompt's last position on.
            results.append(log_probs[i, len(prompt) - 1 : len(prompt) + len(completion) - 1])
    return results


def token_offsets(tokenizer, completion_ids: list[int]) -> tuple[str, list[int]]:
    """The completion's text (special tokens kept) and the character offset where each token starts."""
    pieces = [tokenizer.decode([t], skip_special_tokens=False) for t in completion_ids]
    offsets, position = [], 0
    for piece in pieces:
        offsets.append(position)
        position += len(piece)
    return "".join(pieces), offsets


def token_segments(tokenizer, completion_ids: list[int]) -> list[str]:
    """The segment (arithmetic.SEGMENTS) of each completion token, from its first character."""
    text, offsets = token_offsets(tokenizer, completion_ids)
    labels = arithmetic.character_segments(text)
    return [labels[o] if o < len(labels) else arithmetic.SEGMENT_OTHER for o in offsets]


def teacher_signal(
    model,
    tokenizer,
    rows: Sequence[dict[str, Any]],
    teacher_template: str = DEFAULT_TEACHER_TEMPLATE,
    samples_per_problem: int = 1,
    seed: int = 0,
    max_new_tokens: int = 512,
) -> dict[str, Any]:
    """Score the student's own samples (plain prompt, T=1) under the student and under the teacher prompt.

    The teacher is the same weights on the reference-conditioned prompt, as at the start of RL. `tables` holds, per
    segment of the verbose samples (all of them, and the correct ones only), the means of both log-probs, their
    difference (the ratio's log), both entropies (the gate reads the teacher's) and the low tail of the teacher's
    log-probs. `forks` holds, at the line starts that follow a step line, the probability each model gives to
    starting a verification loop there, for verbose and concise samples.
    """
    expanded = [row for row in rows for _ in range(samples_per_problem)]
    student_prompts = [row["prompt"] for row in expanded]
    completions = generate(model, tokenizer, student_prompts, max_new_tokens=max_new_tokens, seed=seed)
    texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
    finished = [i for i, ids in enumerate(completions) if tokenizer.eos_token_id in ids]
    verbose = {i for i in finished if arithmetic.is_verbose(texts[i])}
    correct = {i for i in finished if arithmetic.extract_answer(texts[i]) == expanded[i]["answer"]}

    def prompt_ids(prompts):
        return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in render_prompts(tokenizer, prompts)]

    scored = [completions[i] for i in finished]
    student = completion_log_probs(model, prompt_ids([student_prompts[i] for i in finished]), scored)
    teacher_prompts = [build_teacher_prompt(expanded[i]["prompt"], expanded[i], teacher_template) for i in finished]
    teacher = completion_log_probs(model, prompt_ids(teacher_prompts), scored)
    verify_ids = [tokenizer.convert_tokens_to_ids(prefix[0]) for prefix in arithmetic.VERIFICATION_PREFIXES]

    tables: dict[str, dict[str, dict[str, float]]] = {}
    for name, subset in (("all_verbose", verbose), ("correct_verbose", verbose & correct)):
        collected: dict[str, dict[str, list[torch.Tensor]]] = {s: {} for s in arithmetic.SEGMENTS}
        for position, index in enumerate(finished):
            if index not in subset:
                continue
            ids = torch.tensor(completions[index]).unsqueeze(-1)
            segments = token_segments(tokenizer, completions[index])
            values = {}
            for model_name, log_probs in (("student", student[position]), ("teacher", teacher[position])):
                values[f"{model_name}_logp"] = log_probs.gather(-1, ids).squeeze(-1)
                values[f"{model_name}_entropy"] = -(log_probs.exp() * log_probs).sum(-1)
            for segment in arithmetic.SEGMENTS:
                mask = torch.tensor([s == segment for s in segments], dtype=torch.bool)
                for key, tensor in values.items():
                    collected[segment].setdefault(key, []).append(tensor[mask])
        tables[name] = {segment: _segment_summary(values) for segment, values in collected.items()}

    fork_values: dict[str, dict[str, list[float]]] = {}
    for position, index in enumerate(finished):
        text, offsets = token_offsets(tokenizer, completions[index])
        token_at = {offset: token for token, offset in enumerate(offsets)}
        style = "verbose" if index in verbose else "concise"
        for offset, first in arithmetic.fork_positions(text):
            if offset not in token_at:
                continue
            key = f"{'first fork' if first else 'later forks'}, {style} samples"
            for model_name, log_probs in (("student", student[position]), ("teacher", teacher[position])):
                p_verify = log_probs[token_at[offset], verify_ids].exp().sum().item()
                fork_values.setdefault(key, {}).setdefault(model_name, []).append(p_verify)
    forks = {
        key: {
            "count": len(values["student"]),
            "student_p_verify": mean_or_nan(values["student"]),
            "teacher_p_verify": mean_or_nan(values["teacher"]),
            "teacher_below_student": mean_or_nan(t < s for t, s in zip(values["teacher"], values["student"])),
        }
        for key, values in sorted(fork_values.items())
    }
    return {
        "num_samples": len(texts),
        "num_finished": len(finished),
        "num_verbose": len(verbose),
        "num_correct_verbose": len(verbose & correct),
        "sampled_accuracy": mean_or_nan(arithmetic.extract_answer(t) == r["answer"] for t, r in zip(texts, expanded)),
        "tables": tables,
        "forks": forks,
    }


def _segment_summary(values: dict[str, list[torch.Tensor]]) -> dict[str, float]:
    if not values:
        return {"tokens": 0}
    merged = {key: torch.cat(parts) for key, parts in values.items()}
    teacher, student = merged["teacher_logp"], merged["student_logp"]
    if teacher.numel() == 0:
        return {"tokens": 0}
    return {
        "tokens": int(teacher.numel()),
        "student_logp": student.mean().item(),
        "teacher_logp": teacher.mean().item(),
        "delta": (teacher - student).mean().item(),
        "student_prob": student.exp().mean().item(),
        "teacher_prob": teacher.exp().mean().item(),
        "student_entropy": merged["student_entropy"].mean().item(),
        "teacher_entropy": merged["teacher_entropy"].mean().item(),
        "teacher_logp_p01": torch.quantile(teacher, 0.01).item(),
        "teacher_logp_min": teacher.min().item(),
        "teacher_below_minus3": (teacher < -3).float().mean().item(),
    }


def format_teacher_signal(signal: dict[str, Any], table: str = "all_verbose") -> str:
    header = (
        "| segment | tokens | student logp | teacher logp | delta | student p | teacher p | student H | teacher H "
        "| teacher logp p01 | teacher logp min | teacher logp < -3 |"
    )
    lines = [header, "|" + "---|" * 12]
    for segment, s in signal["tables"][table].items():
        if not s["tokens"]:
            lines.append(f"| {segment} | 0 |" + " |" * 10)
            continue
        lines.append(
            f"| {segment} | {s['tokens']} | {s['student_logp']:.3f} | {s['teacher_logp']:.3f} | {s['delta']:.3f} "
            f"| {s['student_prob']:.3f} | {s['teacher_prob']:.3f} | {s['student_entropy']:.3f} "
            f"| {s['teacher_entropy']:.3f} | {s['teacher_logp_p01']:.2f} | {s['teacher_logp_min']:.2f} "
            f"| {s['teacher_below_minus3']:.3f} |"
        )
    return "\n".join(lines)


def format_forks(signal: dict[str, Any]) -> str:
    lines = [
        "| fork | count | student P(verify) | teacher P(verify) | teacher < student |",
        "|---|---|---|---|---|",
    ]
    for key, f in signal["forks"].items():
        lines.append(
            f"| {key} | {f['count']} | {f['student_p_verify']:.3f} | {f['teacher_p_verify']:.3f} "
            f"| {f['teacher_below_student']:.3f} |"
        )
    return "\n".join(lines)
