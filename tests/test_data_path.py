"""Nothing lost between the user's data and the trainer (issue 23), through the command-line tools a user runs.

Golds keep the value the user wrote, and training and `egrsd-eval` agree on which rows are gradable; every column of
a local file and of a registered layout reaches the rewards; a reward's signature is checked against them before any
model loads; empty solutions are counted and limited; an empty training set is an error; a reward's NaN is counted;
frontiers compare only comparable runs.
"""

import json
import os
import shutil

import pytest
from helpers import (
    FIXTURES,
    TINY_RECIPES,
    assert_one_clear_outcome,
    output_name,
    run_each,
    run_python,
    write,
)


RESULTS = FIXTURES / "results"
# The user's reward functions, in a file of their own beside the data (named in recipes as my_rewards:<function>).
MY_REWARDS = '''
import json

from egrsd.rewards import accuracy_reward

SEEN = ("id", "answer", "difficulty", "meta", "question", "final", "data_source", "extra_info")


def record(completions, answer, **kwargs):
    """Writes what it was given, and whether the shared grader can grade each row, to records.jsonl."""
    verdicts = accuracy_reward(completions, answer)
    with open("records.jsonl", "a") as f:
        for i, verdict in enumerate(verdicts):
            row = {key: kwargs[key][i] for key in SEEN if key in kwargs}
            f.write(json.dumps({**row, "answer": answer[i], "gradable": verdict is not None}) + "\\n")
    return [0.0 for _ in completions]


def nan_half(completions, **kwargs):
    return [float("nan") if i % 2 else 1.0 for i in range(len(completions))]


def by_source(completions, extra_info, data_source, **kwargs):
    return [0.0 for _ in completions]


def needs_level(completions, level, **kwargs):
    return [0.0 for _ in completions]


def no_kwargs(completions, answer):
    return [0.0 for _ in completions]
'''
GOLDS = [
    {"id": "zero", "problem": "Compute 1-1.", "answer": 0},
    {"id": "empty", "problem": "Compute 2-2.", "answer": ""},
    {"id": "null", "problem": "Compute 3-3.", "answer": None},
    {"id": "text", "problem": "Name the capital of France.", "answer": "Paris"},
    {"id": "latex", "problem": "Compute 1/2.", "answer": "\\frac{1}{2}"},
]
# One step of rollouts on the tiny testbed base: 3 prompts x 2 completions, 8 tokens each.
ONE_STEP = [
    "--max_steps", "1",
    "--per_device_train_batch_size", "6",
    "--num_generations", "2",
    "--max_completion_length", "8",
]  # fmt: skip
RECORD = ["--reward_funcs", "my_rewards:record"]
EXTRA_MAPPING = ["--dataset_column_mapping", '{"problem": "question", "answer": "meta.gold", "solution": null}']


