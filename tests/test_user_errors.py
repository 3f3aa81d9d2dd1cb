"""Bad input through the command-line tools, run as a user runs them (a subprocess): each mistake is one line,
`error: <what> — <fix>`, with exit status 2; a successful run exits 0; no traceback.

A Python start with torch and TRL imported costs seconds here, so the many mistakes of `egrsd-train` (and of
`egrsd-eval`) run in one subprocess that calls the console entry point once per case, as `sys.exit(main())` does;
the light tools and the successful training run get a process per command.
"""

import json
import os

import pytest
from helpers import (
    FIXTURES,
    ROOT,
    assert_one_clear_line,
    assert_one_clear_outcome,
    recipe,
    run_each,
    run_python,
    write,
)


TINY_RECIPE = os.path.join(ROOT, "recipes", "tiny", "egrsd", "config.yaml")
BENCHMARK = str(FIXTURES / "benchmarks" / "tiny_arith.jsonl")


def run(tmp_path, *command, timeout=300):
    return run_python(*command, cwd=tmp_path, timeout=timeout)


# ---------------------------------------------------------------------------------------------------- egrsd-train


@pytest.fixture(scope="module")
def train_cases(tmp_path_factory):
    """Every case: (argv, the fragments its one error line must contain); run in one subprocess."""
    tmp_path = tmp_path_factory.mktemp("train-cases")
    row = '{"problem": "Compute 1+1.", "answer": "2", "solution": "1+1=2"}\n'
    bad_json = write(tmp_path / "bad.jsonl", row + '{"problem": "Compute 2+2.", "answer": 4,}\n')
    empty = write(tmp_path / "empty.jsonl", "")
    no_answer = write(tmp_path / "no_answer.jsonl", row + row + '{"problem": "Compute 3+3.", "solution": "6"}\n')
    no_solution = write(tmp_path / "no_solution.jsonl", '{"problem": "Compute 1+1.", "answer": "2"}\n')
    write(tmp_path / "broken_reward.py", "def reward(completions, **kwargs):\n    return [1.0 for c in completions\n")
    write(tmp_path / "bad_yaml.yaml", "model_name_or_path: testbed:base\ndataset_name: [testbed-arithmetic\n")
    out = str(tmp_path / "out")
    base = ["--config", TINY_RECIPE, "--output_dir", out]
    cases = {
        "misspelled key": (
            ["--config", recipe(tmp_path, "typo.yaml", learning_rat=1e-5), "--output_dir", out],
            ["typo.yaml", "learning_rat", "learning_rate?", "egrsd-train --help"],
        ),
        "unknown method": ([*base, "--credit_method", "egrsdd"], ["credit_method must be one of", "'egrsdd'"]),
        "unknown reward": ([*base, "--reward_funcs", "accuracy", "brevity"], ["unknown reward 'brevity'"]),
        "reward_weights length": (
            [*base, "--reward_funcs", "accuracy", "format", "--reward_weights", "1.0"],
            ["reward_weights has 1 values for 2 reward_funcs", "give one weight per reward function"],
        ),
        "unknown placeholder": (
            [*base, "--teacher_template", "{problem} {hint}"],
            ["unknown placeholder(s) ['hint']", "Escape literal braces as '{{' and '}}'"],
        ),
        "gate_floor 0": ([*base, "--gate_floor", "0"], ["gate_floor must be in (0, 1]"]),
        "missing data file": ([*base, "--dataset_name", "missing.jsonl"], ["no dataset file", "missing.jsonl"]),
        "malformed jsonl": ([*base, "--dataset_name", bad_json], ["bad.jsonl:2: not valid JSON"]),
        "empty jsonl": ([*base, "--dataset_name", empty], ["empty.jsonl: the data file is empty"]),
        "row without answer": ([*base, "--dataset_name", no_answer], ["no_answer.jsonl:3:", "no 'answer'"]),
        "teacher without solution": (
            [*base, "--dataset_name", no_solution],
            ["no_solution.jsonl: no column 'solution'", "dataset_column_mapping: {solution: null}"],
        ),
        "YAML syntax error": (
            ["--config", "bad_yaml.yaml"],
            ["bad_yaml.yaml:3: YAML syntax error", "flow sequence that starts at line 2"],
        ),
        "reward module syntax error": (
            [*base, "--reward_funcs", "broken_reward.py:reward"],
            ["broken_reward.py:2: syntax error", "fix that line"],
        ),
        "missing model folder": (
            [*base, "--model_name_or_path", "./models/qwen3-missing"],
            ["'./models/qwen3-missing' is neither an existing folder nor a Hub id"],
        ),
        "save_steps with saving off": (
            [*base, "--save_steps", "5"],
            ["save_steps=5", "save_strategy='no' saves no checkpoint", "--save_strategy steps"],
        ),
        "resume without checkpoint": (
            [*base, "--resume_from_checkpoint", "true"],
            ["resume_from_checkpoint=true", "has no checkpoint-* folder"],
        ),
        "unknown flag": ([*base, "--learnig_rate", "1e-5"], ["--learnig_rate", "learning_rate?"]),
        "old teacher_model key": (
            ["--config", recipe(tmp_path, "old.yaml", teacher_model="frozen"), "--output_dir", out],
            ["teacher_model was renamed teacher_model_kind", "teacher_model_kind: base"],
        ),
        "teacher_update_rate 0": ([*base, "--teacher_update_rate", "0"], ["teacher_update_rate must be in (0, 1]"]),
        "teacher_sync_steps 0": ([*base, "--teacher_sync_steps", "0"], ["teacher_sync_steps must be an integer >= 1"]),
        "rlsd_lambda above 1": ([*base, "--rlsd_lambda", "2"], ["rlsd_lambda must be in [0, 1]"]),
        "lambda decay negative": ([*base, "--rlsd_lambda_decay_steps", "-5"], ["rlsd_lambda_decay_steps must be"]),
        "lambda with opsd": (
            [*base, "--credit_method", "opsd", "--rlsd_lambda", "0.5"],
            ["rlsd_lambda weigh(s) the teacher against the reward", "credit_method='opsd'"],
        ),
        "unknown teacher context": ([*base, "--teacher_context", "hint"], ["teacher_context must be one of"]),
        "answer context shows the solution": (
            [*base, "--teacher_context", "answer", "--teacher_template", "{problem} {solution}"],
            ["teacher_context='answer'", "use '{answer}' in the template"],
        ),
        "demonstration without its placeholder": (
            [*base, "--teacher_context", "successful_rollout", "--teacher_template", "{problem} {answer}"],
            ["teacher_context='successful_rollout'", "'{solution}'"],
        ),
        "ema teacher with LoRA": (
            [*base, "--teacher_model_kind", "ema", "--use_peft", "true"],
            ["teacher_model_kind='ema' is not supported with use_peft", "teacher_model_kind: base"],
        ),
        "teacher chat kwargs not a mapping": (
            [*base, "--teacher_chat_template_kwargs", "[1]"],
            ["teacher_chat_template_kwargs must be a mapping"],
        ),
    }
    runs = [argv + extra for argv, _ in cases.values() for extra in (["--check"], [])]
    opted_out = [*base, "--dataset_name", no_solution, "--dataset_column_mapping", '{"solution": null}', "--check"]
    # A model named like a Hub id that is neither a folder here nor reachable: found when training loads it.
    not_found = [*base, "--model_name_or_path", "models/qwen3-missing"]
    outcomes = run_each(tmp_path, "egrsd.train", [*runs, opted_out, not_found])
    return {"cases": cases, "outcomes": outcomes, "out": out}


