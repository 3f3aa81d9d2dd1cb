"""The grader against its own case file (tests/fixtures/grading_cases.jsonl), and one bad pair costing only itself.

Each case is a thinking-mode completion, a gold and the expected verdict (1.0, 0.0, or None for a gold that cannot be
graded). Where math-verify's plain verdict differs, the case names the rule of ours that decides it, and the grading
rules of docs/rewards.md document that rule.
"""

import json
import os
import re

import pytest
from helpers import FIXTURES, ROOT

from egrsd.rewards import accuracy_reward, grade_batch


CASES_FILE = FIXTURES / "grading_cases.jsonl"
with open(CASES_FILE, encoding="utf-8") as handle:
    CASES = [json.loads(line) for line in handle if line.strip()]


def think(final: str) -> str:
    return "<think>\nLet me work it out.\n</think>\n\n" + final


def test_every_case_gets_its_expected_verdict():
    verdicts = [score for score, _ in grade_batch([c["completion"] for c in CASES], [c["gold"] for c in CASES])]
    wrong = [(c["gold"], c["completion"][-60:], v) for c, v in zip(CASES, verdicts) if v != c["expected"]]
    assert wrong == []
    # The target the cases are for: no wrong answer scored as correct.
    assert not any(c["expected"] == 0.0 and v == 1.0 for c, v in zip(CASES, verdicts))


def test_the_cases_cover_each_kind():
    kinds = {c["kind"] for c in CASES}
    assert {"notation", "wrong", "multi-part", "huge", "broken", "placement"} <= kinds
    assert sum(c["expected"] == 0.0 for c in CASES) >= 20 and sum(c["expected"] is None for c in CASES) >= 3


def plain_math_verify(case) -> float:
    """math-verify on its own: the gold in LaTeX delimiters, the whole completion, its default extraction."""
    from math_verify import parse, verify

    gold = parse("$" + case["gold"] + "$", parsing_timeout=1)
    answer = parse(case["completion"], parsing_timeout=1)
    return float(verify(gold, answer, timeout_seconds=1))


def test_every_disagreement_with_math_verify_is_a_documented_rule():
    with open(os.path.join(ROOT, "docs", "rewards.md"), encoding="utf-8") as handle:
        page = handle.read()
    start = page.index("\n## Grading rules\n")
    grading = page[start : page.index("\n## ", start + 1)]
    documented = set(re.findall(r"\*\*rule `([a-z-]+)`\*\*", grading))
    disagreements = {}
    for case in CASES:
        plain = plain_math_verify(case)
        if plain != case["expected"]:
            disagreements[(case["gold"], case["completion"][-50:])] = case.get("rule")
        else:
            assert "rule" not in case, f"math-verify agrees, no rule needed: {case}"
    assert disagreements, "the cases should show where the rules matter"
    assert {key: rule for key, rule in disagreements.items() if rule not in documented} == {}


def test_one_bad_pair_costs_only_itself():
    huge = "9" * 5000  # past Python's 4300-digit limit for int(str)
    completions = [think(r"\boxed{2}"), think(r"\boxed{3}"), think(r"\boxed{" + huge + "}"), think(r"\boxed{4}")]
    assert [s for s, _ in grade_batch(completions, ["2", "3", "2", "4"])] == [1.0, 1.0, 0.0, 1.0]
    # A broken gold is None for its own rollouts only.
    assert [s for s, _ in grade_batch(completions[:3], ["2", r"\frac{", "1.5"])] == [1.0, None, 0.0]
    # A completion that is not text at all scores 0 without taking the batch with it.
    assert accuracy_reward([think(r"\boxed{2}"), 12345, think(r"\boxed{5}")], answer=["2", "2", "5"]) == [
        1.0,
        0.0,
        1.0,
    ]


@pytest.mark.parametrize(
    ("gold", "right", "wrong"),
    [
        (r"2\mathrm{e}", "2e", "2"),
        (r"\mathrm{e}-1", "e-1", "e+1"),
        (r"1 - \frac{1}{\mathrm{e}}", r"\frac{e-1}{e}", "1"),
        (r"3+2\mathrm{i}", "3+2i", "5"),
        (r"{\rm e}^{2}", "e^2", "2"),
    ],
)
def test_upright_constants_are_the_constants(gold, right, wrong):
    graded = grade_batch([think(r"\boxed{" + right + "}"), think(r"\boxed{" + wrong + "}")], [gold, gold])
    assert [s for s, _ in graded] == [1.0, 0.0]


def test_a_gold_that_parses_only_to_text_is_none_even_for_an_identical_answer():
    for gold in (r"\frac{", r"\sqrt{", r"\left("):
        graded = grade_batch([think(r"\boxed{5}"), think(r"\boxed{" + gold + "}")], [gold, gold])
        assert [s for s, _ in graded] == [None, None]
