r"""Format reward: one closed thinking block, then exactly one boxed final answer."""

from collections.abc import Sequence
from typing import Any

from .text import THINK_CLOSE, THINK_OPEN, boxed_answers, completion_text


def is_well_formatted(text: str) -> bool:
    r"""True iff `text` has exactly one closed thinking block and exactly one complete `\boxed{...}` after it.

    The opening `<think>` may be missing: Qwen3 thinking templates can put it in the prompt, so the completion then
    starts inside the block. If present, only whitespace may precede it.
    """
    if text.count(THINK_CLOSE) != 1:
        return False
    close_at = text.index(THINK_CLOSE)
    opens = text.count(THINK_OPEN)
    if opens > 1 or (opens == 1 and text[: text.index(THINK_OPEN)].strip()):
        return False
    if opens == 1 and text.index(THINK_OPEN) > close_at:
        return False
    answers = boxed_answers(text[close_at + len(THINK_CLOSE) :])
    return len(answers) == 1 and answers[0] is not None and answers[0].strip() != ""


def format_reward(completions: Sequence[Any], **kwargs) -> list[float]:
    r"""1.0 for a closed thinking block followed by exactly one `\boxed{...}` answer, else 0.0."""
    return [1.0 if is_well_formatted(completion_text(c)) else 0.0 for c in completions]
