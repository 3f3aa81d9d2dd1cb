"""Math benchmarks for evaluation: a registry of Hub datasets and local files, loaded as (id, problem, answer).

A benchmark is named either by a registry key (`math500`, `aime2024`, ...) or by a local file (json, jsonl or
parquet) with an optional column mapping, `path/to/file.jsonl:problem=question,answer=final,id=uid`. Unmapped keys
read the columns `problem`, `answer` and `id`; without an `id` column the row index numbers the problems.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The evaluated prompt is the one the policy was trained on: the training data's instruction and prompt builder.
from ..cli import UserError
from ..data import DEFAULT_INSTRUCTION, build_prompt, hub_unreachable_error
from ..golds import usable_gold


LOCAL_SUFFIXES = (".json", ".jsonl", ".parquet")
MAPPING_KEYS = ("problem", "answer", "id")


@dataclass(frozen=True)
class Problem:
    """One benchmark item; `answer` is the gold answer's text form ("" for none: `egrsd.golds`), `id` is unique within
    the benchmark.

    `instruction`, when set, replaces the run's instruction for this item ("" for none).
    """

    id: str
    problem: str
    answer: str
    instruction: str | None = None


def gsm8k_final_answer(solution: str) -> str:
    """GSM8K's gold answer: the text after '####', without thousands separators."""
    return solution.split("####")[-1].strip().replace(",", "")


@dataclass(frozen=True)
class BenchmarkSpec:
    """Where a benchmark lives and which columns hold the problem, the gold answer and the id.

    `id_column=None` numbers the rows instead; `answer_transform` turns the answer column into the gold answer.
    """

    name: str
    dataset: str
    split: str
    problem_column: str = "problem"
    answer_column: str = "answer"
    id_column: str | None = None
    config: str | None = None
    answer_transform: Callable[[str], str] | None = field(default=None, compare=False)

    def describe(self) -> dict[str, Any]:
        """JSON-friendly description, recorded in the results so a number can be traced to its data."""
        return {
            "dataset": self.dataset,
            "config": self.config,
            "split": self.split,
            "columns": {"problem": self.problem_column, "answer": self.answer_column, "id": self.id_column},
        }


# Column layouts checked against the dataset cards / loaders that use them (2025-2026). Entries marked
# "unverified" were read from third-party loaders rather than the card itself.
BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in (
        # 500 problems; columns problem, solution, answer, subject, level, unique_id.
        BenchmarkSpec("math500", "HuggingFaceH4/MATH-500", "test", id_column="unique_id"),
        # 30 problems; columns id (int), problem, solution, answer, url, year.
        BenchmarkSpec("aime2024", "HuggingFaceH4/aime_2024", "train", id_column="id"),
        # 30 problems (AIME I + II); columns id, problem, answer, ... (unverified: card not read, loaders agree).
        BenchmarkSpec("aime2025", "yentinglin/aime_2025", "train", id_column="id"),
        # 1319 test problems; the answer column is a worked solution ending in '#### <number>'; no id column.
        BenchmarkSpec(
            "gsm8k",
            "openai/gsm8k",
            "test",
            problem_column="question",
            config="main",
            answer_transform=gsm8k_final_answer,
        ),
        # 272 problems in test.jsonl; columns question, answer (unverified: from loaders, the card has no schema).
        BenchmarkSpec("minerva_math", "math-ai/minervamath", "test", problem_column="question"),
        # 30 problems; columns problem_idx, problem, answer, problem_type (MathArena layout).
        BenchmarkSpec("hmmt_feb_2025", "MathArena/hmmt_feb_2025", "train", id_column="problem_idx"),
    )
}


def build_messages(
    problem: str, instruction: str = DEFAULT_INSTRUCTION, system_prompt: str | None = None
) -> list[dict[str, str]]:
    """Chat messages for one problem, exactly as the training data builds them (no instruction when empty)."""
    return build_prompt(problem, instruction or None, system_prompt)


def split_benchmark_names(value: str) -> list[str]:
    """Split a `--benchmarks` value on commas, keeping a local file's `key=value` mapping with its file.

    `math500,data.jsonl:problem=q,answer=a` gives `["math500", "data.jsonl:problem=q,answer=a"]`: a piece that is
    a mapping entry (`problem=`, `answer=` or `id=`) continues the previous local-file spec.
    """
    names: list[str] = []
    for piece in (p.strip() for p in value.split(",")):
        if not piece:
            continue
        key = piece.split("=", 1)[0]
        if "=" in piece and key in MAPPING_KEYS and names and ":" in names[-1]:
            names[-1] += "," + piece
        else:
            names.append(piece)
    return names


def parse_local_spec(spec: str) -> tuple[Path, dict[str, str]]:
    """Split `path[:key=value,...]` into the path and the column mapping; raises on unknown keys."""
    path_part, mapping = spec, {}
    head, sep, tail = spec.rpartition(":")
    if sep and "=" in tail:
        path_part = head
        for entry in tail.split(","):
            key, eq, column = (s.strip() for s in entry.partition("="))
            if not eq or key not in MAPPING_KEYS or not column:
                raise ValueError(
                    f"Bad column mapping entry {entry!r} in {spec!r}; use key=column with key in {list(MAPPING_KEYS)}."
                )
            mapping[key] = column
    return Path(path_part), mapping


