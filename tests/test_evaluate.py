"""Evaluation: exact metrics on hand-built samples, benchmark loading, and an end-to-end CPU run on a tiny model."""

import json
import sys
import types
from itertools import combinations
from math import comb
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import FIXTURES

from egrsd.eval import EvalConfig, evaluate
from egrsd.eval.benchmarks import (
    BENCHMARKS,
    DEFAULT_INSTRUCTION,
    build_messages,
    gsm8k_final_answer,
    load_benchmark,
    parse_local_spec,
    split_benchmark_names,
)
from egrsd.eval.cli import build_parser, config_from_args, main
from egrsd.eval.generation import Generation
from egrsd.eval.metrics import average_metrics, pass_at_k, summarize
from egrsd.eval.run import grade_completions
from egrsd.eval.tokens import count_thinking_tokens, cut_at_eos, prompt_opens_thinking, render_prompt_ids
from egrsd.eval.vllm_generation import generate_with_vllm
from egrsd.testbed.tokenizer import build_tokenizer


BENCHMARKS_DIR = FIXTURES / "benchmarks"
TINY_ARITH = BENCHMARKS_DIR / "tiny_arith.jsonl"
MAPPED = BENCHMARKS_DIR / "tiny_arith_mapped.json"
OPEN, CLOSE = 101, 102  # stand-ins for the <think> and </think> ids


# ----------------------------------------------------------------------------------------------------------------
# pass@k


def pass_at_k_by_enumeration(n: int, c: int, k: int) -> float:
    """Fraction of k-subsets of n samples (the first c correct) that contain a correct sample."""
    subsets = list(combinations(range(n), k))
    return sum(any(i < c for i in subset) for subset in subsets) / len(subsets)


@pytest.mark.parametrize(
    "n, c, k",
    [(4, 0, 1), (4, 0, 4), (4, 4, 1), (4, 4, 4), (5, 2, 1), (5, 2, 3), (5, 3, 3), (6, 1, 2), (8, 3, 4), (10, 3, 5)],
)
def test_pass_at_k_matches_closed_form(n, c, k):
    closed_form = 1.0 - comb(n - c, k) / comb(n, k)  # comb(n - c, k) is 0 when n - c < k
    assert pass_at_k(n, c, k) == pytest.approx(closed_form, abs=1e-12)
    assert pass_at_k(n, c, k) == pytest.approx(pass_at_k_by_enumeration(n, c, k), abs=1e-12)


def test_pass_at_k_edge_cases():
    assert pass_at_k(4, 0, 2) == 0.0  # c = 0
    assert pass_at_k(4, 4, 2) == 1.0  # c = n
    assert pass_at_k(5, 3, 3) == 1.0  # n - c < k: every 3-subset holds a correct sample
    assert pass_at_k(5, 2, 1) == pytest.approx(2 / 5)  # pass@1 is c / n
    for n, c, k in [(4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)]:
        with pytest.raises(ValueError):
            pass_at_k(n, c, k)


# ----------------------------------------------------------------------------------------------------------------
# Token counts


def test_count_thinking_tokens():
    # Generation prompt opened the block: count up to the first </think>, excluding it.
    assert count_thinking_tokens([5, 6, 7, CLOSE, 8, 9], OPEN, CLOSE, open_at_start=True) == 3
    assert count_thinking_tokens([CLOSE, 8], OPEN, CLOSE, open_at_start=True) == 0
    # Never closed: the whole completion is thinking.
    assert count_thinking_tokens([5, 6, 7, 8], OPEN, CLOSE, open_at_start=True) == 4
    assert count_thinking_tokens([], OPEN, CLOSE, open_at_start=True) == 0
    # Only the first </think> ends the block.
    assert count_thinking_tokens([5, CLOSE, 6, CLOSE], OPEN, CLOSE, open_at_start=True) == 1
    # Prompt left the block closed (or never opened it): the model may open one itself.
    assert count_thinking_tokens([OPEN, 5, 6, CLOSE, 7], OPEN, CLOSE, open_at_start=False) == 2
    assert count_thinking_tokens([4, OPEN, 5, 6], OPEN, CLOSE, open_at_start=False) == 2
    assert count_thinking_tokens([5, 6, 7], OPEN, CLOSE, open_at_start=False) == 0
    # A tokenizer without thinking tokens.
    assert count_thinking_tokens([5, 6, 7], None, None, open_at_start=False) == 0


