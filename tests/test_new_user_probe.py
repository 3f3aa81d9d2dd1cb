"""The new-user probe's cases (issue 21), as a user meets them: each is one line naming what is wrong and how to go
on, before the expensive work where it can be known then (a reward's return value only once it returns)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import (
    ROOT,
    TINY_RECIPES,
    USER_ERROR,
    assert_one_clear_line,
    assert_one_clear_outcome,
    error_lines,
    output_name,
    run_each,
    run_python,
    write,
)


MY_REWARDS = """
def too_few(completions, **kwargs):
    return [0.0 for _ in completions][:-1]


def one_number(completions, **kwargs):
    return 0.5


def strings(completions, **kwargs):
    return ["1.0" for _ in completions]


def raises(completions, answer, **kwargs):
    return [float(gold) / 0 for gold in answer]
"""
TINY_GRPO = str(TINY_RECIPES / "grpo" / "config.yaml")
TINY_EGRSD = str(TINY_RECIPES / "egrsd" / "config.yaml")
# One quick step of the tiny testbed base: 2 prompts x 2 completions of 8 tokens.
QUICK = [
    "--max_steps", "1",
    "--per_device_train_batch_size", "4",
    "--num_generations", "2",
    "--max_completion_length", "8",
    "--dataset_max_samples", "8",
]  # fmt: skip


@pytest.fixture(scope="module")
def train_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("probe")
    write(folder / "my_rewards.py", MY_REWARDS)
    rewards = {
        name: [
            *("--config", TINY_GRPO, "--output_dir", str(folder / name)),
            *QUICK,
            "--reward_funcs",
            f"my_rewards:{name}",
        ]
        for name in ("too_few", "one_number", "strings", "raises")
    }
    settings = {
        "max_completion_length 0": ["--max_completion_length", "0"],
        "max_completion_length negative": ["--max_completion_length", "-8"],
        "teacher prompt beyond the context": ["--max_teacher_prompt_length", "4096"],
        "offline Hub data set": ["--dataset_name", "deepscaler"],
        "teacher prompt over its limit": ["--max_teacher_prompt_length", "40"],
    }
    # Each case writes to a folder of its own, which must stay absent: nothing trained, nothing saved.
    settings = {
        name: ["--config", TINY_EGRSD, "--output_dir", str(folder / output_name(name)), *argv]
        for name, argv in settings.items()
    }
    checks = [argv + ["--check"] for argv in settings.values()]
    outcomes = run_each(folder, "egrsd.train", [*rewards.values(), *settings.values(), *checks])
    named = dict(zip([*rewards, *settings], outcomes))
    named.update(
        {(name, "--check"): outcome for name, outcome in zip(settings, outcomes[len(outcomes) - len(checks) :])}
    )
    return named, folder


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("too_few", ["reward function 'too_few' returned 3 values for 4 completions", "one float (or None) per"]),
        ("one_number", ["reward function 'one_number' returned a float (0.5), not a list"]),
        ("strings", ["reward function 'strings' returned a str ('1.0') among its values, where numbers belong"]),
    ],
)
def test_a_reward_returning_the_wrong_thing_is_named_with_what_it_returned(train_runs, name, fragments):
    assert_one_clear_outcome(train_runs[0][name], *fragments)


def test_a_reward_that_raises_is_named_first_then_its_own_frames(train_runs):
    stderr = train_runs[0]["raises"]["stderr"]
    assert train_runs[0]["raises"]["code"] == USER_ERROR
    lines = error_lines(stderr)
    assert lines == [
        "error: reward function 'raises' raised ZeroDivisionError: float division by zero — fix the reward "
        "function; its traceback follows"
    ]
    after = stderr[stderr.index(lines[0]) :]
    assert 'my_rewards.py", line 15, in raises' in after and after.rstrip().endswith(
        "ZeroDivisionError: float division by zero"
    )
    assert "grpo_trainer.py" not in after and "reward_checks.py" not in after  # only the user's own frames


SETTINGS = {
    "max_completion_length 0": ["max_completion_length must be a positive number of tokens, got 0"],
    "max_completion_length negative": ["max_completion_length must be a positive number of tokens, got -8"],
    "teacher prompt beyond the context": [
        "max_teacher_prompt_length=4096 + max_completion_length=256 exceeds the model's context "
        "(max_position_embeddings=2048)",
        "set max_teacher_prompt_length to at most 1792",
    ],
}


@pytest.mark.parametrize("mode", ["--check", "training"])
@pytest.mark.parametrize("name", list(SETTINGS))
def test_impossible_lengths_are_one_line_before_the_model_loads(train_runs, name, mode):
    outcomes, folder = train_runs
    assert_one_clear_outcome(outcomes[name] if mode == "training" else outcomes[(name, mode)], *SETTINGS[name])
    assert not os.path.exists(folder / output_name(name))


def test_a_teacher_prompt_over_its_limit_without_the_solution_is_one_line_before_the_model_loads(train_runs):
    outcomes, folder = train_runs
    assert_one_clear_outcome(
        outcomes["teacher prompt over its limit"],
        "teacher prompts are longer than max_teacher_prompt_length=40 tokens even without their reference solution",
        "raise max_teacher_prompt_length to at least",
    )
    assert not os.path.exists(folder / output_name("teacher prompt over its limit"))


def test_an_unreachable_hub_data_set_is_one_line_naming_it_and_the_ways_on(train_runs):
    outcomes, _ = train_runs
    assert outcomes[("offline Hub data set", "--check")]["code"] == 0  # --check downloads nothing
    assert_one_clear_outcome(
        outcomes["offline Hub data set"],
        "cannot download the data set agentica-org/DeepScaleR-Preview-Dataset (deepscaler) from the Hub",
        "load it once where the Hub is reachable",
        "pass that file as dataset_name with dataset_layout: deepscaler",
    )


def test_eval_on_an_unreachable_hub_benchmark_is_one_line(tmp_path):
    result = run_python("-m", "egrsd.eval", "--model", "testbed:base", "--benchmarks", "math500", cwd=tmp_path)
    assert_one_clear_line(
        result,
        "cannot download the benchmark math500 (HuggingFaceH4/MATH-500) from the Hub",
        "path.jsonl:problem=problem,answer=answer,id=unique_id",
    )


def test_eval_takes_the_testbed_model_names(tmp_path):
    result = run_python(
        "-m", "egrsd.eval",
        "--model", "testbed:random",
        "--benchmarks", "testbed-arithmetic",
        "--max-problems", "2",
        "--max-new-tokens", "2",
        "--backend", "transformers",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "outputs/eval/testbed-random-budget2-k1/results.json").read_text())
    assert results["model"] == "testbed:random" and results["benchmarks"]["testbed-arithmetic"]["num_problems"] == 2
    assert_one_clear_line(
        run_python("-m", "egrsd.eval", "--model", "testbed:big", "--benchmarks", "testbed-arithmetic", cwd=tmp_path),
        "'testbed:big' is not an embedded model",
    )


def test_ctrl_c_says_where_training_stopped_and_a_resume_under_another_method_is_refused(tmp_path):
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "egrsd.train", "--config", TINY_GRPO, "--output_dir", str(out), *QUICK,
        "--max_steps", "200", "--save_strategy", "steps", "--save_steps", "1",
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    # Its own process group, as a terminal's foreground job: Ctrl-C reaches every process in it.
    process = subprocess.Popen(command, cwd=ROOT, env=env, text=True, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (out / "checkpoint-2").is_dir() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1, stderr[-3000:]
    last = lines[0]
    assert last.startswith("interrupted: training stopped at step "), last
    step = int(last.split("training stopped at step ")[1].split()[0])
    assert f"of 200; its last checkpoint is {out}/checkpoint-" in last and "--resume_from_checkpoint true" in last
    assert int(last.split("checkpoint-")[1].split()[0]) in (step, step - 1)

    resume = ["--config", TINY_GRPO, "--output_dir", str(out), *QUICK, "--resume_from_checkpoint", "true"]
    outcomes = run_each(tmp_path, "egrsd.train", [resume + ["--check"], resume + ["--credit_method", "egrsd"]])
    assert outcomes[0]["code"] == 0, outcomes[0]["stderr"][-3000:]
    assert_one_clear_outcome(
        outcomes[1],
        "was trained with credit_method='grpo', not 'egrsd'",
        "resume with credit_method: grpo, or train the new method from the start in another output_dir",
    )