TRAIN_CASES = [
    "misspelled key",
    "unknown method",
    "unknown reward",
    "reward_weights length",
    "unknown placeholder",
    "gate_floor 0",
    "missing data file",
    "malformed jsonl",
    "empty jsonl",
    "row without answer",
    "teacher without solution",
    "YAML syntax error",
    "reward module syntax error",
    "missing model folder",
    "save_steps with saving off",
    "resume without checkpoint",
    "unknown flag",
    "old teacher_model key",
    "teacher_update_rate 0",
    "teacher_sync_steps 0",
    "rlsd_lambda above 1",
    "lambda decay negative",
    "lambda with opsd",
    "unknown teacher context",
    "answer context shows the solution",
    "demonstration without its placeholder",
    "ema teacher with LoRA",
    "teacher chat kwargs not a mapping",
]


@pytest.mark.parametrize("name", TRAIN_CASES)
@pytest.mark.parametrize("mode", ["--check", "training"])
def test_train_mistake_is_one_line_before_any_model_loads(train_cases, name, mode):
    names = list(train_cases["cases"])
    assert names == TRAIN_CASES
    index = 2 * names.index(name) + (0 if mode == "--check" else 1)
    outcome = train_cases["outcomes"][index]
    _, fragments = train_cases["cases"][name]
    assert_one_clear_outcome(outcome, *fragments)
    # Training stopped at validation: nothing was written (a loaded model would have been saved under output_dir).
    assert not os.path.exists(train_cases["out"])


def test_opting_out_of_the_solution_column_passes_the_check(train_cases):
    outcome = train_cases["outcomes"][-2]
    assert outcome["code"] == 0, outcome["stderr"][-3000:]
    assert "recipe OK" in outcome["stderr"]


