import glob
import json
import math
import os
import subprocess

import pytest
import yaml
from helpers import ROOT, console_script, run_command

from egrsd.check import METHOD_KEYS, run_check
from egrsd.cli import run_cli
from egrsd.configs import make_parser


RECIPES = sorted(glob.glob(os.path.join(ROOT, "recipes", "*", "*", "config.yaml")))
# Keys that name the run rather than configure it.
NAMING_KEYS = ("output_dir", "run_name", "hub_model_id")


def check(argv):
    """The exit status of `egrsd-train ... --check`, its error lines on stderr."""
    try:
        return run_cli(run_check, make_parser(), argv)
    except SystemExit as exited:
        return exited.code


def test_there_is_a_recipe_per_model_and_method():
    found = {os.path.relpath(path, os.path.join(ROOT, "recipes")) for path in RECIPES}
    for model in ("Qwen3-4B", "Qwen3-8B", "tiny"):
        for method in ("grpo", "opsd", "rlsd", "egrsd", "cl_egrsd"):
            assert os.path.join(model, method, "config.yaml") in found


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_recipe_passes_the_check(recipe, capsys):
    assert check(["--config", recipe, "--check"]) == 0, capsys.readouterr().err
    printed = yaml.safe_load(capsys.readouterr().out)
    with open(recipe) as f:
        raw = yaml.safe_load(f)
    assert printed["method"]["credit_method"] == raw["credit_method"]
    assert printed["model"]["model_name_or_path"] == raw["model_name_or_path"]


@pytest.mark.parametrize("model", ["Qwen3-4B", "Qwen3-8B", "tiny"])
def test_recipes_of_one_model_differ_only_in_method_keys(model):
    recipes = {}
    for method in ("grpo", "opsd", "rlsd", "egrsd", "cl_egrsd"):
        with open(os.path.join(ROOT, "recipes", model, method, "config.yaml")) as f:
            recipes[method] = yaml.safe_load(f)
    shared = {k: v for k, v in recipes["grpo"].items() if k not in METHOD_KEYS and k not in NAMING_KEYS}
    for method, recipe in recipes.items():
        assert recipe["credit_method"] == method
        rest = {k: v for k, v in recipe.items() if k not in METHOD_KEYS and k not in NAMING_KEYS}
        assert rest == shared, (
            f"{model}/{method} differs outside the method keys: {set(rest.items()) ^ set(shared.items())}"
        )
        assert method in recipe["output_dir"]


def test_qwen_recipes_use_thinking_mode_vllm_and_bf16():
    for path in RECIPES:
        if "/tiny/" in path:
            continue
        with open(path) as f:
            recipe = yaml.safe_load(f)
        assert recipe["chat_template_kwargs"] == {"enable_thinking": True}
        assert recipe["use_vllm"] and recipe["bf16"] and recipe["gradient_checkpointing"]
        assert recipe["report_to"] and recipe["save_strategy"] == "steps"


def write_recipe(tmp_path, **changes):
    with open(os.path.join(ROOT, "recipes", "Qwen3-8B", "egrsd", "config.yaml")) as f:
        recipe = yaml.safe_load(f)
    for key, value in changes.items():
        if value is None:
            recipe.pop(key, None)
        else:
            recipe[key] = value
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


