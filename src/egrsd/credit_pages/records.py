"""Credit records: the per-token credit of a few rollouts per logging step, one JSON object a line.

The trainer's `CreditRecordCallback` writes each logging step to `<output_dir>/credit/step_XXXXX.jsonl`; the page
(`page.py`), the curves (`plot.py`) and `egrsd-inspect` read them back. Every record is checked against the schema
on the way in and out.
"""

import json
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..cli import UserError, one_line


CREDIT_DIR = "credit"
STEP_FILE = re.compile(r"^step_(\d+)\.jsonl$")
METHODS = ("grpo", "opsd", "rlsd", "egrsd", "cl_egrsd")
PICKS = ("best", "worst", "other")
# Every record carries these scalars and per-token arrays (the arrays all of one length).
REQUIRED_FIELDS = ("step", "method", "rollout", "group", "pick", "prompt", "completion", "advantage")
REQUIRED_TOKEN_FIELDS = ("tokens", "token_ids", "ahat")
# Per-token arrays that are null (or absent) for methods that lack them: grpo has none, opsd only delta, rlsd no gate
# or entropy. reward and entropy_ref may be null too.
NULLABLE_TOKEN_FIELDS = ("ratio", "gate", "entropy", "delta", "lookahead_entropy")
# The whole schema, in the order written.
RECORD_FIELDS = (
    "step", "method", "rollout", "group", "pick", "prompt", "completion", "reward", "advantage", "entropy_ref",
    "tokens", "token_ids", "ahat", "ratio", "gate", "entropy", "delta", "lookahead_entropy",
)  # fmt: skip
ENABLE_HINT = (
    "the trainer saves per-token credit at each logging step only when completions are logged: set "
    "`log_completions: true` in the recipe (with `logging_steps` and `num_credit_rollouts` > 0)"
)


class NoCreditRecordsError(FileNotFoundError):
    """The run directory has no saved credit records (or not the step asked for)."""


def _plain_scalar(value: Any) -> Any:
    if isinstance(value, float):
        # A float32 printed as a double takes some 19 characters; 6 digits halve the file and lose nothing visible.
        return float(format(value, ".6g")) if math.isfinite(value) else None
    return value


def _plain(value: Any) -> Any:
    """Tensors and arrays to flat lists, non-finite floats to None (strict JSON any tool reads), floats to 6 digits."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain_scalar(item) for item in value]
    return _plain_scalar(value)


def normalize_record(record: dict[str, Any]) -> dict[str, Any]:
    """The record with every field of the schema, in schema order, absent nullable ones as None; raises if invalid."""
    unknown = sorted(set(record) - set(RECORD_FIELDS))
    missing = [name for name in REQUIRED_FIELDS + REQUIRED_TOKEN_FIELDS if record.get(name) is None]
    if unknown or missing:
        raise ValueError(f"credit record: unknown fields {unknown}, missing fields {missing}")
    normalized = {name: _plain(record.get(name)) for name in RECORD_FIELDS}
    if normalized["method"] not in METHODS:
        raise ValueError(f"credit record: method must be one of {METHODS}, got {normalized['method']!r}")
    if normalized["pick"] not in PICKS:
        raise ValueError(f"credit record: pick must be one of {PICKS}, got {normalized['pick']!r}")
    length = len(normalized["tokens"])
    lengths = {
        name: len(normalized[name])
        for name in REQUIRED_TOKEN_FIELDS + NULLABLE_TOKEN_FIELDS
        if normalized[name] is not None
    }
    if any(size != length for size in lengths.values()):
        raise ValueError(
            f"credit record (rollout {normalized['rollout']}): per-token arrays differ in length {lengths}"
        )
    return normalized


def credit_dir(output_dir: str | os.PathLike) -> Path:
    """Where a run keeps its credit records; the credit folder itself is accepted too."""
    output_dir = Path(output_dir)
    if not (output_dir / CREDIT_DIR).is_dir() and _step_files(output_dir):
        return output_dir
    return output_dir / CREDIT_DIR


def step_path(output_dir: str | os.PathLike, step: int, suffix: str = ".jsonl") -> Path:
    return credit_dir(output_dir) / f"step_{step:05d}{suffix}"


def _step_files(directory: Path) -> dict[int, Path]:
    if not directory.is_dir():
        return {}
    found = {}
    for path in directory.iterdir():
        match = STEP_FILE.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return found


def available_steps(output_dir: str | os.PathLike) -> list[int]:
    """The logging steps with saved credit records, ascending."""
    return sorted(_step_files(credit_dir(output_dir)))


def write_step_records(output_dir: str | os.PathLike, step: int, records: Iterable[dict[str, Any]]) -> str:
    """Save one step's credit records, one a line, to `<output_dir>/credit/step_XXXXX.jsonl`; returns the path."""
    lines = []
    for record in records:
        normalized = normalize_record(record)
        if normalized["step"] != step:
            raise ValueError(f"credit record of step {normalized['step']} written as step {step}")
        lines.append(json.dumps(normalized, ensure_ascii=False, allow_nan=False))
    path = Path(output_dir) / CREDIT_DIR / f"step_{step:05d}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside then renamed, so a page rendered while training runs never reads half a file.
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(partial, path)
    return str(path)


def load_step_records(output_dir: str | os.PathLike, step: int | None = None) -> tuple[int, list[dict[str, Any]]]:
    """One step's records (default: the latest step saved) as (step, records)."""
    directory = credit_dir(output_dir)
    files = _step_files(directory)
    if not files:
        raise NoCreditRecordsError(f"no credit records in {directory} — {ENABLE_HINT}")
    if step is None:
        step = max(files)
    elif step not in files:
        raise NoCreditRecordsError(
            f"no credit records for step {step} in {directory} — pass one of the saved steps: {sorted(files)}"
        )
    records = []
    for number, line in enumerate(files[step].read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                records.append(normalize_record(json.loads(line)))
            except ValueError as error:  # JSONDecodeError is a ValueError too
                raise UserError(
                    f"not a credit record ({one_line(error)})",
                    "these files are written by the trainer; re-run the step or delete the file",
                    path=str(files[step]),
                    line=number,
                ) from None
    return step, records


def display_order(record: dict[str, Any]) -> tuple[int, int, int]:
    """Sort key of a page: best and worst of a group side by side, groups in order."""
    return record["group"], PICKS.index(record["pick"]), record["rollout"]
