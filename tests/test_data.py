import json
import logging
import os

import datasets
import pytest
from helpers import FIXTURES

from egrsd.cli import UserError
from egrsd.data import (
    DATASET_REGISTRY,
    DEFAULT_INSTRUCTION,
    OUTPUT_COLUMNS,
    LoadCounts,
    load_math_dataset,
    mapped_columns,
)


DATA = str(FIXTURES / "data")
DEEPSCALER = "agentica-org/DeepScaleR-Preview-Dataset"


def fixture(name: str) -> str:
    return os.path.join(DATA, name)


def test_registry_aliases_and_hub_ids():
    for alias, hub_id in [
        ("dapo-math-17k", "BytedTsinghua-SIA/DAPO-Math-17k"),
        ("deepscaler", "agentica-org/DeepScaleR-Preview-Dataset"),
        ("openr1-math-220k", "open-r1/OpenR1-Math-220k"),
        ("math", "DigitalLearningGmbH/MATH-lighteval"),
    ]:
        assert DATASET_REGISTRY[alias] is DATASET_REGISTRY[hub_id]
        assert DATASET_REGISTRY[alias].hub_id == hub_id
    assert DATASET_REGISTRY["openr1-math-220k"].config_name == "default"


@pytest.mark.parametrize(
    ("name", "fixture_file", "hub_id", "config"),
    [
        ("dapo-math-17k", "dapo-math-17k.jsonl", "BytedTsinghua-SIA/DAPO-Math-17k", None),
        (DEEPSCALER, "deepscaler.jsonl", DEEPSCALER, None),  # a registered Hub id resolves like its alias
        ("openr1-math-220k", "openr1-math-220k.parquet", "open-r1/OpenR1-Math-220k", "default"),
        ("math", "math.jsonl", "DigitalLearningGmbH/MATH-lighteval", "default"),
    ],
)
def test_registered_names_load_from_the_hub(monkeypatch, name, fixture_file, hub_id, config):
    # The Hub is stood in for by the fixture with the same column layout.
    calls = []
    builder = "parquet" if fixture_file.endswith(".parquet") else "json"
    local = datasets.load_dataset(builder, data_files=fixture(fixture_file), split="train")

    def fake_load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        return local

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    ds = load_math_dataset(name)
    assert calls == [(hub_id, config, "train")]
    # The mapped columns first, then the set's other columns, as registered (they reach the rewards).
    assert ds.column_names == OUTPUT_COLUMNS + list(DATASET_REGISTRY[name].other_columns)
    assert len(ds) == 3


def test_dapo_layout(caplog):
    with caplog.at_level(logging.INFO, logger="egrsd.data"):
        ds = load_math_dataset(fixture("dapo-math-17k.jsonl"), layout="dapo-math-17k")
    assert ds.column_names == [*OUTPUT_COLUMNS, "data_source", "ability", "reward_model", "extra_info"]
    assert ds["extra_info"] == [{"index": "a1"}, {"index": "a2"}, {"index": "a3"}]
    # 5 rows: one repeat removed, one without a gold dropped; the unwrapped problem is kept as it is
    assert ds["problem"] == [
        "How many positive divisors does $36$ have?",
        "Find the remainder when $2^{10}$ is divided by $7$.",
        "What is the sum of the first $10$ positive integers?",
    ]
    assert ds["answer"] == ["9", "2", "55"]
    assert ds["solution"] == ds["answer"]  # DAPO has answers only
    assert ds[0]["prompt"] == [
        {"role": "user", "content": f"How many positive divisors does $36$ have?\n\n{DEFAULT_INSTRUCTION}"}
    ]
    assert "Answer:" not in ds[1]["prompt"][0]["content"]  # DAPO's own instruction is removed
    assert "dropped 1 of 5 rows: 1 with an empty or null gold answer" in caplog.text
    assert "removed 1 repeated" in caplog.text
    assert "1 problems lacked the expected instruction wrapper" in caplog.text