def test_prompt_opens_thinking_follows_the_chat_template():
    tokenizer = build_tokenizer()
    vocab = tokenizer.get_vocab()
    open_id, close_id = vocab["<think>"], vocab["</think>"]
    problem = load_benchmark(str(TINY_ARITH))[1][:1]
    (thinking,) = render_prompt_ids(tokenizer, problem, DEFAULT_INSTRUCTION, None, enable_thinking=True)
    (plain,) = render_prompt_ids(tokenizer, problem, DEFAULT_INSTRUCTION, None, enable_thinking=False)
    assert prompt_opens_thinking(thinking, open_id, close_id)
    assert not prompt_opens_thinking(plain, open_id, close_id)
    assert not prompt_opens_thinking([1, 2, 3], None, None)
    # Rendered as training does: the chat template with the generation prompt, tokenized without extra specials.
    text = tokenizer.apply_chat_template(
        build_messages(problem[0].problem), tokenize=False, add_generation_prompt=True, enable_thinking=True
    )
    assert tokenizer.decode(thinking) == text
    assert text.endswith("<|im_start|>assistant\n<think>\n")


def test_cut_at_eos():
    assert cut_at_eos([5, 6, 2, 0, 0], eos_ids=[2]) == ([5, 6], True)
    assert cut_at_eos([5, 6, 7], eos_ids=[2]) == ([5, 6, 7], False)
    assert cut_at_eos([9, 5, 2], eos_ids=[2, 9]) == ([], True)


# ----------------------------------------------------------------------------------------------------------------
# summarize


def sample(prompt_id, correct, tokens, thinking, truncated, score=...):
    record = {
        "prompt_id": prompt_id,
        "correct": correct,
        "completion_tokens": tokens,
        "thinking_tokens": thinking,
        "truncated": truncated,
    }
    if score is not ...:
        record["score"] = score
    return record


def test_summarize_hand_built():
    samples = [
        # p1: 2 of 4 correct
        sample("p1", True, 10, 6, False),
        sample("p1", False, 20, 20, True),
        sample("p1", True, 30, 25, False),
        sample("p1", False, 40, 40, True),
        # p2: 0 of 4 correct, one ungradable gold
        sample("p2", False, 5, 0, False),
        sample("p2", False, 15, 10, False),
        sample("p2", False, 25, 20, False, score=None),
        sample("p2", False, 35, 30, False, score=0.0),
    ]
    metrics = summarize(samples)
    assert metrics["num_problems"] == 2
    assert metrics["num_samples"] == 8
    assert metrics["k"] == 4
    assert metrics["accuracy"] == pytest.approx((2 / 4 + 0 / 4) / 2)
    assert metrics["pass@1"] == pytest.approx(metrics["accuracy"])
    assert metrics["pass@k"] == pytest.approx((1.0 + 0.0) / 2)
    assert metrics["mean_completion_tokens"] == pytest.approx(180 / 8)
    assert metrics["median_completion_tokens"] == pytest.approx((20 + 25) / 2)
    assert metrics["mean_thinking_tokens"] == pytest.approx(151 / 8)
    assert metrics["truncation_rate"] == pytest.approx(2 / 8)
    assert metrics["ungradable_samples"] == 1


def test_summarize_leaves_problems_with_an_ungradable_gold_out_of_accuracy():
    samples = [sample("a", True, 10, 0, False, score=1.0), sample("a", False, 20, 0, False, score=0.0)]
    samples += [sample("bad-gold", False, 30, 0, True, score=None), sample("bad-gold", False, 40, 0, True, score=None)]
    metrics = summarize(samples)
    assert metrics["num_problems"] == 2 and metrics["ungradable_samples"] == 2
    assert metrics["accuracy"] == pytest.approx(0.5)  # problem "a" only, not (0.5 + 0) / 2
    assert metrics["pass@k"] == pytest.approx(1.0)
    assert metrics["mean_completion_tokens"] == pytest.approx(25.0)  # lengths count every sample
    assert metrics["truncation_rate"] == pytest.approx(0.5)
    assert summarize(samples[2:])["accuracy"] == 0.0  # nothing gradable


