r"""Answer accuracy for thinking-mode completions, and the grading API the evaluation module shares with training.

Rules (the same in training and evaluation):

* Only the text after the LAST `</think>` is the answer section; a boxed answer inside the thinking block does not
  count, and a completion that never closes its thinking block scores 0.0.
* The final answer is the LAST `\boxed{...}` in the answer section (the model's last stated answer). Hedging by
  boxing several candidates gains nothing, since only the last one is read; the `format` reward additionally asks
  for exactly one. If that last box is unterminated (`\boxed{` cut off) there is no answer.
* The gold answer is read from the `answer` column: plain or LaTeX, optionally `$...$`-wrapped or itself boxed (the
  last box counts). A gold that math-verify cannot parse gives None, which TRL skips, for every completion.
* Equivalence is math-verify's (numbers, fractions, intervals, sets, units, percents, degrees, ...), run in a
  time-bounded worker process; see `rewards.verifier`.
"""

import logging
from collections.abc import Callable, Sequence
from typing import Any

from rewards.text import answer_section, completion_text, last_boxed_answer, normalize_answer
from rewards.verifier import GradingWorkerError, grade_pairs


logger = logging.getLogger(__name__)

# Statuses of pairs that ran out of time (in the worker, or killed with it); reported as a training metric.
TIMEOUT_STATUSES = ("timeout", "killed")


def extract_final_answer(completion: str) -> str | None:
    r"""The final answer of a thinking-mode completion: the last `\boxed{...}` after the last `</think>`.

    None when the thinking block is never closed or no (complete, non-empty) boxed answer follows it. Conversational
    completions (a list of messages) are accepted too.
    """
    section = answer_section(completion_text(completion))
    if section is None:
        return None
    answer = last_boxed_answer(section)
    return answer.strip() if answer is not None else None


def gold_answer(gold: Any) -> str | None:
    """The gold answer as a string for the verifier: the last boxed part if it is boxed, else the whole text."""
    if gold is None:
        return None
    text = str(gold).strip()
    boxed = last_boxed_answer(text)
    text = normalize_answer(boxed if boxed is not None else text)
    return text or None


def grade_with_status(completions: Sequence[Any], golds: Sequence[Any]) -> list[tuple[float | None, str | None, str]]:
    """(score, extracted answer, status) per completion; the status says how the score was decided."""
    if len(completions) != len(golds):
        raise ValueError(f"got {len(completions)} completions but {len(golds)} gold answers")
    try:
        extracted = [extract_final_answer(c) for c in completions]
        parsed_golds = [gold_answer(g) for g in golds]
        # A missing answer is still sent (as "") so that an unparseable gold gives None for every rollout.
        pairs = [(normalize_answer(a) if a is not None else "", g or "") for a, g in zip(extracted, parsed_golds)]
        verdicts = grade_pairs(pairs)
    except GradingWorkerError:
        raise
    except Exception:
        logger.exception("grading failed unexpectedly; these completions are skipped (None)")
        return [(None, None, "error")] * len(completions)
    results = []
    for answer, (score, status) in zip(extracted, verdicts):
        if answer is None and score is not None:
            score = 0.0
        results.append((score, answer, status))
    return results


def grade_batch(completions: Sequence[Any], golds: Sequence[Any]) -> list[tuple[float | None, str | None]]:
    """`grade` for many completions in one round-trip to the grading worker (much faster than one call each)."""
    return [(score, answer) for score, answer, _ in grade_with_status(completions, golds)]


def grade(completion: str, gold: str) -> tuple[float | None, str | None]:
    """(1.0 or 0.0, or None if the gold is unparseable; the extracted answer or None). Time-bounded, never raises.

    The one exception to "never raises" is a broken installation: `GradingWorkerError` if the grading worker
    cannot start at all (e.g. math-verify missing).
    """
    return grade_batch([completion], [gold])[0]


def accuracy_reward(
    completions: Sequence[Any],
    answer: Sequence[Any],
    log_extra: Callable[[str, list], None] | None = None,
    log_metric: Callable[[str, float], None] | None = None,
    **kwargs,
) -> list[float | None]:
    """1.0 if the final answer after `</think>` matches the gold `answer` column, else 0.0; None if the gold is bad."""
    graded = grade_with_status(completions, answer)
    if log_extra is not None:
        log_extra("extracted_answer", [extracted if extracted is not None else "" for _, extracted, _ in graded])
    if log_metric is not None:
        log_metric("grader/timeouts", float(sum(status in TIMEOUT_STATUSES for _, _, status in graded)))
    return [score for score, _, _ in graded]
