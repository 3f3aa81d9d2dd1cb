"""Token bookkeeping of an evaluation: prompt ids as training renders them, end-of-sequence and thinking tokens."""

from collections.abc import Iterable, Sequence

from .benchmarks import Problem, build_messages


THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


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
