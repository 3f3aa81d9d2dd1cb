r"""Math training sets mapped to one layout: `prompt` (chat messages), `problem`, `solution` and `answer`.

* `prompt`: `[{"role": "user", "content": problem + "\n\n" + instruction}]`, after an optional system message.
* `problem`: the bare problem text.
* `solution`: the reference solution the teacher sees; a set that only has answers uses the answer.
* `answer`: the gold answer the verifier compares against (for MATH, the last `\boxed{}` of the solution), as text:
  a gold of any JSON type becomes its text form once, here (`egrsd.golds`, which `egrsd-eval` applies too).

Every other column of the set is kept as it is, so that it reaches the reward functions (TRL passes each column of
a row to them by name); the four columns above take their names. Rows without a usable gold answer or problem are
dropped, counted by reason in the log; a load that leaves no row is a `UserError` saying why.

Sets are chosen by a registry name (`DATASET_REGISTRY`), a Hub id, or a local `.json`/`.jsonl`/`.parquet` file
or dataset folder; `layout=` applies a registered set's column layout to a local copy, and `column_mapping=`
overrides single columns, e.g. `{"problem": "question", "answer": "final_answer"}` (nested fields as
`"parent.child"`; "prompt" is accepted as a key for the problem, whose column may hold chat messages).

Chat-form problems (a list of messages, as in DAPO-Math-17k) use the last user message. A set's own instruction
boilerplate is removed only when it wraps the problem exactly as registered (DAPO asks for an "Answer:" line, which
would contradict the boxed-answer instruction); otherwise the text is kept unchanged and the rows are counted in the
log, since cutting text that does not match exactly could damage the problem.
"""

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import datasets
from datasets.exceptions import DatasetNotFoundError

from .cli import UserError, one_line
from .datafiles import check_columns, has_column, json_dataset, parquet_problems, read_numbered_rows
from .golds import PLACEHOLDER_GOLDS, is_placeholder, text_form
from .rewards.text import last_boxed_answer


logger = logging.getLogger(__name__)

DEFAULT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
# The roles a column mapping can assign, and the columns every mapped dataset has.
ROLES = ("problem", "solution", "answer")
OUTPUT_COLUMNS = ["prompt", "problem", "solution", "answer"]
LOCAL_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}

_DAPO_PREFIX = (
    "Solve the following math problem step by step. The last line of your response should be of the form "
    "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n"
)
_DAPO_SUFFIX = '\n\nRemember to put your answer on its own line after "Answer:".'


@dataclass(frozen=True)
class DatasetSpec:
    """Where a math set lives and which of its columns play which role.

    Column names may be nested paths ("reward_model.ground_truth"). `answer=None` means the gold is the last
    `\\boxed{}` of the solution; `solution=None` means the answer doubles as the reference solution.
    """

    name: str
    hub_id: str | None
    config_name: str | None = None
    split: str = "train"
    problem: str = "problem"
    solution: str | None = "solution"
    answer: str | None = "answer"
    strip_prefix: str = ""
    strip_suffix: str = ""
    deduplicate: bool = False
    description: str = ""
    # The Hub copy's other top-level columns (they reach the rewards too), known without downloading it.
    other_columns: tuple[str, ...] = ()

    def columns(self) -> dict[str, str | None]:
        return {"problem": self.problem, "solution": self.solution, "answer": self.answer}


DATASET_SPECS = (
    DatasetSpec(
        name="dapo-math-17k",
        hub_id="BytedTsinghua-SIA/DAPO-Math-17k",
        problem="prompt",
        solution=None,
        answer="reward_model.ground_truth",
        strip_prefix=_DAPO_PREFIX,
        strip_suffix=_DAPO_SUFFIX,
        # The Hub copy repeats each of its ~17k problems about 100 times.
        deduplicate=True,
        description="DAPO's 17k competition problems with integer answers (chat-form prompt, answer only)",
        other_columns=("data_source", "ability", "reward_model", "extra_info"),
    ),
    DatasetSpec(
        name="deepscaler",
        hub_id="agentica-org/DeepScaleR-Preview-Dataset",
        description="DeepScaleR-Preview: 40k AIME/AMC/Omni-MATH/STILL problems with solution and answer",
    ),
    DatasetSpec(
        name="openr1-math-220k",
        hub_id="open-r1/OpenR1-Math-220k",
        config_name="default",
        description="OpenR1-Math-220k, default config (94k NuminaMath-1.5 problems with solution and answer)",
        other_columns=(
            "problem_type",
            "question_type",
            "source",
            "uuid",
            "is_reasoning_complete",
            "generations",
            "correctness_math_verify",
            "correctness_llama",
            "finish_reasons",
            "correctness_count",
            "messages",
        ),
    ),
    DatasetSpec(
        name="math",
        hub_id="DigitalLearningGmbH/MATH-lighteval",
        config_name="default",
        answer=None,
        description="MATH (Hendrycks et al.) train split; the gold is the last \\boxed{} of the solution",
        other_columns=("level", "type"),
    ),
)
# Generic layout for Hub ids and local files without a registered layout: problem / solution / answer columns.
GENERIC_SPEC = DatasetSpec(name="generic", hub_id=None, description="columns problem, solution (optional), answer")

