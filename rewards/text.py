"""Text helpers shared by the rewards: completion text, the answer section after the thinking block, boxed answers.

Nothing here imports math-verify, so these run in the trainer process at string speed.
"""

import re
from collections.abc import Mapping
from typing import Any


THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
# Qwen3's chat template (and transformers' response parsing) put a parsed thinking block under one of these keys.
REASONING_KEYS = ("reasoning_content", "thinking", "reasoning")
# A final answer's command; `\fbox` appears in a few MATH reference solutions.
_BOX_START = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BARE_TOKEN = re.compile(r"[^\s$\\{}]+")
_BRACE_TOKEN = re.compile(r"\\.|[{}]", re.DOTALL)
# A thousands separator written as a LaTeX space between digit groups: 1\,000 or 1\ 000 (math-verify reads 1*000).
_LATEX_THOUSANDS_SPACE = re.compile(r"(?<=\d)(?:\\,|\\ |\\!|~)(?=\d{3}(?!\d))")
# The constants e, i and pi set upright or as text: `\mathrm{e}`, `\text{i}`, `{\rm e}`, `\mathrm{\pi}`. The parser
# reads `\mathrm{e}` as a text symbol, and `\mathrm{i}`, or `\mathrm{e}` inside a fraction, not at all, so the
# wrapper is dropped: the bare letter is Euler's number or the imaginary unit.
# Other letters keep it (`5\text{ m}` is a unit).
_WRAPPED_CONSTANT = re.compile(
    r"\\(?:mathrm|text|textrm|textit|mathit|mathnormal|operatorname|rm)\s*\{\s*(e|i|\\pi)\s*\}|\{\s*\\rm\s+(e|i)\s*\}"
)


def message_text(message: Mapping[str, Any]) -> str:
    """The text of one chat message, with a reasoning field (if the response was parsed) put back as a think block."""
    content = message.get("content") or ""
    if not isinstance(content, str):
        # Multimodal content parts: keep the text parts only.
        content = "".join(part.get("text", "") for part in content if isinstance(part, Mapping))
    for key in REASONING_KEYS:
        reasoning = message.get(key)
        if isinstance(reasoning, str):
            return f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n\n{content}"
    return content


def completion_text(completion: str | list[Mapping[str, Any]] | Mapping[str, Any] | None) -> str:
    """The text of a TRL completion: a plain string, or a conversational list of messages (assistant turns joined)."""
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        return message_text(completion)
    messages = [m for m in completion if isinstance(m, Mapping)]
    assistant = [m for m in messages if m.get("role", "assistant") == "assistant"] or messages
    return "\n".join(message_text(m) for m in assistant)


def answer_section(text: str) -> str | None:
    """The text after the last `</think>`, or None when the thinking block is never closed."""
    position = text.rfind(THINK_CLOSE)
    if position < 0:
        return None
    return text[position + len(THINK_CLOSE) :]


def boxed_answers(text: str) -> list[str | None]:
    r"""Contents of every `\boxed{...}` / `\fbox{...}` in order; None for one whose braces never close.

    `\boxed 5` (a single token without braces) is read as "5". Braces are matched in one pass over the text, so even
    thousands of unterminated boxes cost linear time.
    """
    starts = list(_BOX_START.finditer(text))
    if not starts:
        return []
    closing = _matching_braces(text)
    answers: list[str | None] = []
    for match in starts:
        position = match.end()
        while position < len(text) and text[position] == " ":
            position += 1
        if position < len(text) and text[position] == "{":
            end = closing.get(position)
            answers.append(text[position + 1 : end] if end is not None else None)
        else:
            token = _BARE_TOKEN.match(text, position)
            # A sentence's full stop after `\boxed 5` is not part of the answer.
            bare = token.group(0).rstrip(".,;:") if token else ""
            answers.append(bare or None)
    return answers


def _matching_braces(text: str) -> dict[int, int]:
    """Map from each `{` that is closed to its `}`; escaped braces (`\\{`, `\\}`) are content, not structure."""
    open_positions: list[int] = []
    closing: dict[int, int] = {}
    for token in _BRACE_TOKEN.finditer(text):
        if token.group() == "{":
            open_positions.append(token.start())
        elif token.group() == "}" and open_positions:
            closing[open_positions.pop()] = token.start()
    return closing


def final_boxed_answer(text: str) -> str | None:
    r"""The final answer of an answer section: its boxed part, or several boxed parts read together.

    One box: its content. Several: math-verify's own reading of such an answer, the boxes joined as one list
    (`\boxed{1}, \boxed{2}` reads as `1, 2`, which matches the gold `(1, 2)` and not the gold `1`; identical boxes read
    as one). None when there is no complete, non-empty box, or the last box is unterminated (the answer was cut off).
    """
    answers = boxed_answers(text)
    if not answers or answers[-1] is None:
        return None
    parts = [answer.strip() for answer in answers if answer is not None and answer.strip()]
    if not parts:
        return None
    if len(set(parts)) == 1:
        return parts[0]
    return ", ".join(parts)


def last_boxed_answer(text: str) -> str | None:
    """The content of the last boxed answer in `text`, or None if there is none or the last one is unterminated."""
    answers = boxed_answers(text)
    if not answers:
        return None
    answer = answers[-1]
    return answer if answer and answer.strip() else None


def normalize_answer(answer: str) -> str:
    r"""Light, meaning-preserving clean-up before math-verify: surrounding `$`, LaTeX-space thousands separators, and
    the constants e, i and pi set upright or as text.

    math-verify reads `1\,000` as 1·000 = 0, so the digit groups are joined first; it misreads `\mathrm{e}` and
    `\mathrm{i}` (`1 - \frac{1}{\mathrm{e}}` parses as the text `1 - \frac{1}{`), so these constants lose their
    wrapper.
    """
    answer = answer.strip()
    if len(answer) >= 2 and answer.startswith("$") and answer.endswith("$"):
        answer = answer.strip("$").strip()
    answer = _WRAPPED_CONSTANT.sub(lambda m: m.group(1) or m.group(2), answer)
    return _LATEX_THOUSANDS_SPACE.sub("", answer)