def test_summarize_k_and_unequal_counts():
    samples = [sample("a", True, 1, 0, False), sample("a", False, 1, 0, False), sample("a", False, 1, 0, False)]
    samples += [sample("b", True, 3, 0, False), sample("b", True, 3, 0, False)]
    metrics = summarize(samples)
    assert metrics["k"] == 2  # the fewest samples any problem has
    assert metrics["accuracy"] == pytest.approx((1 / 3 + 1) / 2)
    assert metrics["pass@k"] == pytest.approx((pass_at_k(3, 1, 2) + 1.0) / 2)
    assert summarize(samples, k=1)["pass@k"] == pytest.approx(metrics["pass@1"])
    with pytest.raises(ValueError):
        summarize([])


def test_average_metrics_is_a_macro_average():
    first = summarize([sample("a", True, 10, 5, False), sample("b", False, 30, 30, True)])
    second = summarize([sample("c", True, 100, 50, False)])
    average = average_metrics({"first": first, "second": second})
    assert average["accuracy"] == pytest.approx((0.5 + 1.0) / 2)
    assert average["mean_completion_tokens"] == pytest.approx((20 + 100) / 2)
    assert average["truncation_rate"] == pytest.approx((0.5 + 0.0) / 2)
    assert average["num_problems"] == 3
    assert average["k"] == 1
    assert average["benchmarks"] == ["first", "second"]


# ----------------------------------------------------------------------------------------------------------------
# Benchmarks


def test_registry_names_the_hub_datasets():
    datasets = {name: spec.dataset for name, spec in BENCHMARKS.items()}
    assert datasets["math500"] == "HuggingFaceH4/MATH-500"
    assert datasets["gsm8k"] == "openai/gsm8k" and BENCHMARKS["gsm8k"].config == "main"
    assert datasets["hmmt_feb_2025"] == "MathArena/hmmt_feb_2025"
    assert {"aime2024", "aime2025", "minerva_math"} <= set(datasets)
    assert gsm8k_final_answer("She pays 2 * 600 = 1,200 dollars.\n#### 1,200") == "1200"


def test_split_and_parse_local_specs():
    value = "math500, data/x.jsonl:problem=question,answer=final,id=uid ,aime2024,y.parquet"
    assert split_benchmark_names(value) == [
        "math500",
        "data/x.jsonl:problem=question,answer=final,id=uid",
        "aime2024",
        "y.parquet",
    ]
    assert parse_local_spec("data/x.jsonl:problem=question,answer=final") == (
        Path("data/x.jsonl"),
        {"problem": "question", "answer": "final"},
    )
    assert parse_local_spec("data/x.jsonl") == (Path("data/x.jsonl"), {})
    with pytest.raises(ValueError, match="key=column"):
        parse_local_spec("x.jsonl:question=problem")


def test_load_local_benchmarks(tmp_path):
    name, problems, source = load_benchmark(str(TINY_ARITH))
    assert name == "tiny_arith" and len(problems) == 6
    assert (problems[0].id, problems[0].problem, problems[0].answer) == ("add-1", "Compute 3+4.", "7")
    assert source["columns"] == {"problem": "problem", "answer": "answer", "id": "id"}
    # --max-problems keeps the first rows.
    assert [p.id for p in load_benchmark(str(TINY_ARITH), max_problems=2)[1]] == ["add-1", "add-2"]
    # No id column: ids are row indices.
    assert [p.id for p in load_benchmark(f"{MAPPED}:problem=question,answer=final")[1]] == ["0", "1", "2"]

    name, problems, _ = load_benchmark(f"{MAPPED}:problem=question,answer=final,id=uid")
    assert name == "tiny_arith_mapped"
    assert [(p.id, p.problem, p.answer) for p in problems][0] == ("10", "What is 6+1?", "7")

    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = tmp_path / "numbers.parquet"
    pq.write_table(pa.table({"question": ["What is 1+1?"], "final": [2]}), parquet)
    (problem,) = load_benchmark(f"{parquet}:problem=question,answer=final")[1]
    assert (problem.problem, problem.answer) == ("What is 1+1?", "2")

    with pytest.raises(ValueError, match="available columns"):
        load_benchmark(f"{MAPPED}:problem=prompt")


def test_unknown_benchmark_lists_known_names_and_the_file_form():
    with pytest.raises(ValueError) as error:
        load_benchmark("math501")
    message = str(error.value)
    assert "math500" in message and "aime2024" in message and "path/to/file.jsonl" in message
    with pytest.raises(FileNotFoundError):
        load_benchmark("missing.jsonl")