DATASET_REGISTRY: dict[str, DatasetSpec] = {
    **{spec.name: spec for spec in DATASET_SPECS},
    **{spec.hub_id: spec for spec in DATASET_SPECS},
}


# Sets generated on the fly instead of loaded: the embedded testbed's chain arithmetic (egrsd.testbed.arithmetic).
# Its prompts are the bare questions the testbed base was trained on, so no instruction is appended.
GENERATED_DATASETS = {"testbed-arithmetic": "chain arithmetic for the tiny testbed model; splits train and test"}
GENERATED_SIZES = {"train": 2000, "test": 200}


def _generated_dataset(name: str, split: str, max_samples: int | None, seed: int) -> datasets.Dataset:
    from .testbed.arithmetic import make_split

    if split not in GENERATED_SIZES:
        raise ValueError(f"{name} has the splits {list(GENERATED_SIZES)}, not {split!r}")
    count = GENERATED_SIZES[split] if max_samples is None else max_samples
    rows = make_split("train" if split == "train" else "eval", count, seed=seed)
    for row in rows:
        row["problem"] = row["prompt"][-1]["content"]
    return datasets.Dataset.from_list(rows).select_columns(OUTPUT_COLUMNS)


def _lookup(name: str) -> DatasetSpec | None:
    return DATASET_REGISTRY.get(name) or DATASET_REGISTRY.get(name.lower())


def _layout_spec(layout: str) -> DatasetSpec:
    if layout == GENERIC_SPEC.name:
        return GENERIC_SPEC
    spec = _lookup(layout)
    if spec is None:
        known = ", ".join([s.name for s in DATASET_SPECS] + [GENERIC_SPEC.name])
        raise ValueError(f"unknown dataset layout {layout!r}; known layouts: {known}")
    return spec