def write_rows(path, rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path.name


def read_records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def grpo(tmp_path, data, *extra, out="out"):
    """egrsd-train's arguments for the tiny grpo recipe on `data`, writing to tmp_path/out."""
    config = str(TINY_RECIPES / "grpo" / "config.yaml")
    return ["--config", config, "--dataset_name", data, "--output_dir", str(tmp_path / out), *extra]


@pytest.fixture
def user_folder(tmp_path):
    write(tmp_path / "my_rewards.py", MY_REWARDS)
    return tmp_path


def test_training_and_eval_agree_on_which_golds_are_gradable(user_folder):
    """Golds 0, "", null, text and LaTeX: training drops "" and null at load and grades the rest; egrsd-eval (with the
    testbed model, named as training names it) reads the same file and finds the same rows gradable. A reward's NaN
    is counted in a logged metric and warned about once."""
    data = write_rows(user_folder / "golds.jsonl", GOLDS)
    training = run_python(
        "-m", "egrsd.train",
        *grpo(user_folder, data, *ONE_STEP, "--max_steps", "2", *RECORD, "my_rewards:nan_half"),
        cwd=user_folder,
    )  # fmt: skip
    assert training.returncode == 0, training.stderr[-3000:]
    assert "dropped 2 of 5 rows: 2 with an empty or null gold answer" in training.stderr
    records = read_records(user_folder / "records.jsonl")
    trained = {record["id"] for record in records if record["gradable"]}
    assert {record["id"] for record in records} == {"zero", "text", "latex"}
    assert {record["answer"] for record in records if record["id"] == "zero"} == {"0"}  # the text of the int 0
    assert training.stderr.count("reward function 'nan_half' returned NaN for 3 of 6 completions") == 1
    history = json.loads((user_folder / "out" / "trainer_state.json").read_text())["log_history"]
    assert [step["rewards/nan_half/nan_count"] for step in history[:2]] == [3.0, 3.0]

    evaluation = run_python(
        "-m", "egrsd.eval",
        "--model", "testbed:base",
        "--benchmarks", data,
        "--max-new-tokens", "4",
        "--backend", "transformers",
        "--output-dir", "eval",
        cwd=user_folder,
    )  # fmt: skip
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    samples = [json.loads(line) for line in (user_folder / "eval" / "samples.jsonl").read_text().splitlines()]
    evaluated = {sample["prompt_id"] for sample in samples if sample["score"] is not None}
    assert trained == evaluated == {"zero", "text", "latex"}
    assert {sample["prompt_id"]: sample["gold"] for sample in samples}["zero"] == "0"
    assert json.loads((user_folder / "eval" / "results.json").read_text())["model"] == "testbed:base"


@pytest.fixture(scope="module")
def train_runs(tmp_path_factory):
    """Training runs and `--check`s on the user's files, in one subprocess: (outcomes by case, the folder)."""
    folder = tmp_path_factory.mktemp("data-path")
    write(folder / "my_rewards.py", MY_REWARDS)
    extra_columns = write_rows(
        folder / "extra.jsonl",
        [
            {"question": f"Compute {i}+1.", "meta": {"gold": str(i + 1), "source": f"s{i}"}, "difficulty": i}
            for i in range(3)
        ],
    )
    shutil.copy(FIXTURES / "data" / "dapo-math-17k.jsonl", folder / "dapo.jsonl")
    solutions = write_rows(
        folder / "solutions.jsonl",
        [{"problem": f"Compute {i}+0.", "answer": i, "solution": "" if i else f"{i}+0={i}"} for i in range(4)],
    )
    unusable = write_rows(
        folder / "unusable.jsonl",
        [{"problem": "Compute 1+1.", "answer": " "}] * 2 + [{"problem": "x", "answer": None}],
    )
    clash = write_rows(folder / "clash.jsonl", [{"problem": "Compute 1+1.", "answer": 2, "completions": "mine"}])
    cases = {
        "local file columns": grpo(folder, extra_columns, *ONE_STEP, *RECORD, *EXTRA_MAPPING, out="extra"),
        "registered layout columns": grpo(
            folder, "dapo.jsonl", *ONE_STEP, *RECORD, "--dataset_layout", "dapo-math-17k", out="dapo"
        ),
        # A registered Hub set's columns are known without downloading it.
        "Hub set columns accepted": grpo(folder, "dapo-math-17k", "--reward_funcs", "my_rewards:by_source", "--check"),
        "solutions accepted": [
            *grpo(folder, solutions, "--credit_method", "egrsd", "--dataset_max_empty_solution_frac", "1.0"),
            "--check",
        ],
    }
    mistakes = {  # (data, arguments)  # fmt: skip
        "reward parameter": (extra_columns, *EXTRA_MAPPING, "--reward_funcs", "my_rewards:needs_level"),
        "Hub set reward parameter": ("dapo-math-17k", "--reward_funcs", "my_rewards:needs_level"),
        "reward without kwargs": (
            "dapo.jsonl",
            "--dataset_layout",
            "dapo-math-17k",
            "--reward_funcs",
            "my_rewards:no_kwargs",
        ),
        "column named like a TRL argument": (clash,),
        "empty solutions": (solutions, "--credit_method", "egrsd"),
        "no usable rows": (unusable,),
        "max_samples 0": (solutions, "--dataset_max_samples", "0"),
        "testbed max_samples 0": ("testbed-arithmetic", "--dataset_max_samples", "-1"),
        "length-aware reward": (
            solutions,
            "--max_completion_length",
            "48",
            "--reward_funcs",
            "soft_overlong(max_completion_len=8192)",
        ),
        "stray brace": (solutions, "--credit_method", "egrsd", "--teacher_template", "{problem} {x"),
    }
    # Each mistake writes to a folder of its own, which must stay absent: nothing trained, nothing saved.
    mistakes = {name: grpo(folder, *spec, out=output_name(name)) for name, spec in mistakes.items()}
    argvs = list(cases.values()) + [argv + extra for argv in mistakes.values() for extra in (["--check"], [])]
    outcomes = run_each(folder, "egrsd.train", argvs)
    named = dict(zip(cases, outcomes))
    for index, name in enumerate(mistakes):
        named[(name, "--check")], named[(name, "training")] = outcomes[
            len(cases) + 2 * index : len(cases) + 2 * index + 2
        ]
    return named, folder


def test_every_column_of_a_local_file_reaches_the_rewards(train_runs):
    outcomes, folder = train_runs
    assert outcomes["local file columns"]["code"] == 0, outcomes["local file columns"]["stderr"][-3000:]
    records = [r for r in read_records(folder / "records.jsonl") if "difficulty" in r]
    # The nested gold mapped by dataset_column_mapping is the answer; every column arrives as written, once for
    # each of a prompt's two completions.
    seen = sorted((r["question"], r["difficulty"], r["meta"]["source"], r["answer"]) for r in records)
    assert seen == sorted(
        [("Compute 0+1.", 0, "s0", "1"), ("Compute 1+1.", 1, "s1", "2"), ("Compute 2+1.", 2, "s2", "3")] * 2
    )


def test_every_column_of_a_registered_layout_reaches_the_rewards(train_runs):
    outcomes, folder = train_runs
    assert outcomes["registered layout columns"]["code"] == 0, outcomes["registered layout columns"]["stderr"][-3000:]
    records = [r for r in read_records(folder / "records.jsonl") if "extra_info" in r]
    assert sorted(r["extra_info"]["index"] for r in records) == ["a1", "a1", "a2", "a2", "a3", "a3"]
    assert {r["data_source"] for r in records} == {"math_dapo"}


def test_check_knows_a_registered_hub_sets_columns_without_downloading_it(train_runs):
    outcome = train_runs[0]["Hub set columns accepted"]
    assert outcome["code"] == 0 and "recipe OK" in outcome["stderr"], outcome["stderr"][-3000:]


def test_check_prints_the_empty_solutions_and_accepts_them_when_asked(train_runs):
    outcome = train_runs[0]["solutions accepted"]
    assert outcome["code"] == 0, outcome["stderr"][-3000:]
    assert (
        "note: solutions.jsonl: 4 rows read; 3 of the 4 usable rows have an empty 'solution' (their answer is the "
        "teacher's reference solution); 4 used" in outcome["stderr"]
    )


NEEDS_LEVEL = "reward 'my_rewards:needs_level' requires the parameter(s) ['level']"
MISTAKES = {
    "reward parameter": [NEEDS_LEVEL, "'difficulty'"],
    "Hub set reward parameter": [NEEDS_LEVEL, "'extra_info'"],
    "reward without kwargs": ["reward 'my_rewards:no_kwargs' has no **kwargs", "'extra_info'", "add **kwargs"],
    "column named like a TRL argument": ["the data has a column 'completions'", "rename that column"],
    "empty solutions": [
        "solutions.jsonl: 3 of 4 rows (75%) have an empty 'solution', above dataset_max_empty_solution_frac=0.5",
        "dataset_column_mapping: {solution: null}",
    ],
    "no usable rows": [
        "unusable.jsonl: no usable rows — of 3, dropped 3 with an empty or null gold answer",
        "only empty text, null and the placeholders do not",
    ],
    "max_samples 0": ["dataset_max_samples=0 keeps no rows"],
    "testbed max_samples 0": ["dataset_max_samples=-1 keeps no rows"],
    "length-aware reward": [
        "soft_overlong(max_completion_len=8192)",
        "max_completion_len=8192 is above max_completion_length=48",
        "its punishment starts at 6554 tokens, so it can never fire",
    ],
    "stray brace": ["teacher_template is not a valid template (expected '}' before end of string)", "'{{'"],
}


@pytest.mark.parametrize("mode", ["--check", "training"])
@pytest.mark.parametrize("name", list(MISTAKES))
def test_data_mistakes_are_one_line_before_any_model_loads(train_runs, name, mode):
    outcomes, folder = train_runs
    assert_one_clear_outcome(outcomes[(name, mode)], *MISTAKES[name])
    assert not os.path.exists(folder / output_name(name))  # nothing trained, nothing saved


# ---------------------------------------------------------------------------------------------------- frontier


def results_with(tmp_path, name, source="base", **changes):
    results = json.loads((RESULTS / f"{source}.json").read_text())
    for key, value in changes.items():
        if key == "math500_problems":
            results["benchmarks"]["math500"]["num_problems"] = value
        else:
            results[key] = value
    (tmp_path / name).mkdir()
    (tmp_path / name / "results.json").write_text(json.dumps(results))
    return f"{name}/results.json"


def test_frontier_refuses_runs_that_are_not_comparable(tmp_path):
    base = results_with(tmp_path, "base")
    cut = results_with(tmp_path, "cut", source="egrsd", max_new_tokens=64)
    fewer = results_with(tmp_path, "fewer", source="grpo", math500_problems=100)
    one_sample = results_with(tmp_path, "k1", source="opsd", num_samples=1)
    outcomes = run_each(
        tmp_path,
        "egrsd.eval.frontier",
        [[base, cut], [base, fewer], [base, one_sample], [base, cut, "--allow-mixed", "--output-dir", "mixed"]],
    )
    assert_one_clear_outcome(outcomes[0], "max_new_tokens (the token budget): base 16384, cut 64", "--allow-mixed")
    assert_one_clear_outcome(outcomes[1], "math500's num_problems (the problem set): base 500, fewer 100")
    assert_one_clear_outcome(outcomes[2], "num_samples (K, the samples per problem): base 4, k1 1")
    assert outcomes[3]["code"] == 0, outcomes[3]["stderr"]
    table = (tmp_path / "mixed" / "frontier.md").read_text()
    assert "| math500 | base [budget 16384, K 4] | 80.0 |" in table
    assert "| math500 | cut [budget 64, K 4] |" in table


def test_frontier_plot_marks_each_runs_budget_and_k(tmp_path, monkeypatch):
    import matplotlib.axes

    from egrsd.eval.frontier import write_frontier

    annotated = []
    original = matplotlib.axes.Axes.annotate

    def annotate(self, text, *args, **kwargs):
        annotated.append(text)
        return original(self, text, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "annotate", annotate)
    paths = [tmp_path / results_with(tmp_path, "base"), tmp_path / results_with(tmp_path, "cut", max_new_tokens=64)]
    write_frontier(paths, tmp_path / "out", allow_mixed=True)
    assert {"base [budget 16384, K 4]", "cut [budget 64, K 4]"} <= set(annotated)


def test_a_frontier_of_comparable_runs_needs_no_flag(tmp_path):
    runs = [results_with(tmp_path, "base"), results_with(tmp_path, "egrsd", source="egrsd")]
    result = run_python("-m", "egrsd.eval.frontier", *runs, "--output-dir", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "| math500 | egrsd | 82.0 |" in (tmp_path / "out" / "frontier.md").read_text()