def is_local_spec(name: str) -> bool:
    return parse_local_spec(name)[0].suffix in LOCAL_SUFFIXES


def read_local_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a json (list of objects, or one object per line), jsonl or parquet file.

    A missing or empty file, a malformed line or a row that is not an object is a `UserError` naming the file (and
    the line); `UserError` is a ValueError.
    """
    if not path.is_file():
        raise FileNotFoundError(f"Benchmark file not found: {path}")
    from ..datafiles import read_rows

    return read_rows(path)


def rows_to_problems(
    rows: list[Mapping[str, Any]],
    problem_column: str,
    answer_column: str,
    id_column: str | None,
    answer_transform: Callable[[str], str] | None = None,
    source: str = "",
) -> list[Problem]:
    """Map raw rows to Problems; the id is the id column's value, or the row index without one."""
    if rows:
        missing = [c for c in (problem_column, answer_column, id_column) if c is not None and c not in rows[0]]
        if missing:
            raise UserError(
                f"column(s) {missing} not found; available columns: {sorted(rows[0])}",
                "map yours with path.jsonl:problem=<column>,answer=<column>",
                path=source or None,
            )
    problems = []
    for index, row in enumerate(rows):
        if answer_column not in row or problem_column not in row:
            missing = [c for c in (problem_column, answer_column) if c not in row]
            raise UserError(
                f"row {index + 1} has no {missing}", "give every row a problem and an answer", path=source or None
            )
        # The gold's text form, as training reads it; an empty or placeholder gold is "", which grades as ungradable.
        try:
            answer = usable_gold(row[answer_column]) or ""
        except ValueError as error:  # an object where the answer goes
            raise UserError(f"row {index + 1}: {error}", path=source or None) from None
        if answer_transform is not None and answer:
            answer = answer_transform(answer)
        problem_id = str(row[id_column]) if id_column is not None else str(index)
        problems.append(Problem(id=problem_id, problem=str(row[problem_column]), answer=answer))
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        raise UserError("ids are not unique", "choose another id column or leave it out", path=source or None)
    return problems


def unknown_benchmark_message(name: str) -> str:
    return (
        f"Unknown benchmark {name!r}. Known benchmarks: {', '.join([*BENCHMARKS, *GENERATED_BENCHMARKS])}. "
        "A local file works too: "
        "path/to/file.jsonl (json, jsonl or parquet, with columns problem and answer), or with a column mapping "
        "path/to/file.jsonl:problem=question,answer=final,id=uid."
    )


# Generated benchmarks: the embedded testbed's held-out chain arithmetic (200 problems never seen in training), in
# the bare form its training prompts have, so no instruction is appended.
GENERATED_BENCHMARKS = ("testbed-arithmetic",)


def _generated_problems(name: str, max_problems: int | None) -> list[Problem]:
    from ..data import load_math_dataset

    rows = load_math_dataset(name, split="test")
    if max_problems is not None:
        rows = rows.select(range(min(max_problems, len(rows))))
    return [
        Problem(id=str(index), problem=row["problem"], answer=row["answer"], instruction="")
        for index, row in enumerate(rows)
    ]


def check_benchmark_name(name: str) -> None:
    """Raise ValueError (listing the known names and the local-file form) unless `name` can be loaded."""
    if name not in BENCHMARKS and name not in GENERATED_BENCHMARKS and not is_local_spec(name):
        raise ValueError(unknown_benchmark_message(name))


def load_benchmark(name: str, max_problems: int | None = None) -> tuple[str, list[Problem], dict[str, Any]]:
    """Load a registry benchmark or a local file; returns (benchmark name, problems, source description)."""
    if name in GENERATED_BENCHMARKS:
        source = {"dataset": f"egrsd.data:{name}", "config": None, "split": "test", "columns": None}
        return name, _generated_problems(name, max_problems), source
    if name in BENCHMARKS:
        spec = BENCHMARKS[name]
        from datasets import load_dataset
        from datasets.exceptions import DatasetNotFoundError

        try:
            dataset = load_dataset(spec.dataset, spec.config, split=spec.split)
        except (ConnectionError, DatasetNotFoundError) as error:
            columns = f"problem={spec.problem_column},answer={spec.answer_column}"
            columns += f",id={spec.id_column}" if spec.id_column else ""
            raise hub_unreachable_error(
                f"the benchmark {name} ({spec.dataset})",
                f"save it as a local .jsonl file and pass that file as the benchmark, path.jsonl:{columns}",
                error,
            ) from None
        if max_problems is not None:
            dataset = dataset.select(range(min(max_problems, len(dataset))))
        problems = rows_to_problems(
            dataset.to_list(),
            spec.problem_column,
            spec.answer_column,
            spec.id_column,
            spec.answer_transform,
            source=spec.dataset,
        )
        return name, problems, spec.describe()
    check_benchmark_name(name)
    path, mapping = parse_local_spec(name)
    rows = read_local_rows(path)
    if max_problems is not None:
        rows = rows[:max_problems]
    columns = {"problem": mapping.get("problem", "problem"), "answer": mapping.get("answer", "answer")}
    columns["id"] = mapping.get("id", "id" if rows and "id" in rows[0] else None)
    problems = rows_to_problems(rows, columns["problem"], columns["answer"], columns["id"], source=str(path))
    return path.stem, problems, {"dataset": str(path), "config": None, "split": None, "columns": columns}