def _resolve(name_or_path: str, layout: str | None) -> tuple[DatasetSpec, Path | None]:
    """The spec to apply and, for local data, its path; raises for names that are none of the accepted kinds."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return (_layout_spec(layout) if layout else GENERIC_SPEC), path
    if path.suffix.lower() in LOCAL_FILE_BUILDERS:
        raise FileNotFoundError(
            f"no dataset file {path.resolve()} — check the path (relative to the working directory)"
        )
    registered = _lookup(name_or_path)
    if registered is not None:
        if layout:
            return replace(_layout_spec(layout), hub_id=registered.hub_id, config_name=registered.config_name), None
        return registered, None
    if "/" in name_or_path:
        base = _layout_spec(layout) if layout else GENERIC_SPEC
        return replace(base, hub_id=name_or_path, config_name=None), None
    known = ", ".join([spec.name for spec in DATASET_SPECS] + list(GENERATED_DATASETS))
    raise ValueError(
        f"unknown dataset {name_or_path!r}: not a registered name ({known}), a Hub id ('owner/name'), or an existing "
        "local .json/.jsonl/.parquet file or folder."
    )


def _apply_mapping(spec: DatasetSpec, column_mapping: Mapping[str, str | None] | None) -> dict[str, str | None]:
    columns = spec.columns()
    for role, column in (column_mapping or {}).items():
        role = "problem" if role == "prompt" else role  # the problem column may hold the prompt's chat messages
        if role not in ROLES:
            raise ValueError(
                f"column_mapping key {role!r} is not a role; keys are the roles {list(ROLES)} and values are your "
                f"dataset's columns, e.g. {{'problem': 'question', 'answer': 'final_answer'}}"
            )
        if column is None and role != "solution":
            raise ValueError(f"column_mapping cannot drop the {role!r} column; only 'solution' may be None")
        columns[role] = column
    return columns


def mapped_columns(
    name_or_path: str, column_mapping: Mapping[str, str | None] | None = None, *, layout: str | None = None
) -> list[str]:
    """The columns `load_math_dataset` will return for these arguments, checked without downloading anything.

    Raises what `load_math_dataset` would raise for an unknown name or layout, a missing local file, or a malformed
    column mapping. Whether the source really has the mapped columns can only be checked when it is loaded.
    """
    if name_or_path in GENERATED_DATASETS:
        return list(OUTPUT_COLUMNS)
    spec, _ = _resolve(name_or_path, layout)
    _apply_mapping(spec, column_mapping)
    return list(OUTPUT_COLUMNS)


def is_local(name_or_path: str) -> bool:
    """Whether the data is generated or an existing local file or folder: loading it downloads nothing."""
    return name_or_path in GENERATED_DATASETS or Path(name_or_path).expanduser().exists()


def registered_columns(name_or_path: str, *, layout: str | None = None) -> list[str] | None:
    """Every column a registered Hub set will have once loaded, known without downloading it (the mapped ones, then
    its registered `other_columns`); None for any other source, whose columns are known when it loads."""
    if name_or_path in GENERATED_DATASETS:
        return list(OUTPUT_COLUMNS)
    registered = _lookup(name_or_path)
    if registered is None or layout or is_local(name_or_path):
        return None
    return [*OUTPUT_COLUMNS, *(column for column in registered.other_columns if column not in OUTPUT_COLUMNS)]


def opt_out_hint(role: str) -> str:
    """How to fix a missing column of `role` in a recipe."""
    if role == "solution":
        return (
            "add a solution column, name yours with dataset_column_mapping: {solution: <column>}, or train on the "
            "bare answer explicitly with dataset_column_mapping: {solution: null} (the answer is then the teacher's "
            "reference solution)"
        )
    return (
        f"name the column that holds the {role} with dataset_column_mapping: {{{role}: <column>}} in a recipe "
        f"(column_mapping={{'{role}': '<column>'}} in Python)"
    )


def local_data_problems(
    name_or_path: str,
    column_mapping: Mapping[str, str | None] | None = None,
    *,
    layout: str | None = None,
    require_solution: bool = False,
) -> list[str]:
    """Problems of a local data file found by reading it (no model, no Hub), one line each.

    Every line of a .json/.jsonl file must parse and the file must not be empty; the columns the recipe needs must be
    there in every row: the problem and the gold answer always, the reference solution when `require_solution` (a
    teacher method whose template shows `{solution}`) unless the mapping opts out with `{"solution": None}`.
    Registered sets, Hub ids and dataset folders are checked when they load.
    """
    if name_or_path in GENERATED_DATASETS:
        return []
    spec, path = _resolve(name_or_path, layout)
    if path is None or path.is_dir():
        return []
    columns = _apply_mapping(spec, column_mapping)
    needed = {"problem": columns["problem"]}
    if columns["answer"] is not None:
        needed["answer"] = columns["answer"]
    elif columns["solution"] is not None:
        needed["solution"] = columns["solution"]  # the gold is the last box of the solution
    if require_solution and columns["solution"] is not None:
        needed["solution"] = columns["solution"]
    hints = {role: opt_out_hint(role) for role in needed}
    if path.suffix.lower() == ".parquet":
        return parquet_problems(path, needed, hints)
    if path.suffix.lower() not in LOCAL_FILE_BUILDERS:
        return [f"{path}: unsupported data file — use one of {sorted(LOCAL_FILE_BUILDERS)}"]
    try:
        rows = read_numbered_rows(path)
    except UserError as error:
        return [error.message()]
    return check_columns(path, rows, needed, hints)


def _load_raw(
    spec: DatasetSpec, path: Path | None, split: str, config_name: str | None, text_columns: list[str]
) -> datasets.Dataset:
    if path is None:
        try:
            return datasets.load_dataset(spec.hub_id, config_name or spec.config_name, split=split)
        except (ConnectionError, DatasetNotFoundError) as error:
            registered = spec.name != GENERIC_SPEC.name
            raise hub_unreachable_error(
                f"the data set {spec.hub_id}" + (f" ({spec.name})" if registered else ""),
                "save it as a local .jsonl or .parquet file and pass that file as dataset_name"
                + (f" with dataset_layout: {spec.name}" if registered else ""),
                error,
            ) from None
    if path.is_dir():
        if (path / "state.json").exists() or (path / "dataset_dict.json").exists():
            loaded = datasets.load_from_disk(str(path))
            return loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        return datasets.load_dataset(str(path), config_name, split=split)
    builder = LOCAL_FILE_BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise ValueError(f"unsupported data file {path.name}; use one of {sorted(LOCAL_FILE_BUILDERS)}")
    if builder == "json":
        return json_dataset(path, text_columns)
    # A single file has one split, which datasets calls "train", whatever `split` says.
    return datasets.load_dataset(builder, data_files=str(path), split="train")


def hub_unreachable_error(description: str, local_hint: str, error: Exception) -> UserError:
    """A Hub data set that cannot be downloaded here (offline, unreachable, not there): which one, and what to do."""
    return UserError(
        f"cannot download {description} from the Hub ({one_line(error)[:200]})",
        "load it once where the Hub is reachable (it is then read from the cache, also with HF_HUB_OFFLINE=1), or "
        + local_hint,
    )


def _read(row: Mapping[str, Any], column: str) -> Any:
    value: Any = row
    for part in column.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _problem_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        # Chat form: the problem is the last user message.
        users = [m for m in value if isinstance(m, Mapping) and m.get("role") == "user"]
        if users:
            return str(users[-1].get("content") or "")
    return "" if value is None else str(value)


def _strip_boilerplate(text: str, spec: DatasetSpec) -> tuple[str, bool]:
    """The problem without the set's own instruction, and whether that instruction was there to remove."""
    if not (spec.strip_prefix or spec.strip_suffix):
        return text, True
    if text.startswith(spec.strip_prefix) and text.endswith(spec.strip_suffix):
        return text[len(spec.strip_prefix) : len(text) - len(spec.strip_suffix)], True
    return text, False