def test_a_model_that_cannot_be_loaded_is_one_line(train_cases):
    assert_one_clear_outcome(train_cases["outcomes"][-1], "cannot load the tokenizer of 'models/qwen3-missing'")


def test_train_exits_0_after_a_successful_run(tmp_path):
    result = run(
        tmp_path,
        "-c",
        "import sys; from egrsd.train import main; sys.exit(main())",  # what the egrsd-train script runs
        "--config", os.path.join(ROOT, "recipes", "tiny", "grpo", "config.yaml"),
        "--output_dir", str(tmp_path / "run"),
        "--max_steps", "1",
        "--per_device_train_batch_size", "2",
        "--num_generations", "2",
        "--max_completion_length", "8",
        "--dataset_max_samples", "4",
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert os.path.exists(tmp_path / "run" / "model.safetensors")
    assert "EGRSDTrainer object" not in result.stdout


# ---------------------------------------------------------------------------------------------------- other tools


def test_frontier_missing_and_non_json_results(tmp_path):
    assert_one_clear_line(run(tmp_path, "-m", "egrsd.eval.frontier", "nowhere/results.json"), "nowhere/results.json")
    (tmp_path / "broken.json").write_text('{"benchmarks": {\n  "math500": [1, 2,\n')
    result = run(tmp_path, "-m", "egrsd.eval.frontier", "broken.json")
    assert_one_clear_line(result, "broken.json:3: not valid JSON", "results.json that egrsd-eval wrote")


def test_inspect_missing_folder_and_folder_without_records(tmp_path):
    result = run(tmp_path, "-m", "egrsd.credit_pages", "no/such/run")
    assert_one_clear_line(result, "no such folder no/such/run")
    (tmp_path / "run").mkdir()
    assert_one_clear_line(
        run(tmp_path, "-m", "egrsd.credit_pages", "run"), "no credit records", "log_completions: true"
    )


def test_testbed_missing_base(tmp_path):
    result = run(tmp_path, "-m", "egrsd.testbed.cli", "eval-base", "--base", "no-base")
    assert_one_clear_line(result, "no testbed base in no-base")


def test_eval_mistakes(tmp_path):
    (tmp_path / "bench.jsonl").write_text('{"problem": "1+1", "answer": "2"}\n{"problem": "2+2" "answer": "4"}\n')
    outcomes = run_each(
        tmp_path,
        "egrsd.eval.cli",
        [
            ["--model", "x/y", "--benchmarks", "gsm9k"],
            ["--model", "./no-model", "--benchmarks", BENCHMARK],
            ["--model", "./no-model", "--benchmarks", "bench.jsonl"],
            ["--model", "./no-model", "--benchmarks", "missing.jsonl"],
            ["--model", "./no-model", "--benchmarks", BENCHMARK, "--max-problems", "-1"],
        ],
    )
    assert_one_clear_outcome(outcomes[0], "Unknown benchmark 'gsm9k'", "known benchmarks: math500")
    assert_one_clear_outcome(outcomes[1], "no model folder ./no-model")
    assert_one_clear_outcome(outcomes[2], "bench.jsonl:2: not valid JSON")
    assert_one_clear_outcome(outcomes[3], "missing.jsonl: no such benchmark file")
    assert_one_clear_outcome(outcomes[4], "max_problems=-1 keeps no problem")


def test_eval_counts_an_unparseable_gold_as_ungradable_and_warns_on_an_empty_problem(tmp_path, tiny_model_dir):
    rows = [
        {"id": "ok", "problem": "Compute 3+4.", "answer": "7"},
        {"id": "bad-gold", "problem": "Compute 2+2.", "answer": "\\frac{"},
        {"id": "empty", "problem": "  ", "answer": "1"},
    ]
    (tmp_path / "bench.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = run(
        tmp_path,
        "-m", "egrsd.eval",
        "--model", tiny_model_dir,
        "--benchmarks", "bench.jsonl",
        "--max-new-tokens", "4",
        "--backend", "transformers",
        "--output-dir", "eval",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 problem(s) with an empty text" in result.stderr and "'empty'" in result.stderr
    assert "1 problem(s) have no gold answer (empty, null or a placeholder) or one the grader cannot" in result.stderr
    metrics = json.loads((tmp_path / "eval" / "results.json").read_text())["benchmarks"]["bench"]
    assert metrics["ungradable_samples"] == 1 and metrics["num_problems"] == 3
    samples = [json.loads(line) for line in (tmp_path / "eval" / "samples.jsonl").read_text().splitlines()]
    assert [s["score"] for s in samples if s["prompt_id"] == "bad-gold"] == [None]