@pytest.mark.parametrize(
    "changes,message",
    [
        (dict(credit_method="egrsdd"), "credit_method must be one of"),
        (dict(gate_floor=0.0), "gate_floor must be in (0, 1]"),
        (dict(learning_rat=1e-6), "Unknown arguments from config file: ['--learning_rat'"),
        (dict(teacher_template="{problem} {hint}"), "unknown placeholder(s) ['hint']"),
        (dict(reward_funcs=["accuracy", "brevity"]), "reward_funcs: "),
        (dict(reward_weights=[1.0]), "reward_weights has 1 values for 2 reward_funcs"),
        (dict(vllm_mode="remote"), "vllm_mode must be 'colocate' or 'server'"),
        (dict(vllm_max_model_length=4096), "vllm_max_model_length=4096 leaves no room"),
        (dict(use_vllm=False), "vllm_enable_sleep_mode=true without use_vllm"),
        (dict(use_cpu=True), "use_vllm=true with use_cpu=true"),
        (dict(dataset_name="no-such-set"), "dataset_name: "),
        (
            dict(
                dataset_name="dapo-math-17k", teacher_template="{problem}\n{answer}\n{solution}", solution_column="ref"
            ),
            "without 'ref'",
        ),
        (dict(model_name_or_path="./missing/model/dir"), "neither an existing folder nor a Hub id"),
    ],
)
def test_bad_recipes_get_one_clear_message(tmp_path, capsys, changes, message):
    assert check(["--config", write_recipe(tmp_path, **changes), "--check"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, errors
    assert message in errors[0]


def test_make_train_8b_launches_zero3_with_the_8b_egrsd_recipe():
    dry_run = subprocess.run(["make", "-n", "train-8b"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "accelerate launch --config_file launch/accelerate/zero3.yaml" in dry_run
    assert "--config recipes/Qwen3-8B/egrsd/config.yaml" in dry_run
    server = subprocess.run(
        ["make", "-n", "train-8b", "VLLM_MODE=server", "VLLM_HOST=node7", "METHOD=cl_egrsd"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "recipes/Qwen3-8B/cl_egrsd/config.yaml --vllm_mode server --vllm_server_host node7" in server


def test_make_train_8b_without_the_gpu_venv_is_one_line_naming_install_gpu(tmp_path):
    result = subprocess.run(
        ["make", "train-8b", f"GPU_VENV={tmp_path / 'missing'}"], cwd=ROOT, capture_output=True, text=True
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr
    assert "has no accelerate" in errors[0] and "run `make install-gpu` first" in errors[0]
    assert "Error 127" not in result.stderr


def accelerate_launch(config_file, recipe, output_dir, *overrides, timeout=900):
    command = [
        console_script("accelerate"),
        "launch",
        "--config_file",
        config_file,
        "-m",
        "egrsd.train",
        "--config",
        recipe,
        "--output_dir",
        str(output_dir),
        *overrides,
    ]
    return run_command(command, timeout=timeout)


# The tiny recipe with a 2-step budget: small groups and short rollouts keep the launch under a minute.
TWO_STEP_OVERRIDES = (
    "--max_steps", "2",
    "--per_device_train_batch_size", "8",
    "--num_generations", "4",
    "--max_completion_length", "48",
    "--logging_steps", "1",
)  # fmt: skip


def logged_losses(output_dir):
    with open(os.path.join(output_dir, "trainer_state.json")) as f:
        return [entry["loss"] for entry in json.load(f)["log_history"] if "loss" in entry]


def test_tiny_recipe_trains_two_steps_through_accelerate_launch(tmp_path):
    result = accelerate_launch(
        "launch/accelerate/cpu.yaml", "recipes/tiny/egrsd/config.yaml", tmp_path, *TWO_STEP_OVERRIDES
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert os.path.exists(tmp_path / "model.safetensors")
    losses = logged_losses(tmp_path)
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    assert "credit/gate_mean" in result.stdout + result.stderr


def test_tiny_recipe_trains_under_zero3_on_two_cpu_processes(tmp_path):
    """DeepSpeed ZeRO-3 over gloo: parameters partitioned, the teacher forward on every rank, finite losses."""
    result = accelerate_launch(
        "launch/accelerate/cpu_zero3.yaml",
        "recipes/tiny/egrsd/config.yaml",
        tmp_path,
        *TWO_STEP_OVERRIDES,
        "--per_device_train_batch_size", "4",
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    # The teacher runs at every step where some rank has a rollout with A != 0, on both ranks alike.
    with open(os.path.join(tmp_path, "trainer_state.json")) as f:
        scored = [entry["teacher/rows_scored_frac"] for entry in json.load(f)["log_history"] if "loss" in entry]
    passes = sum(frac > 0 for frac in scored)
    for rank in (0, 1):
        assert (
            f"[rank {rank}] finished 2 steps; teacher scoring passes: {passes}; parameter elements on this rank: 0 of"
            in output
        )
    losses = logged_losses(tmp_path)
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
