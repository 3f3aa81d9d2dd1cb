"""The synthetic task: chain arithmetic with a verbose and a concise reasoning style.

A problem is a chain of 2-3 additions/subtractions whose intermediate results all stay in 0..99
("Compute 37+48-15."). The concise derivation writes one line per operation ("37+48=85"); the verbose style follows
every step with 1-3 redundant self-verification loops, the habit EGRSD is meant to train away. The concise derivation
doubles as the reference solution (the teacher's privileged context).

Problems are split into train and held-out partitions by a stable hash of their text, so every split drawn from any
seed, and the base model's own training data, stays disjoint from the held-out problems.
"""

import hashlib
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


MAX_VALUE = 99
MIN_OPERATIONS = 2
MAX_OPERATIONS = 3
MAX_VERIFICATION_LOOPS = 3
# One problem in HELD_OUT_MODULUS (by text hash) is reserved for held-out evaluation.
HELD_OUT_MODULUS = 10

VERBOSE = "verbose"
CONCISE = "concise"

# The verification loops a verbose trace draws from; each redoes the step it follows in a different way.
VERIFICATION_PREFIXES = ("Let me verify:", "Wait, let me recheck:", "Hmm,")

STEP_LINE = re.compile(r"^(\d+)([+-])(\d+)=(\d+)$")
BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


@dataclass(frozen=True)
class Step:
    left: int
    operator: str
    right: int
    result: int

    @property
    def text(self) -> str:
        return f"{self.left}{self.operator}{self.right}={self.result}"


@dataclass(frozen=True)
class Problem:
    operands: tuple[int, ...]
    operators: tuple[str, ...]

    @property
    def expression(self) -> str:
        parts = [str(self.operands[0])]
        for operator, operand in zip(self.operators, self.operands[1:]):
            parts += [operator, str(operand)]
        return "".join(parts)

    @property
    def question(self) -> str:
        return f"Compute {self.expression}."

    @property
    def steps(self) -> list[Step]:
        steps, value = [], self.operands[0]
        for operator, operand in zip(self.operators, self.operands[1:]):
            result = value + operand if operator == "+" else value - operand
            steps.append(Step(value, operator, operand, result))
            value = result
        return steps

    @property
    def answer(self) -> int:
        return self.steps[-1].result

    @property
    def intermediates(self) -> list[int]:
        return [self.operands[0]] + [step.result for step in self.steps]


def sample_problem(rng: random.Random) -> Problem:
    """Draw a problem: 2-3 operations, operands 1..99, every intermediate result in 0..MAX_VALUE."""
    num_operations = rng.randint(MIN_OPERATIONS, MAX_OPERATIONS)
    value = rng.randint(1, MAX_VALUE)
    operands, operators = [value], []
    for _ in range(num_operations):
        operator = rng.choice("+-")
        # Switch when the drawn operation has no operand that keeps the result in range (value 99 or 0).
        if operator == "+" and value >= MAX_VALUE:
            operator = "-"
        elif operator == "-" and value <= 0:
            operator = "+"
        operand = rng.randint(1, MAX_VALUE - value) if operator == "+" else rng.randint(1, value)
        value = value + operand if operator == "+" else value - operand
        operands.append(operand)
        operators.append(operator)
    return Problem(tuple(operands), tuple(operators))


def is_held_out(problem: Problem) -> bool:
    """Whether the problem belongs to the held-out partition (stable across runs and platforms)."""
    digest = hashlib.sha256(problem.expression.encode()).digest()
    return int.from_bytes(digest[:8], "big") % HELD_OUT_MODULUS == 0


def sample_problems(
    rng: random.Random, held_out: bool, count: int | None = None, unique: bool = True
) -> Iterator[Problem]:
    """Yield problems of one partition (held-out or train), optionally without repeats; endless if count is None."""
    seen = set()
    produced = 0
    while count is None or produced < count:
        problem = sample_problem(rng)
        if is_held_out(problem) != held_out:
            continue
        if unique:
            if problem.expression in seen:
                continue
            seen.add(problem.expression)
        produced += 1
        yield problem