def test_cli_rejects_an_unknown_benchmark_before_loading_anything(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", "no/such-model", "--benchmarks", "math500,gsm9k"])
    assert exit_info.value.code == 2
    assert "Unknown benchmark 'gsm9k'" in capsys.readouterr().err


def test_messages_follow_the_training_format():
    assert build_messages("Compute 3+4.") == [{"role": "user", "content": f"Compute 3+4.\n\n{DEFAULT_INSTRUCTION}"}]
    assert build_messages("Q", instruction="", system_prompt="Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Q"},
    ]
    assert DEFAULT_INSTRUCTION == "Please reason step by step, and put your final answer within \\boxed{}."


# ----------------------------------------------------------------------------------------------------------------
# Grading and the vLLM backend


def test_grade_completions_uses_the_shared_grader():
    completions = ["<think>\n3+4\n</think>\n\n\\boxed{7}", "<think>\n</think>\n\n\\boxed{8}", "<think>\nno end"]
    grades = grade_completions(completions, ["7", "7", "7"], chunk_size=2)
    assert [score for score, _ in grades] == [1.0, 0.0, 0.0]
    assert [extracted for _, extracted in grades] == ["7", "8", None]


def test_vllm_backend_against_a_stand_in_engine(monkeypatch):
    """vLLM cannot run here; a stand-in module checks the calls we make and how its outputs are read."""
    calls = {}

    class StandInSamplingParams:
        def __init__(self, **kwargs):
            calls["sampling"] = kwargs

    class StandInLLM:
        def __init__(self, model, **kwargs):
            calls["llm"] = {"model": model, **kwargs}

        def generate(self, prompts, sampling_params=None):
            calls["prompts"] = prompts
            # Completions arrive in any order; `index` says which sample each is. A stop token is kept in token_ids.
            stopped = SimpleNamespace(index=1, token_ids=[7, 8, 2], finish_reason="stop")
            cut = SimpleNamespace(index=0, token_ids=[5, 6, 9], finish_reason="length")
            return [SimpleNamespace(outputs=[stopped, cut]) for _ in prompts]

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = StandInLLM, StandInSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    config = EvalConfig(model="some/model", benchmarks=[], num_samples=2, max_new_tokens=3, seed=5, top_k=0)
    generations = generate_with_vllm(config, [[1, 2], [3]], eos_ids=[2])
    assert generations == [[Generation([5, 6, 9], truncated=True), Generation([7, 8], truncated=False)]] * 2
    assert calls["prompts"] == [{"prompt_token_ids": [1, 2]}, {"prompt_token_ids": [3]}]
    assert calls["sampling"] == {
        "n": 2,
        "temperature": 0.6,
        "top_p": 0.95,
        "top_k": -1,  # top-k off
        "max_tokens": 3,
        "stop_token_ids": [2],
        "detokenize": False,
    }
    assert calls["llm"] == {
        "model": "some/model",
        "tensor_parallel_size": 1,
        "gpu_memory_utilization": 0.9,
        "seed": 5,
    }


def test_vllm_data_parallel_needs_enough_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    config = EvalConfig(model="m", benchmarks=[], data_parallel_size=2, tensor_parallel_size=1)
    with pytest.raises(ValueError, match="needs 2 GPUs, found 1"):
        generate_with_vllm(config, [[1], [2]], eos_ids=[2])


# ----------------------------------------------------------------------------------------------------------------
# End to end on CPU


RESULT_KEYS = {
    "model",
    "backend",
    "date",
    "num_samples",
    "max_new_tokens",
    "sampling",
    "prompt",
    "versions",
    "config",
    "benchmark_sources",
    "benchmarks",
    "average",
    "samples_file",
}
METRIC_KEYS = {
    "num_problems",
    "num_samples",
    "k",
    "accuracy",
    "pass@1",
    "pass@k",
    "mean_completion_tokens",
    "median_completion_tokens",
    "mean_thinking_tokens",
    "truncation_rate",
    "ungradable_samples",
}
SAMPLE_KEYS = {
    "benchmark",
    "prompt_id",
    "sample_index",
    "completion_tokens",
    "thinking_tokens",
    "truncated",
    "correct",
    "score",
    "extracted_answer",
    "gold",
    "completion",
}


