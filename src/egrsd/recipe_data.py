"""The recipe's data: loaded as the recipe asks, and checked with its rewards before any model loads (`egrsd-train
--check` and training).

* `load_datasets`: the training (and held-out) set, with the recipe's mapping, layout, limits and sample counts.
* The sample counts: `dataset_max_samples` (and `dataset_test_max_samples` when evaluating) must keep a row.
* Local and generated data is loaded here as training loads it (nothing is downloaded): what the load refuses is a
  problem line, and what it kept and dropped is one `note:` line (rows dropped and why, rows whose answer stands in
  for an empty solution).
* Every column the rewards will see (the loaded data's, or a registered set's known layout) against each reward's
  signature (`reward_checks`). Sets whose columns are only known once downloaded are checked when training loads
  them, still before the model.
"""

import json
import sys

from .cli import UserError, one_line
from .configs import EGRSDConfig, EGRSDScriptArguments
from .teacher_prompts import template_fields


def column_mapping(script_args) -> dict | None:
    """The recipe's dataset_column_mapping as a dict (the command line gives it as JSON text)."""
    mapping = script_args.dataset_column_mapping
    if isinstance(mapping, str):
        try:
            mapping = json.loads(mapping)
        except json.JSONDecodeError as error:
            raise ValueError(
                f'dataset_column_mapping is not JSON ({error.msg}): write it as \'{{"answer": "final"}}\''
            ) from None
    if mapping is not None and not isinstance(mapping, dict):
        raise ValueError(f"dataset_column_mapping must be a mapping {{role: column}}, got {mapping!r}")
    return mapping


def needs_solution(training_args: EGRSDConfig) -> bool:
    """Whether the method's teacher reads the reference solution (a teacher method whose template shows it)."""
    if not training_args.needs_teacher:
        return False
    if training_args.teacher_context == "successful_rollout":
        return False  # the demonstration comes from the rollouts
    return "solution" in template_fields(training_args.teacher_template)


def load_datasets(script_args: EGRSDScriptArguments, training_args: EGRSDConfig, counts=None):
    """The training set (and the held-out set when `eval_strategy` is on) as the recipe asks; `counts`, a
    `data.LoadCounts`, is filled with what the training set's load kept and dropped."""
    from .data import load_math_dataset

    solution_needed = needs_solution(training_args)

    def load(split: str, **extra):
        try:
            return load_math_dataset(
                script_args.dataset_name,
                split=split,
                column_mapping=column_mapping(script_args),
                config_name=script_args.dataset_config,
                layout=script_args.dataset_layout,
                require_solution=solution_needed,
                max_empty_solution_frac=script_args.dataset_max_empty_solution_frac if solution_needed else None,
                **extra,
            )
        except UserError:
            raise
        except (ValueError, FileNotFoundError) as error:  # the data module's messages name the set and the fix
            raise UserError(f"dataset {script_args.dataset_name!r}: {one_line(error)}") from None

    train_dataset = load(
        script_args.dataset_train_split,
        max_samples=script_args.dataset_max_samples,
        seed=training_args.seed,
        counts=counts,
    )
    eval_dataset = None
    if training_args.eval_strategy != "no":
        # seed 0, not the training seed: every run of a comparison evaluates on the same held-out rows.
        eval_dataset = load(script_args.dataset_test_split, max_samples=script_args.dataset_test_max_samples, seed=0)
    return train_dataset, eval_dataset


def sample_count_problems(script_args, training_args) -> list[str]:
    """Sample counts that keep no row, and an empty-solution share that is not a share."""
    counts = {"dataset_max_samples": script_args.dataset_max_samples}
    if training_args.eval_strategy != "no":
        counts["dataset_test_max_samples"] = script_args.dataset_test_max_samples
    problems = [
        f"{key}={value} keeps no rows — set a positive number, or remove it to use every row"
        for key, value in counts.items()
        if value is not None and value <= 0
    ]
    share = script_args.dataset_max_empty_solution_frac
    if not 0.0 <= share <= 1.0:
        problems.append(
            f"dataset_max_empty_solution_frac={share:g} is not a share of rows — set it between 0 and 1 (1.0 accepts "
            "any share of empty solutions)"
        )
    return problems


def preview_data(script_args, training_args, load_local: bool = True) -> tuple[list[str] | None, list[str]]:
    """(every column the rewards will see, or None where only a download, or with `load_local` False a load, would
    tell; problem lines)."""
    from .data import LoadCounts, is_local, registered_columns

    name = script_args.dataset_name
    if not is_local(name):
        return registered_columns(name, layout=script_args.dataset_layout), []
    if not load_local:
        return None, []
    counts = LoadCounts()
    try:
        train_dataset, _ = load_datasets(script_args, training_args, counts)
    except UserError as error:
        return None, [error.message()]
    print(f"note: {name}: {counts.summary(solutions=needs_solution(training_args))}", file=sys.stderr)
    return train_dataset.column_names, []


def reward_problems(reward_funcs, labels, columns: list[str] | None) -> list[str]:
    """The data's columns against the rewards' signatures; nothing when the columns are not known yet."""
    from .reward_checks import column_problems, signature_problems

    if columns is None:
        return []
    return column_problems(columns) + signature_problems(reward_funcs, labels, columns)


def check_loaded_data(reward_funcs, labels, *datasets) -> None:
    """Training's check of each loaded set against the rewards, before the model loads: a `UserError` if any."""
    problems: list[str] = []
    for dataset in datasets:
        if dataset is not None:
            problems += [p for p in reward_problems(reward_funcs, labels, dataset.column_names) if p not in problems]
    if problems:
        raise UserError(problems[0], problems=problems)
