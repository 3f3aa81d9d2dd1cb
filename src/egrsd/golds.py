"""A gold answer as the user wrote it, turned into the one text form that training and `egrsd-eval` both grade.

* Text stays text (stripped); a number becomes its decimal form (`0` -> "0", `0.0` -> "0.0", `-1` -> "-1"); a
  boolean becomes JSON's spelling ("true", "false").
* A list is a multi-part answer: its parts' text forms joined by ", " (`[1, 2]` -> "1, 2"), which the grader compares
  as math-verify compares "1, 2" (the parts read together, as several boxed answers are; see docs/rewards.md). Empty
  parts are left out.
* Empty means an empty or whitespace-only string, null (None, or a float NaN, which is how parquet and pandas write a
  missing value), or a list with no non-empty part: nothing else. `0`, `false` and `"0"` are golds like any other.
* Placeholders some sets write for problems without a checkable answer (NuminaMath-derived sets mark proofs) are
  not golds either; they are counted apart from the empty ones.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any


# Placeholder golds of problems without a checkable answer, compared without case.
PLACEHOLDER_GOLDS = frozenset({"proof", "notfound", "nan"})
LIST_SEPARATOR = ", "


def text_form(value: Any) -> str:
    """The text of one value as the user wrote it ("" for an empty one); see the module docstring."""
    if value is None:
        return ""
    if isinstance(value, bool):  # before the numbers: bool is an int
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, Mapping):
        raise ValueError(f"an object ({dict(value)!r}) is not an answer: write the answer as text, a number or a list")
    if isinstance(value, Sequence | set | frozenset) or type(value).__name__ == "ndarray":
        parts = (text_form(part) for part in value)
        return LIST_SEPARATOR.join(part for part in parts if part)
    if hasattr(value, "item"):  # a numpy or torch scalar
        return text_form(value.item())
    return str(value).strip()


def is_placeholder(text: str) -> bool:
    return text.lower() in PLACEHOLDER_GOLDS


def usable_gold(value: Any) -> str | None:
    """The gold's text form, or None when there is no gold to grade against (empty, or a placeholder)."""
    text = text_form(value)
    return None if not text or is_placeholder(text) else text