def build_prompt(problem: str, instruction: str | None, system_prompt: str | None) -> list[dict[str, str]]:
    """The student's chat prompt for one problem."""
    content = f"{problem}\n\n{instruction}" if instruction else problem
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*messages, {"role": "user", "content": content}]


# Why a row is dropped: the first of these that holds, and how the log and the errors say it.
DROP_REASONS = {
    "empty_gold": "an empty or null gold answer",
    "placeholder_gold": f"a placeholder gold ({', '.join(sorted(PLACEHOLDER_GOLDS))}: no checkable answer)",
    "no_boxed_gold": "no \\boxed{} answer in the solution to read the gold from",
    "empty_problem": "an empty problem",
}
# Per-row bookkeeping columns of the mapping pass, removed before the set is returned.
_DROP_COLUMN, _BOILERPLATE_COLUMN, _NO_SOLUTION_COLUMN = "_egrsd_drop", "_egrsd_boilerplate_kept", "_egrsd_no_solution"


@dataclass
class LoadCounts:
    """What a load kept and dropped, for the log, `--check` and the errors."""

    rows: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    repeated: int = 0
    usable: int = 0
    solution_column: str | None = None  # None: the answers are the reference solutions
    empty_solutions: int = 0  # usable rows whose solution is empty: their answer is the reference solution
    kept: int = 0  # after max_samples
    generated: bool = False

    def dropped_text(self) -> str:
        parts = [f"{count} with {DROP_REASONS[reason]}" for reason, count in self.dropped.items() if count]
        if self.repeated:
            parts.append(f"{self.repeated} repeating an earlier problem")
        return "; ".join(parts)

    def summary(self, solutions: bool = True) -> str:
        """One line: rows read, dropped and why, empty solutions (when `solutions` matter), rows used."""
        if self.generated:
            return f"{self.kept} rows generated"
        parts = [f"{self.rows} rows read"]
        if self.dropped or self.repeated:
            parts.append(f"dropped {self.dropped_text()}")
        if solutions and self.solution_column is not None and self.empty_solutions:
            parts.append(
                f"{self.empty_solutions} of the {self.usable} usable rows have an empty {self.solution_column!r} "
                "(their answer is the teacher's reference solution)"
            )
        parts.append(f"{self.kept} used")
        return "; ".join(parts)


