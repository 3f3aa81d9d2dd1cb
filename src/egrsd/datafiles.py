"""Reading a user's local data file (json, jsonl, parquet) with errors that name the file and the line.

Used by `egrsd-train --check` and training (which runs the same checks first, then loads JSON files through
`json_dataset`) and by `egrsd-eval` for local benchmark files: a malformed line, an empty file, a row without a needed
column or a column of mixed types is one `UserError`, not a pyarrow or JSON traceback.
"""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cli import UserError, one_line
from .golds import text_form


if TYPE_CHECKING:
    import datasets


JSON_SUFFIXES = (".json", ".jsonl")


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Every row of a .json (a list of objects, or one object per line), .jsonl or .parquet file.

    Raises `UserError` for a missing or empty file, a line that is not JSON, or a row that is not an object.
    """
    return [row for _, row in read_numbered_rows(path)]


def read_numbered_rows(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """`read_rows` with each row's line number (JSON lines) or row number (a JSON list, parquet), from 1."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            "no such data file", "check the path (it is read relative to the working directory)", path=str(path)
        )
    if path.suffix.lower() == ".parquet":
        return _read_parquet(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise UserError(
            f"not UTF-8 text ({error.reason})", "save the file as UTF-8 JSON lines", path=str(path)
        ) from None
    if not text.strip():
        raise UserError(
            "the data file is empty",
            'write one JSON object per line, e.g. {"problem": ..., "answer": ...}',
            path=str(path),
        )
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as error:
            raise _not_json(path, error.lineno, error.msg) from None
        return [(number, _object(path, row, None)) for number, row in enumerate(rows, start=1)]
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise _not_json(path, number, error.msg) from None
        rows.append((number, _object(path, row, number)))
    return rows


def json_dataset(path: str | Path, text_columns: Sequence[str] = ()) -> "datasets.Dataset":
    """A .json/.jsonl file as a `datasets.Dataset`, read as the user wrote it.

    The values of `text_columns` (dotted paths for nested fields; the gold answer and the solution) become their text
    form (`golds.text_form`) before arrow types the columns, so a gold column holding 0, "0" and false is one text
    column, as `egrsd-eval` reads it. Every other column keeps its values; one whose rows mix types that arrow cannot
    hold together (a number in one row, text in another) is a `UserError` naming it.
    """
    import datasets

    path = Path(path)
    rows = read_numbered_rows(path)
    for number, row in rows:
        for column in text_columns:
            parent, _, key = column.rpartition(".")
            node = _node(row, parent)
            if isinstance(node, Mapping) and key in node:
                try:
                    node[key] = text_form(node[key])
                except ValueError as error:
                    raise UserError(f"{column!r}: {error}", path=str(path), line=number) from None
    names = list(dict.fromkeys(key for _, row in rows for key in row))
    table = {name: [row.get(name) for _, row in rows] for name in names}
    try:
        return datasets.Dataset.from_dict(table)
    except Exception as error:  # pyarrow's ArrowInvalid / ArrowTypeError, raised for the column it cannot type
        raise _mixed_types(path, table, error) from None


def _node(row: Mapping[str, Any], dotted: str) -> Any:
    node: Any = row
    for part in dotted.split(".") if dotted else ():
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _mixed_types(path: Path, table: Mapping[str, list], error: Exception) -> UserError:
    import pyarrow as pa

    for name, values in table.items():
        try:
            pa.array(values)
        except Exception:
            kinds = sorted({type(value).__name__ for value in values if value is not None})
            if len(kinds) > 1:
                return UserError(
                    f"column {name!r} mixes value types ({', '.join(kinds)}), which one column cannot hold",
                    "write it with one type in every row (e.g. all text)",
                    path=str(path),
                )
            return UserError(
                f"column {name!r} cannot be stored as one table column ({one_line(error)[:200]})",
                "write its values as text",
                path=str(path),
            )
    return UserError(f"cannot read the rows as a table ({one_line(error)[:300]})", "check its columns", path=str(path))


def _not_json(path: Path, line: int, reason: str) -> UserError:
    return UserError(
        f"not valid JSON ({reason})",
        "each line must be one complete JSON object (no trailing commas, quoted keys)",
        path=str(path),
        line=line,
    )


def _object(path: Path, row: Any, line: int | None) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise UserError(
            f"a row is a {type(row).__name__}, not a JSON object",
            'each row must be an object of columns, e.g. {"problem": ..., "answer": ...}',
            path=str(path),
            line=line,
        )
    return row


def _read_parquet(path: Path) -> list[tuple[int, dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ... for a file that is not parquet
        raise UserError(
            f"not a readable parquet file ({one_line(error)})",
            "write it with pandas or datasets' to_parquet",
            path=str(path),
        ) from None
    if not rows:
        raise UserError("the data file has no rows", "write at least one row", path=str(path))
    return list(enumerate(rows, start=1))


def has_column(row: Mapping[str, Any], column: str) -> bool:
    """Whether a row (or a dataset's features) holds `column`, a dotted path for nested fields ("extra.answer")."""
    node: Any = row
    for part in column.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def check_columns(
    path: str | Path,
    rows: Sequence[tuple[int, Mapping[str, Any]]],
    needed: Mapping[str, str],
    hints: Mapping[str, str],
) -> list[str]:
    """One problem line per needed column (role -> column) that the file lacks; `hints[role]` says how to fix it.

    A column missing from every row is reported once, with the file's columns; one missing from some rows is
    reported at the first such row's line (JSON lines: the line number; a JSON list or parquet: the row number).
    """
    problems = []
    columns = sorted({key for _, row in rows for key in row})
    for role, column in needed.items():
        missing = [number for number, row in rows if not has_column(row, column)]
        if not missing:
            continue
        if len(missing) == len(rows):
            problems.append(f"{path}: no column {column!r} (the {role}); its columns are {columns} — {hints[role]}")
        else:
            more = f" ({len(missing) - 1} more rows lack it)" if len(missing) > 1 else ""
            problems.append(
                f"{path}:{missing[0]}: this row has no {column!r} (the {role}){more} — give every row its {role}, "
                "or remove the row"
            )
    return problems


def parquet_problems(path: str | Path, needed: Mapping[str, str], hints: Mapping[str, str]) -> list[str]:
    """`check_columns` for a parquet file, from its schema and row count (nothing else is read)."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_metadata(path)
        names = set(metadata.schema.to_arrow_schema().names)
    except Exception as error:  # ArrowInvalid, OSError, ...: not a parquet file
        return [f"{path}: not a readable parquet file ({one_line(error)}) — write it with pandas or datasets"]
    if metadata.num_rows == 0:
        return [f"{path}: the data file has no rows — write at least one row"]
    return [
        f"{path}: no column {column!r} (the {role}); its columns are {sorted(names)} — {hints[role]}"
        for role, column in needed.items()
        if column.split(".")[0] not in names
    ]
