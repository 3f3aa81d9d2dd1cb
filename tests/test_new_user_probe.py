"""The new-user probe's cases (issue 21), as a user meets them: each is one line naming what is wrong and how to go
on, before the expensive work where it can be known then (a reward's return value only once it returns)."""

import json
import os
import shutil
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

from egrsd.cli import UserError


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
        "--max_steps", "200", "--save_strategy", "steps", "--save_steps", "2",
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    # Its own process group, as a terminal's foreground job: Ctrl-C reaches every process in it. SIGINT as a terminal
    # has it (a suite run in the background inherits it ignored, and Python then never raises KeyboardInterrupt).
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        text=True,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    # After checkpoint-2 is complete (its trainer state is written last); Ctrl-C while saving is the test below.
    while not (out / "checkpoint-2" / "trainer_state.json").is_file() and process.poll() is None:
        assert time.monotonic() < deadline, "training did not reach its second checkpoint"
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1, stderr[-3000:]
    line = lines[0]
    assert line.startswith("interrupted: training stopped at step "), line
    step = int(line.split("training stopped at step ")[1].split()[0])
    assert f" {step} of 200" in line and "the same command and --resume_from_checkpoint true" in line
    if "which is incomplete" in line:  # Ctrl-C came while a checkpoint was saved: it says so, and to delete it
        cut_short = line.split(" while saving ")[1].split(", which is incomplete")[0]
        assert cut_short == f"{out}/checkpoint-{step}" and not os.path.exists(f"{cut_short}/trainer_state.json")
        shutil.rmtree(cut_short)
    else:
        checkpoint = int(line.split(f"its last checkpoint is {out}/checkpoint-")[1].split()[0])
        assert checkpoint <= step and checkpoint % 2 == 0

    resume = ["--config", TINY_GRPO, "--output_dir", str(out), *QUICK, "--resume_from_checkpoint"]
    # A checkpoint whose save was cut short: everything but the trainer state, which is written last.
    cut_short = out / "checkpoint-1"
    shutil.copytree(out / "checkpoint-2", cut_short, ignore=shutil.ignore_patterns("trainer_state.json"))
    argvs = [[*resume, str(cut_short), "--check"], [*resume, "true", "--check"]]
    outcomes = run_each(tmp_path, "egrsd.train", [*argvs, [*resume, "true", "--credit_method", "egrsd"]])
    assert_one_clear_outcome(outcomes[0], f"the checkpoint {cut_short} is incomplete", "delete that folder")
    assert outcomes[1]["code"] == 0, outcomes[1]["stderr"][-3000:]
    assert_one_clear_outcome(
        outcomes[2],
        "was trained with credit_method='grpo', not 'egrsd'",
        "resume with credit_method: grpo, or train the new method from the start in another output_dir",
    )


def test_ctrl_c_while_a_checkpoint_is_saved_says_it_is_incomplete(tmp_path):
    from transformers import TrainerState

    from egrsd.configs import EGRSDConfig
    from egrsd.train import where_training_stopped

    (tmp_path / "checkpoint-4").mkdir()
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-6").mkdir()  # being written when Ctrl-C came
    state = TrainerState(global_step=6, max_steps=10)
    message = where_training_stopped(state, EGRSDConfig(output_dir=str(tmp_path), use_cpu=True))
    assert message == (
        f"training stopped at step 6 of 10 while saving {tmp_path}/checkpoint-6, which is incomplete — delete that "
        "folder, then resume from the checkpoint before it (if any) with the same command and "
        "--resume_from_checkpoint true"
    )


def test_the_teacher_prompt_check_is_exact_at_the_limit():
    """Rows the byte bound cannot clear are tokenized: the longest bare teacher prompt fits a limit of its own length
    and not one token less."""
    from transformers import AutoTokenizer

    from egrsd.configs import EGRSDConfig
    from egrsd.data import load_math_dataset
    from egrsd.teacher_budget import bare_teacher_prompt_lengths, check_teacher_prompts_fit
    from egrsd.testbed.base import shipped_base_path

    tokenizer = AutoTokenizer.from_pretrained(str(shipped_base_path()))
    dataset = load_math_dataset("testbed-arithmetic", max_samples=200)
    args = EGRSDConfig(output_dir="unused", use_cpu=True, chat_template_kwargs={"enable_thinking": True})
    lengths = bare_teacher_prompt_lengths(
        dataset.to_list(), tokenizer, args.teacher_template, "solution", args.chat_template_kwargs
    )
    check_teacher_prompts_fit(dataset, tokenizer, args, max(lengths))
    with pytest.raises(UserError, match=f"{lengths.count(max(lengths))} of 200 teacher prompts are longer than"):
        check_teacher_prompts_fit(dataset, tokenizer, args, max(lengths) - 1)