def load_math_dataset(
    name_or_path: str,
    split: str = "train",
    *,
    column_mapping: Mapping[str, str | None] | None = None,
    config_name: str | None = None,
    layout: str | None = None,
    instruction: str | None = DEFAULT_INSTRUCTION,
    system_prompt: str | None = None,
    max_samples: int | None = None,
    seed: int = 0,
    require_solution: bool = False,
    max_empty_solution_frac: float | None = None,
    counts: LoadCounts | None = None,
) -> datasets.Dataset:
    """Load a math set and map it to columns `prompt`, `problem`, `solution`, `answer`, followed by the set's other
    columns (see the module docstring).

    Args:
        name_or_path: a `DATASET_REGISTRY` name or Hub id, another Hub id (generic layout), or a local
            `.json`/`.jsonl`/`.parquet` file or dataset folder.
        split: the split to load (a single local file is its own split).
        column_mapping: role -> source column overrides, e.g. `{"answer": "final_answer"}`; `{"solution": None}`
            uses the answer as the reference solution.
        config_name: the Hub config, overriding the registered one.
        layout: a registered set whose column layout a local copy (or another Hub id) follows, e.g. "deepscaler".
        instruction: appended to each problem in the prompt; None for none.
        system_prompt: an optional system message before the user message.
        max_samples: keep this many usable rows, chosen by a shuffle with `seed`; None keeps all, in order. A
            generated set generates this many.
        require_solution: a source whose layout names a solution column must have it (a teacher method reads it);
            without this, a missing solution column is a warning and the answers double as solutions.
            `column_mapping={"solution": None}` opts out either way.
        max_empty_solution_frac: the largest share of kept rows whose solution may be empty (their answer stands in
            for it); a larger share is a `UserError`. None: any share (the count is logged either way).
        counts: filled with what was kept and dropped.

    Raises `UserError` when no usable row is left (saying how many rows were dropped and why), for a Hub set that
    cannot be downloaded, and for the other mistakes in the data a user can fix.
    """
    counts = counts if counts is not None else LoadCounts()
    if max_samples is not None and max_samples <= 0:
        raise UserError(f"max_samples={max_samples} keeps no rows", "pass a positive number, or None for every row")
    if name_or_path in GENERATED_DATASETS:
        dataset = _generated_dataset(name_or_path, split, max_samples, seed)
        counts.rows = counts.usable = counts.kept = len(dataset)
        counts.generated, counts.solution_column = True, "solution"
        return dataset
    spec, path = _resolve(name_or_path, layout)
    columns = _apply_mapping(spec, column_mapping)
    label = str(path) if path is not None else f"{spec.hub_id} ({spec.name})"
    raw = _load_raw(spec, path, split, config_name, [c for c in (columns["answer"], columns["solution"]) if c])

    solution_column = columns["solution"]
    for role, column in columns.items():
        if column is None or has_column(raw.features, column):
            continue
        solution_optional = columns["answer"] is not None and not (column_mapping and "solution" in column_mapping)
        if role == "solution" and solution_optional and not require_solution:
            logger.warning("%s has no %r column; its answers double as reference solutions", label, column)
            solution_column = None
            continue
        raise UserError(
            f"{label} has no column {column!r}, which the {spec.name!r} layout reads the {role} from; its columns "
            f"are {sorted(raw.column_names)}",
            f"{opt_out_hint(role)} (nested fields as 'parent.child'), or pick the matching dataset_layout",
        )
    if columns["answer"] is None and solution_column is None:
        raise ValueError(f"{label}: the {spec.name!r} layout reads the gold answer from the solution, which is None")

    def map_batch(batch: dict[str, list]) -> dict[str, list]:
        mapped: dict[str, list] = {name: [] for name in OUTPUT_COLUMNS}
        mapped.update({_DROP_COLUMN: [], _BOILERPLATE_COLUMN: [], _NO_SOLUTION_COLUMN: []})
        for values in zip(*batch.values()):
            row = dict(zip(batch, values))
            problem, stripped = _strip_boilerplate(_problem_text(_read(row, columns["problem"])).strip(), spec)
            solution = _text(row, solution_column, label) if solution_column is not None else ""
            if columns["answer"] is not None:
                answer, boxed = _text(row, columns["answer"], label), True
            else:
                boxed_answer = last_boxed_answer(solution) if solution else None
                answer, boxed = (boxed_answer or "").strip(), boxed_answer is not None
            if not boxed:
                drop = "no_boxed_gold"
            elif not answer:
                drop = "empty_gold"
            elif is_placeholder(answer):
                drop = "placeholder_gold"
            else:
                drop = "empty_problem" if not problem else ""
            mapped["prompt"].append(build_prompt(problem, instruction, system_prompt))
            mapped["problem"].append(problem)
            mapped["solution"].append(solution or answer)
            mapped["answer"].append(answer)
            mapped[_DROP_COLUMN].append(drop)
            mapped[_BOILERPLATE_COLUMN].append(not stripped)
            mapped[_NO_SOLUTION_COLUMN].append(not solution)
        return mapped

    replaced = [name for name in raw.column_names if name in OUTPUT_COLUMNS]
    other_columns = [name for name in raw.column_names if name not in OUTPUT_COLUMNS]
    dataset = raw.map(map_batch, batched=True, remove_columns=replaced, desc=f"mapping {spec.name}")

    usable: list[int] = []
    seen_problems: set[int] = set()
    kept_boilerplate = 0
    dropped = dict.fromkeys(DROP_REASONS, 0)
    bookkeeping = dataset.select_columns(["problem", _DROP_COLUMN, _BOILERPLATE_COLUMN, _NO_SOLUTION_COLUMN])
    for batch in bookkeeping.iter(batch_size=10_000):
        for problem, drop, kept, no_solution in zip(*(batch[name] for name in bookkeeping.column_names)):
            kept_boilerplate += kept
            if drop:
                dropped[drop] += 1
            else:
                key = hash(problem)  # compared within this loop only, so the per-process hash seed does not matter
                if spec.deduplicate and key in seen_problems:
                    counts.repeated += 1
                else:
                    seen_problems.add(key)
                    usable.append(counts.rows)
                    counts.empty_solutions += no_solution
            counts.rows += 1
    counts.dropped = {reason: count for reason, count in dropped.items() if count}
    counts.usable, counts.solution_column = len(usable), solution_column
    dataset = dataset.select_columns(OUTPUT_COLUMNS + other_columns)
    if kept_boilerplate:
        logger.warning("%s: %d problems lacked the expected instruction wrapper; kept as is", label, kept_boilerplate)
    if counts.dropped:
        logger.warning(
            "%s: dropped %d of %d rows: %s",
            label,
            sum(counts.dropped.values()),
            counts.rows,
            "; ".join(f"{count} with {DROP_REASONS[reason]}" for reason, count in counts.dropped.items()),
        )
    if counts.repeated:
        logger.info("%s: removed %d repeated problems", label, counts.repeated)
    if not usable:
        raise UserError(
            f"{label}: no usable rows — of {counts.rows}, dropped {counts.dropped_text() or 'none'}",
            "give every row a problem and a gold answer (0, false and any other value count; only empty text, null "
            "and the placeholders do not), or map the right columns with dataset_column_mapping",
        )
    _check_empty_solutions(label, counts, len(usable), solution_column, max_empty_solution_frac)
    if len(usable) != counts.rows:
        dataset = dataset.select(usable)
    if max_samples is not None and max_samples < len(dataset):
        dataset = dataset.shuffle(seed=seed).select(range(max_samples)).flatten_indices()
    counts.kept = len(dataset)
    logger.info("%s: %d rows", label, len(dataset))
    return dataset