def test_deepscaler_layout(caplog):
    with caplog.at_level(logging.WARNING, logger="egrsd.data"):
        ds = load_math_dataset(fixture("deepscaler.jsonl"), layout="deepscaler")
    assert ds["answer"] == ["\\frac{5}{6}", "5", "12"]
    assert ds["solution"][1] == "Subtract $5$ and divide by $3$: $x = 5$."
    assert ds["solution"][2] == "12"  # an empty solution falls back to the answer
    assert "dropped 1 of 4 rows" in caplog.text


def test_openr1_layout_parquet_drops_proofs(caplog):
    with caplog.at_level(logging.WARNING, logger="egrsd.data"):
        ds = load_math_dataset(fixture("openr1-math-220k.parquet"), layout="openr1-math-220k")
    assert ds.column_names[:4] == OUTPUT_COLUMNS
    assert ds["uuid"] == ["u1", "u2", "u4"]  # every other column is kept, for the rewards
    assert ds["answer"] == ["\\pm 2", "80", "e"]
    assert ds["solution"][1] == "Speed is distance over time: $120 / 1.5 = 80$."
    assert "dropped 1 of 4 rows" in caplog.text


def test_math_layout_extracts_last_boxed_answer(caplog):
    with caplog.at_level(logging.WARNING, logger="egrsd.data"):
        ds = load_math_dataset(fixture("math.jsonl"), layout="math")
    assert ds["answer"] == ["12", "\\frac{3}{4}", "(1,3)"]
    assert ds["solution"][0] == "$0.15 \\cdot 80 = \\boxed{12}$."
    assert "dropped 1 of 4 rows" in caplog.text  # the solution without a boxed answer


def test_system_prompt_instruction_and_sampling():
    ds = load_math_dataset(
        fixture("deepscaler.jsonl"), layout="deepscaler", instruction=None, system_prompt="Be brief.", max_samples=2
    )
    assert len(ds) == 2
    for row in ds:
        assert row["prompt"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": row["problem"]},
        ]
    again = load_math_dataset(
        fixture("deepscaler.jsonl"), layout="deepscaler", instruction=None, system_prompt="Be brief.", max_samples=2
    )
    assert again["problem"] == ds["problem"]