def verification_line(step: Step, rng: random.Random) -> str:
    """One redundant self-check of `step`, in one of the styles a reasoning model falls into."""
    prefix = rng.choice(VERIFICATION_PREFIXES)
    if prefix == "Let me verify:":
        inverse = "-" if step.operator == "+" else "+"
        return f"{prefix} {step.result}{inverse}{step.right}={step.left}. Correct."
    if prefix == "Wait, let me recheck:":
        return f"{prefix} {step.text}."
    return f"{prefix} {step.text}? Yes."


def concise_derivation(problem: Problem) -> str:
    """The steps only, one per line; also the reference solution given to the teacher."""
    return "\n".join(step.text for step in problem.steps)


def verbose_derivation(problem: Problem, rng: random.Random) -> str:
    """Every step followed by 1-MAX_VERIFICATION_LOOPS redundant verification loops."""
    lines = []
    for step in problem.steps:
        lines.append(step.text)
        lines += [verification_line(step, rng) for _ in range(rng.randint(1, MAX_VERIFICATION_LOOPS))]
    return "\n".join(lines)


def completion_text(problem: Problem, style: str, rng: random.Random | None = None) -> str:
    """The assistant message: thinking block, then the boxed answer (the chat template appends the eos)."""
    if style == CONCISE:
        body = concise_derivation(problem)
    elif style == VERBOSE:
        body = verbose_derivation(problem, rng or random.Random())
    else:
        raise ValueError(f"unknown style {style!r}; expected {VERBOSE!r} or {CONCISE!r}")
    return f"<think>\n{body}\n</think>\n\n\\boxed{{{problem.answer}}}"


def language_model_document(problem: Problem, rng: random.Random, max_loops: int = MAX_VERIFICATION_LOOPS) -> str:
    """Plain text for the pre-training stage: the expression, its steps with 0-max_loops checks, the boxed answer.

    This stage teaches the arithmetic itself (chat SFT alone on this model size learns the format but not the sums).
    """
    steps = problem.steps
    loops_after = [0] * len(steps)
    for _ in range(rng.randint(0, max_loops)):
        loops_after[rng.randrange(len(steps))] += 1
    lines = [problem.expression]
    for step, loops in zip(steps, loops_after):
        lines.append(step.text)
        lines += [verification_line(step, rng) for _ in range(loops)]
    lines.append(f"\\boxed{{{problem.answer}}}")
    return "\n".join(lines)


def dataset_row(problem: Problem) -> dict[str, Any]:
    """A row with the project's math-dataset schema: chat `prompt`, reference `solution`, `answer` string."""
    return {
        "prompt": [{"role": "user", "content": problem.question}],
        "solution": concise_derivation(problem),
        "answer": str(problem.answer),
    }


def split_rng(seed: int, purpose: str) -> random.Random:
    """An independent, deterministic stream per (seed, purpose)."""
    return random.Random(f"{seed}:{purpose}")


def make_split(split: str, num_examples: int, seed: int = 0) -> list[dict[str, Any]]:
    """Distinct problems of the `train` or `eval` (held-out) partition, as dataset rows."""
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    rng = split_rng(seed, f"split-{split}")
    return [dataset_row(p) for p in sample_problems(rng, held_out=split == "eval", count=num_examples)]


