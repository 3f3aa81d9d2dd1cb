import json
import logging
import os

import datasets
import pytest
from helpers import FIXTURES

from egrsd.data import (
    DATASET_REGISTRY,
    DEFAULT_INSTRUCTION,
    OUTPUT_COLUMNS,
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
    assert ds.column_names == OUTPUT_COLUMNS
    assert len(ds) == 3


def test_dapo_layout(caplog):
    with caplog.at_level(logging.INFO, logger="egrsd.data"):
        ds = load_math_dataset(fixture("dapo-math-17k.jsonl"), layout="dapo-math-17k")
    assert ds.column_names == OUTPUT_COLUMNS
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
    assert "dropped 1 of 5 rows" in caplog.text
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
    assert ds.column_names == OUTPUT_COLUMNS  # the large generations/messages columns are gone
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
