"""How long a teacher prompt may be, and the checks that say so before the model's weights load.

A teacher sequence is its prompt and then the rollout's completion, so the prompt may take at most
`max_teacher_prompt_length` tokens (default: what the model's context leaves after `max_completion_length`). A longer
prompt has its reference solution cut, never the problem; a prompt longer than the limit even without its solution
cannot be scored at all. Both are known from the model's config, the tokenizer and the data, before the weights load.
"""

import functools
from collections.abc import Sequence
from typing import Any

from .cli import UserError
from .teacher_prompts import build_teacher_prompt


def teacher_prompt_limit(max_teacher_prompt_length: int | None, completion: int, positions: int | None) -> int | None:
    """The longest teacher prompt, in tokens: `max_teacher_prompt_length`, or what the model's context (`positions`,
    its `max_position_embeddings`; None when it has none) leaves after the completion. A `UserError` (a ValueError)
    when a teacher sequence could exceed the context."""
    limit = max_teacher_prompt_length
    if not positions:
        return limit
    if limit is not None and limit + completion > positions:
        raise UserError(
            f"max_teacher_prompt_length={limit} + max_completion_length={completion} exceeds the model's context "
            f"(max_position_embeddings={positions})",
            f"set max_teacher_prompt_length to at most {positions - completion}, or lower max_completion_length",
        )
    if limit is None and completion >= positions:
        raise UserError(
            f"max_completion_length={completion} leaves no room for a teacher prompt in the model's context "
            f"(max_position_embeddings={positions})",
            "lower max_completion_length",
        )
    return positions - completion if limit is None else limit


def context_problems(model_name: str, args) -> list[str]:
    """`--check`: a teacher sequence longer than the model's context, where the model's config is on this machine
    (a model folder, or the testbed base); a Hub model is checked when training reads its config."""
    import os

    if not args.needs_teacher:
        return []
    if model_name == "testbed:base":
        from .testbed.base import shipped_base_path

        model_name = str(shipped_base_path())
    if not os.path.isfile(os.path.join(model_name, "config.json")):
        return []
    try:
        teacher_prompt_limit(args.max_teacher_prompt_length, args.max_completion_length, context_length(model_name))
    except UserError as error:
        return [error.message()]
    return []


def context_length(model_path: str) -> int | None:
    """The model's `max_position_embeddings`, read from its config alone (no weights); None when it has none or the
    config cannot be read here (the model's own load then says why)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_path)
    except (OSError, ValueError):
        return None
    return getattr(config.get_text_config(), "max_position_embeddings", None)


def check_teacher_budget(model_path: str, tokenizer, dataset, args) -> None:
    """Training, before the weights load: every teacher sequence fits the model's context, and every row's teacher
    prompt fits its limit without its reference solution; a `UserError` otherwise."""
    positions = context_length(model_path)
    limit = teacher_prompt_limit(args.max_teacher_prompt_length, args.max_completion_length, positions)
    if limit is not None:
        check_teacher_prompts_fit(dataset, tokenizer, args, limit)


def bare_teacher_prompt_lengths(
    rows: Sequence[dict[str, Any]], tokenizer, template: str, solution_column: str, chat_template_kwargs: dict
) -> list[int]:
    """Token counts of the rows' teacher prompts with an empty reference solution (the part never cut), rendered as
    the trainer renders them: the chat template with the generation prompt and `chat_template_kwargs`."""
    prompts = [
        build_teacher_prompt(row["prompt"], {**row, solution_column: ""}, template, solution_column) for row in rows
    ]
    texts = [
        prompt
        if isinstance(prompt, str)
        else tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True, **chat_template_kwargs)
        for prompt in prompts
    ]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


# Tokens a chat template may add per message beyond what an empty conversation of the same shape has (role names).
_PER_MESSAGE_MARGIN = 8


def _content_bytes(row: dict[str, Any], template: str) -> tuple[int, int]:
    """(UTF-8 bytes of the prompt's text and of the answer the template shows, messages in the prompt)."""
    prompt = row["prompt"]
    messages = [{"content": prompt}] if isinstance(prompt, str) else prompt
    size = sum(len(str(message.get("content") or "").encode()) for message in messages)
    if "{answer}" in template:
        size += len(str(row.get("answer") or "").encode())
    return size, len(messages)


def _emptied(row: dict[str, Any]) -> dict[str, Any]:
    """The row with every message's text and the answer empty: what the template and chat template add alone."""
    prompt = row["prompt"]
    empty = "" if isinstance(prompt, str) else [{**message, "content": ""} for message in prompt]
    return {**row, "prompt": empty, "answer": ""}


def check_teacher_prompts_fit(dataset, tokenizer, args, limit: int) -> None:
    """A `UserError` when some row's teacher prompt exceeds `limit` tokens even without its reference solution.

    A token covers at least one byte of text, so a row whose text (in bytes) plus what the templates add to an empty
    conversation (in tokens, with a margin per message) fits the limit fits; only the other rows are rendered and
    tokenized, which keeps this quick on large sets with a long context."""
    columns = ["prompt", *(c for c in (args.solution_column, "answer") if c in dataset.column_names)]
    rows = dataset.select_columns(columns).to_list()
    measure = functools.partial(
        bare_teacher_prompt_lengths,
        tokenizer=tokenizer,
        template=args.teacher_template,
        solution_column=args.solution_column,
        chat_template_kwargs=(
            args.chat_template_kwargs
            if args.teacher_chat_template_kwargs is None
            else args.teacher_chat_template_kwargs
        )
        or {},
    )
    (overhead,) = measure([_emptied(rows[0])])
    bounds = [_content_bytes(row, args.teacher_template) for row in rows]
    unsure = [row for row, (size, count) in zip(rows, bounds) if overhead + size + _PER_MESSAGE_MARGIN * count > limit]
    over = [length for length in measure(unsure) if length > limit] if unsure else []
    if over:
        raise UserError(
            f"{len(over)} of {len(rows)} teacher prompts are longer than max_teacher_prompt_length={limit} tokens "
            f"even without their reference solution (the longest: {max(over)} tokens), and the problem is never cut",
            f"raise max_teacher_prompt_length to at least {max(over)} (or leave it unset: the model's context minus "
            "max_completion_length), or shorten those problems or the teacher_template",
        )