def write_splits(output_dir: str | Path, num_train: int = 2000, num_eval: int = 200, seed: int = 0) -> dict:
    """Write train.jsonl and eval.jsonl under `output_dir`; returns {split: path}."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, count in (("train", num_train), ("eval", num_eval)):
        path = output_dir / f"{split}.jsonl"
        with path.open("w") as f:
            for row in make_split(split, count, seed):
                f.write(json.dumps(row) + "\n")
        paths[split] = path
    return paths


def parse_problem(question: str) -> Problem:
    """Inverse of Problem.question ("Compute 37+48-15." -> Problem)."""
    match = re.fullmatch(r"Compute (\d+(?:[+-]\d+)+)\.", question.strip())
    if match is None:
        raise ValueError(f"not a chain-arithmetic question: {question!r}")
    tokens = re.findall(r"\d+|[+-]", match.group(1))
    return Problem(tuple(int(t) for t in tokens[0::2]), tuple(tokens[1::2]))


def extract_answer(completion: str) -> str | None:
    """The content of the last \\boxed{} after the thinking block, or None when there is none."""
    if "</think>" not in completion:
        return None
    found = BOXED.findall(completion.rsplit("</think>", 1)[1])
    return found[-1].strip() if found else None


def is_verbose(completion: str) -> bool:
    """Whether the thinking block holds at least one verification loop."""
    thinking = completion.split("</think>", 1)[0]
    return any(prefix in thinking for prefix in VERIFICATION_PREFIXES)


# Segment names of a completion, as reported by the teacher-signal measurement.
SEGMENT_STEP_FIRST = "step line, before any verification"
SEGMENT_STEP_AFTER = "step line, after a verification"
SEGMENT_VERIFY_FIRST = "verification start, first of the trace"
SEGMENT_VERIFY_START = "verification start, 1st loop of a later step"
SEGMENT_VERIFY_START_LATER = "verification start, repeated loop"
SEGMENT_VERIFY_INSIDE = "inside verification"
SEGMENT_ANSWER = "boxed answer digits"
SEGMENT_OTHER = "structure / other"
SEGMENTS = (
    SEGMENT_STEP_FIRST,
    SEGMENT_STEP_AFTER,
    SEGMENT_VERIFY_FIRST,
    SEGMENT_VERIFY_START,
    SEGMENT_VERIFY_START_LATER,
    SEGMENT_VERIFY_INSIDE,
    SEGMENT_ANSWER,
    SEGMENT_OTHER,
)


def character_segments(completion: str) -> list[str]:
    """Label every character of a generated completion (the text after the `<think>\\n` generation prompt).

    Step lines are split by whether a verification loop came earlier in the trace, since that is where a teacher
    that never saw verbose text under its privileged prompt loses track. A verification line's first character is
    where the model decides to verify at all (after a step) or to keep verifying (after another loop).
    """
    labels = [SEGMENT_OTHER] * len(completion)
    close = completion.find("</think>")
    thinking_end = close if close >= 0 else len(completion)
    position, seen_verification, previous_kind = 0, False, None
    for line in completion[:thinking_end].split("\n"):
        end = position + len(line)
        # The newline ending a line belongs to it: predicting it is part of writing that line.
        span_end = min(end + 1, thinking_end)
        if STEP_LINE.match(line):
            label = SEGMENT_STEP_AFTER if seen_verification else SEGMENT_STEP_FIRST
            labels[position:span_end] = [label] * (span_end - position)
            previous_kind = "step"
        elif line.startswith(VERIFICATION_PREFIXES):
            if not seen_verification:
                start = SEGMENT_VERIFY_FIRST
            else:
                start = SEGMENT_VERIFY_START if previous_kind == "step" else SEGMENT_VERIFY_START_LATER
            labels[position:span_end] = [start] + [SEGMENT_VERIFY_INSIDE] * (span_end - position - 1)
            seen_verification, previous_kind = True, "verification"
        else:
            previous_kind = None
        position = end + 1
    if close >= 0:
        tail_start = close + len("</think>")
        for match in BOXED.finditer(completion, tail_start):
            start, end = match.span(1)
            labels[start:end] = [SEGMENT_ANSWER] * (end - start)
    return labels


def fork_positions(completion: str) -> list[tuple[int, bool]]:
    """Character offsets where the model chooses between verifying a step just written, the next step and closing
    the thinking block: the start of each line that follows a step line. The flag marks the first one, after the
    first step, where the trace decides between the concise and the verbose style."""
    close = completion.find("</think>")
    thinking = completion[: close if close >= 0 else len(completion)]
    forks, position = [], 0
    lines = thinking.split("\n")
    for line in lines[:-1]:
        next_start = position + len(line) + 1
        if STEP_LINE.match(line) and next_start <= len(completion) - 1:
            forks.append((next_start, not forks))
        position = next_start
    return forks


def has_valid_derivation(problem: Problem, completion: str) -> bool:
    """Whether the thinking block derives the answer: every step line of the problem, in order.

    A correct boxed answer without it is the symptom of privileged-information leakage: the answer was copied from
    what the teacher saw rather than derived.
    """
    thinking = completion.split("</think>", 1)[0]
    lines = [line.strip() for line in thinking.splitlines()]
    position = 0
    for step in problem.steps:
        try:
            position = lines.index(step.text, position) + 1
        except ValueError:
            return False
    return True
