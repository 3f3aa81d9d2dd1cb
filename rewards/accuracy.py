r"""Answer accuracy for thinking-mode completions, and the grading API the evaluation module shares with training.

Rules (the same in training and evaluation):

* Only the text after the LAST `</think>` is the answer section; a boxed answer inside the thinking block does not
  count, and a completion that never closes its thinking block scores 0.0.
* The final answer is the boxed answer in the answer section. Several boxes are read together, as math-verify's own
  extraction reads them (`\boxed{1}, \boxed{2}` is the answer `1, 2`): right for a multi-part gold such as `(1, 2)`,
  and worth 0 for a scalar gold, so boxing several candidates gains nothing; the `format` reward additionally asks for
  exactly one box. If the last box is unterminated (`\boxed{` cut off) there is no answer.
* The gold answer is read from the `answer` column: plain or LaTeX, optionally `$...$`-wrapped or itself boxed (the
  last box counts). A gold that math-verify cannot parse, or parses only as text, gives None, which TRL skips, for
  every completion (and `egrsd-eval` counts as ungradable).
* Before parsing, both sides are lightly normalized: `$...$`, `1\,000`, and the constants `\mathrm{e}`, `\mathrm{i}`,
  `\text{e}`, ... written bare (see `text.normalize_answer`).
* Each (answer, gold) pair is graded on its own: a pair that breaks the grader scores 0.0 (or None when the gold is
  at fault), never its neighbours.
* Equivalence is math-verify's (numbers, fractions, intervals, sets, units, percents, degrees, ...), run in a
  time-bounded worker process; see `verifier`.
"""

import logging
from collections.abc import Callable, Sequence
from typing import Any

from .text import answer_section, completion_text, final_boxed_answer, last_boxed_answer, normalize_answer
from .verifier import grade_pairs


logger = logging.getLogger(__name__)

# Statuses of pairs that ran out of time (in the worker, or killed with it); reported as a training metric.
TIMEOUT_STATUSES = ("timeout", "killed")


def extract_final_answer(completion: str) -> str | None:
    r"""The final answer of a thinking-mode completion: the boxed answer after the last `</think>`.

    Several boxes there are read together, as math-verify reads them (`text.final_boxed_answer`). None when
    the thinking block is never closed or no complete, non-empty boxed answer follows it (or the last box is cut
    off). Conversational completions (a list of messages) are accepted too.
    """
    section = answer_section(completion_text(completion))
    if section is None:
        return None
    return final_boxed_answer(section)


def gold_answer(gold: Any) -> str | None:
    """The gold answer as a string for the verifier: the last boxed part if it is boxed, else the whole text."""
    if gold is None:
        return None
    text = str(gold).strip()
    boxed = last_boxed_answer(text)
    text = normalize_answer(boxed if boxed is not None else text)
    return text or None


def _extract(completion: Any) -> tuple[str | None, str, bool]:
    """(answer or None, its normalized form, whether reading failed): one completion's trouble stays its own."""
    try:
        answer = extract_final_answer(completion)
        return answer, (normalize_answer(answer) if answer is not None else ""), False
    except Exception:
        logger.exception("reading one completion's answer failed; it scores 0.0")
        return None, "", True


def _gold(gold: Any) -> str | None:
    try:
        return gold_answer(gold)
    except Exception:
        logger.exception("reading one gold answer failed; its completions are skipped (None)")
        return None


def grade_with_status(completions: Sequence[Any], golds: Sequence[Any]) -> list[tuple[float | None, str | None, str]]:
    """(score, extracted answer, status) per completion; the status says how the score was decided.

    Each (answer, gold) pair is graded on its own: a pair that cannot be read or graded gets 0.0 (the answer's fault)
    or None (the gold's), never its neighbours.
    """
    if len(completions) != len(golds):
        raise ValueError(f"got {len(completions)} completions but {len(golds)} gold answers")
    extracted = [_extract(c) for c in completions]
    parsed_golds = [_gold(g) for g in golds]
    # A missing answer is still sent (as "") so that an unparseable gold gives None for every rollout.
    pairs = [(normalized, gold or "") for (_, normalized, _), gold in zip(extracted, parsed_golds)]
    verdicts = grade_pairs(pairs)
    results = []
    for (answer, _, failed), gold, (score, status) in zip(extracted, parsed_golds, verdicts):
        if failed and gold is not None:
            score, status = 0.0, "error"
        elif answer is None and score is not None:
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
        log_metric("grader/past_deadline", float(sum(status == "past_deadline" for _, _, status in graded)))
    return [score for score, _, _ in graded]