def _text(row: Mapping[str, Any], column: str, label: str) -> str:
    """The text form of a row's answer or solution (`golds.text_form`); an object there is a `UserError`."""
    try:
        return text_form(_read(row, column))
    except ValueError as error:
        raise UserError(f"{label}: column {column!r}: {error}") from None


def _check_empty_solutions(
    label: str, counts: LoadCounts, usable: int, solution_column: str | None, limit: float | None
) -> None:
    """Log the rows whose answer stands in for an empty solution; more than `limit` of them is a `UserError`."""
    if solution_column is None or not counts.empty_solutions:
        return
    share = counts.empty_solutions / usable
    logger.warning(
        "%s: %d of %d rows (%.0f%%) have an empty %r; their answer is the teacher's reference solution",
        label,
        counts.empty_solutions,
        usable,
        100 * share,
        solution_column,
    )
    if limit is not None and share > limit:
        raise UserError(
            f"{label}: {counts.empty_solutions} of {usable} rows ({100 * share:.0f}%) have an empty "
            f"{solution_column!r}, above dataset_max_empty_solution_frac={limit:g}; the teacher would see only their "
            "answer as the reference solution",
            "give those rows a solution, raise dataset_max_empty_solution_frac (1.0 accepts any share), or train on "
            "the bare answers explicitly with dataset_column_mapping: {solution: null}",
        )