def test_column_mapping_for_another_layout(tmp_path):
    path = tmp_path / "custom.jsonl"
    rows = [
        {"question": "What is $2+3$?", "final": 5, "worked": "$2+3=5$"},
        {"question": "What is $4 \\cdot 2$?", "final": None, "worked": "$8$"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = load_math_dataset(str(path), column_mapping={"problem": "question", "answer": "final", "solution": "worked"})
    assert ds["answer"] == ["5"]
    assert ds["solution"] == ["$2+3=5$"]
    assert mapped_columns(str(path), {"problem": "question"}) == OUTPUT_COLUMNS


def test_nested_column_mapping(tmp_path):
    path = tmp_path / "nested.jsonl"
    path.write_text(json.dumps({"q": "Compute $1+1$.", "meta": {"gold": "2"}}) + "\n")
    ds = load_math_dataset(str(path), column_mapping={"problem": "q", "answer": "meta.gold", "solution": None})
    assert ds[0]["answer"] == "2"
    assert ds[0]["solution"] == "2"


def test_prompt_key_maps_chat_messages_to_the_problem(tmp_path):
    path = tmp_path / "chat.jsonl"
    messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": "Compute $2^5$."}]
    row = {"messages": messages, "a": "32"}
    path.write_text(json.dumps(row) + "\n")
    ds = load_math_dataset(str(path), column_mapping={"prompt": "messages", "answer": "a"}, instruction=None)
    assert ds[0]["problem"] == "Compute $2^5$."
    assert ds[0]["prompt"] == [{"role": "user", "content": "Compute $2^5$."}]


def test_missing_column_error_names_column_dataset_and_fix():
    with pytest.raises(ValueError) as error:
        load_math_dataset(fixture("math.jsonl"))  # generic layout expects an `answer` column
    message = str(error.value)
    assert "math.jsonl" in message
    assert "'answer'" in message
    assert "['level', 'problem', 'solution', 'type']" in message
    assert "column_mapping={'answer': '<column>'}" in message


def test_missing_mapped_column_error():
    with pytest.raises(ValueError, match="has no column 'final_answer'"):
        load_math_dataset(fixture("deepscaler.jsonl"), column_mapping={"answer": "final_answer"})


def test_mapping_keys_must_be_roles():
    with pytest.raises(ValueError, match="is not a role"):
        mapped_columns("deepscaler", {"question": "problem"})
    with pytest.raises(ValueError, match="cannot drop"):
        mapped_columns("deepscaler", {"answer": None})


def test_mapped_columns_offline():
    for name in ["dapo-math-17k", "deepscaler", "openr1-math-220k", "math", "open-r1/OpenR1-Math-220k", "someone/set"]:
        assert mapped_columns(name) == OUTPUT_COLUMNS
    assert mapped_columns(fixture("math.jsonl"), layout="math") == OUTPUT_COLUMNS
    with pytest.raises(ValueError, match="unknown dataset 'nosuchset'"):
        mapped_columns("nosuchset")
    with pytest.raises(ValueError, match="unknown dataset layout"):
        mapped_columns(fixture("math.jsonl"), layout="gsm9k")
    with pytest.raises(FileNotFoundError):
        mapped_columns("missing/train.jsonl")


def write_rows(path, rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_golds_keep_the_value_the_user_wrote(tmp_path):
    golds = [0, 0.0, -1, "0", False, "false", "None", [1, 2], ["x", None, 3], 2.50, " 7 ", 2**100]
    empty = ["", "  ", None, []]
    rows = [{"problem": f"p{i}", "answer": gold} for i, gold in enumerate([*golds, *empty, "proof"])]
    counts = LoadCounts()
    ds = load_math_dataset(write_rows(tmp_path / "golds.jsonl", rows), counts=counts)
    # Each gold once as text: numbers in decimal, booleans as JSON spells them, a list as its parts joined by ", ".
    assert ds["answer"] == ["0", "0.0", "-1", "0", "false", "false", "None", "1, 2", "x, 3", "2.5", "7", str(2**100)]
    assert ds["problem"] == [f"p{i}" for i in range(len(golds))]
    assert counts.rows == 17 and counts.kept == 12
    assert counts.dropped == {"empty_gold": 4, "placeholder_gold": 1}


def test_a_gold_column_of_mixed_types_is_one_text_column_and_an_object_gold_is_refused(tmp_path):
    # pyarrow cannot type a column holding 0, "0" and false: read as the user wrote it, it is text.
    rows = [{"problem": "a", "answer": 0}, {"problem": "b", "answer": "0"}, {"problem": "c", "answer": False}]
    assert load_math_dataset(write_rows(tmp_path / "mixed.jsonl", rows))["answer"] == ["0", "0", "false"]
    rows.append({"problem": "d", "answer": {"value": 1}})
    with pytest.raises(UserError, match=r"object.jsonl:4: 'answer': an object \({'value': 1}\) is not an answer"):
        load_math_dataset(write_rows(tmp_path / "object.jsonl", rows))


def test_every_column_reaches_the_trainer_as_written(tmp_path):
    rows = [
        {"question": "Compute 1+1.", "final": 2, "difficulty": 3, "meta": {"source": "x", "gold": "2"}},
        {"question": "Compute 2+2.", "final": 4, "difficulty": 5, "meta": {"source": "y", "gold": "4"}},
    ]
    path = write_rows(tmp_path / "extra.jsonl", rows)
    ds = load_math_dataset(path, column_mapping={"problem": "question", "answer": "final", "solution": None})
    assert ds.column_names == [*OUTPUT_COLUMNS, "question", "final", "difficulty", "meta"]
    assert ds["difficulty"] == [3, 5] and ds["meta"][1] == {"source": "y", "gold": "4"}
    assert ds["answer"] == ["2", "4"] and ds["final"] == ["2", "4"]  # the gold column, as text once
    nested = load_math_dataset(path, column_mapping={"problem": "question", "answer": "meta.gold", "solution": None})
    assert nested["answer"] == ["2", "4"] and nested["final"] == [2, 4]


def test_a_column_of_mixed_types_is_named(tmp_path):
    rows = [{"problem": "a", "answer": "1", "difficulty": 3}, {"problem": "b", "answer": "2", "difficulty": "hard"}]
    with pytest.raises(UserError, match=r"column 'difficulty' mixes value types \(int, str\)"):
        load_math_dataset(write_rows(tmp_path / "types.jsonl", rows))
    rows = [{"problem": "a", "answer": "1", "id": 2**70}]  # beyond int64: only a gold becomes text by itself
    with pytest.raises(UserError, match=r"huge.jsonl: column 'id' cannot be stored as one table column"):
        load_math_dataset(write_rows(tmp_path / "huge.jsonl", rows))


def test_empty_solutions_are_counted_and_over_the_limit_refused(tmp_path, caplog):
    rows = [
        {"problem": "a", "answer": "1", "solution": "worked 1"},
        {"problem": "b", "answer": "2", "solution": ""},
        {"problem": "c", "answer": "3", "solution": None},
        {"problem": "d", "answer": "4", "solution": "  "},
    ]
    path = write_rows(tmp_path / "solutions.jsonl", rows)
    counts = LoadCounts()
    with caplog.at_level(logging.WARNING, logger="egrsd.data"):
        ds = load_math_dataset(path, counts=counts)
    assert ds["solution"] == ["worked 1", "2", "3", "4"]  # the answer stands in for an empty solution
    assert counts.empty_solutions == 3
    assert "3 of 4 rows (75%) have an empty 'solution'" in caplog.text
    assert len(load_math_dataset(path, max_empty_solution_frac=0.75)) == 4  # at the limit: accepted
    with pytest.raises(UserError, match=r"3 of 4 rows \(75%\) have an empty 'solution', above dataset_max_empty"):
        load_math_dataset(path, max_empty_solution_frac=0.5)
    opted_out = load_math_dataset(path, column_mapping={"solution": None}, max_empty_solution_frac=0.5)
    assert opted_out["solution"] == ["1", "2", "3", "4"]


def test_no_usable_row_is_an_error_that_says_why(tmp_path):
    rows = [{"problem": "a", "answer": ""}, {"problem": "b", "answer": None}, {"problem": " ", "answer": "3"}]
    path = write_rows(tmp_path / "unusable.jsonl", rows)
    with pytest.raises(UserError) as error:
        load_math_dataset(path)
    assert "unusable.jsonl: no usable rows — of 3, dropped 2 with an empty or null gold answer; 1 with an empty " in (
        str(error.value)
    )
    for max_samples in (0, -1):
        with pytest.raises(UserError, match=f"max_samples={max_samples} keeps no rows"):
            load_math_dataset(path, max_samples=max_samples)


def test_the_testbed_set_honours_max_samples():
    assert len(load_math_dataset("testbed-arithmetic", max_samples=5)) == 5
    assert len(load_math_dataset("testbed-arithmetic", split="test")) == 200
    with pytest.raises(UserError, match="max_samples=0 keeps no rows"):
        load_math_dataset("testbed-arithmetic", max_samples=0)


def test_a_list_gold_is_a_multi_part_answer_for_the_grader(tmp_path):
    from egrsd.rewards import grade_batch

    gold = load_math_dataset(write_rows(tmp_path / "list.jsonl", [{"problem": "Roots?", "answer": [1, 2]}]))[0][
        "answer"
    ]
    answers = [
        "\\boxed{1, 2}",
        "\\boxed{1}, \\boxed{2}",
        "\\boxed{(1, 2)}",
        "\\boxed{2, 1}",
        "\\boxed{1}",
        "\\boxed{3}",
    ]
    completions = [f"<think>roots</think> {answer}" for answer in answers]
    assert gold == "1, 2"
    assert [score for score, _ in grade_batch(completions, [gold] * len(answers))] == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