def test_cli_maps_every_option_to_the_config():
    argv = ["--model", "m", "--benchmarks", "math500, tiny.jsonl:problem=q", "--num-samples", "4"]
    argv += ["--max-new-tokens", "64", "--temperature", "1", "--top-p", "0.5", "--top-k", "0", "--backend", "vllm"]
    argv += ["--tensor-parallel-size", "2", "--data-parallel-size", "3", "--batch-size", "5", "--max-problems", "6"]
    argv += ["--seed", "7", "--output-dir", "out", "--no-enable-thinking", "--system-prompt", "S"]
    argv += ["--instruction", "I", "--gpu-memory-utilization", "0.5", "--max-model-len", "99"]
    assert config_from_args(build_parser().parse_args(argv)) == EvalConfig(
        model="m",
        benchmarks=["math500", "tiny.jsonl:problem=q"],
        num_samples=4,
        max_new_tokens=64,
        temperature=1.0,
        top_p=0.5,
        top_k=0,
        backend="vllm",
        tensor_parallel_size=2,
        data_parallel_size=3,
        batch_size=5,
        max_problems=6,
        seed=7,
        output_dir="out",
        enable_thinking=False,
        system_prompt="S",
        instruction="I",
        gpu_memory_utilization=0.5,
        max_model_len=99,
    )
    # The defaults are the config's.
    assert config_from_args(build_parser().parse_args(["--model", "m", "--benchmarks", "math500"])) == EvalConfig(
        model="m", benchmarks=["math500"]
    )


def test_end_to_end_transformers_backend(tiny_model_dir, tmp_path):
    budget, k = 24, 2
    output_dir = tmp_path / "eval"
    config = EvalConfig(
        model=str(tiny_model_dir),
        benchmarks=[str(TINY_ARITH), f"{MAPPED}:problem=question,answer=final,id=uid"],
        num_samples=k,
        max_new_tokens=budget,
        backend="transformers",
        batch_size=8,
        seed=0,
        output_dir=str(output_dir),
    )
    returned = evaluate(config)
    assert returned.pop("output_dir") == str(output_dir)

    results = json.loads((output_dir / "results.json").read_text())
    assert results == returned
    assert set(results) == RESULT_KEYS
    assert results["backend"] == "transformers"
    assert (results["num_samples"], results["max_new_tokens"]) == (k, budget)
    assert results["sampling"] == {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "seed": 0}
    assert results["prompt"]["enable_thinking"] is True
    assert results["config"]["benchmarks"][1] == f"{MAPPED}:problem=question,answer=final,id=uid"
    assert {"torch", "transformers", "trl", "vllm", "math-verify", "egrsd"} <= set(results["versions"])
    assert results["versions"]["egrsd"] is not None
    assert list(results["benchmarks"]) == ["tiny_arith", "tiny_arith_mapped"]
    for metrics in [*results["benchmarks"].values(), results["average"]]:
        assert METRIC_KEYS <= set(metrics)
        assert 0.0 <= metrics["accuracy"] <= metrics["pass@k"] <= 1.0
        assert 0 <= metrics["mean_thinking_tokens"] <= metrics["mean_completion_tokens"] <= budget
    assert results["benchmarks"]["tiny_arith"]["num_samples"] == 6 * k
    assert results["average"]["num_problems"] == 6 + 3

    lines = (output_dir / "samples.jsonl").read_text().splitlines()
    samples = [json.loads(line) for line in lines]
    assert len(samples) == (6 + 3) * k
    for record in samples:
        assert set(record) == SAMPLE_KEYS
        assert 0 <= record["thinking_tokens"] <= record["completion_tokens"] <= budget
        # Truncated means the budget ran out before an end-of-sequence token (which is not counted).
        assert record["truncated"] == (record["completion_tokens"] == budget)
        assert record["correct"] == (record["score"] == 1.0)
    assert {(s["prompt_id"], s["sample_index"]) for s in samples if s["benchmark"] == "tiny_arith"} == {
        (pid, i) for pid in ("add-1", "add-2", "sub-1", "mul-1", "add-3", "sub-2") for i in range(k)
    }
    # The summary is recomputable from the per-sample file.
    tiny = [s for s in samples if s["benchmark"] == "tiny_arith"]
    assert summarize(tiny, k=k) == results["benchmarks"]["tiny_arith"]
