"""Smoke runs of the bench scripts at their tiniest sizes: they run end to end and write the documented JSON."""

import json
import math

import pytest
from helpers import load_bench


def positive_finite(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_step_time_writes_medians_and_ratios(tmp_path):
    step_time = load_bench("step_time")
    path = tmp_path / "step_time.json"
    step_time.main(
        ["--tiny", "--repeats", "1", "--warmup", "0", "--max-completion-length", "4", "--batch", "2"]
        + ["--num-generations", "2", "--json", str(path)]
    )
    result = json.loads(path.read_text())
    methods = {"grpo", "rlsd", "egrsd", "cl_egrsd", "trl_sdpo"}
    assert set(result["median_s"]) == methods and set(result["ratio_to_grpo"]) == methods
    assert all(positive_finite(result["median_s"][m]) for m in methods)
    assert result["ratio_to_grpo"]["grpo"] == 1.0
    for method in methods:
        parts = result["breakdown_s"][method]
        assert parts["rollout"] > 0 and parts["step_time"] > 0
        assert (parts["teacher"] > 0) == (method != "grpo")


def test_step_time_with_flat_groups_compares_skipping(capsys, monkeypatch):
    step_time = load_bench("step_time")
    # Distinct rewards outside the flat groups (4 tokens of a random tiny model may repeat, and so may their hash).
    monkeypatch.setattr(step_time, "hashed_reward", lambda completions, **kwargs: list(range(len(completions))))
    result = step_time.main(
        ["--tiny", "--repeats", "1", "--warmup", "0", "--max-completion-length", "4", "--batch", "2"]
        + ["--num-generations", "2", "--methods", "grpo", "egrsd", "--flat-share", "0.5"]
    )
    assert list(result["median_s"]) == ["grpo", "egrsd", "egrsd_noskip"]
    # One group of two is flat: with skipping the teacher scores the other group's rollouts only.
    assert result["rows_scored_frac"] == {"grpo": None, "egrsd": 0.5, "egrsd_noskip": 1.0}
    assert positive_finite(result["skip_teacher_ratio"]["egrsd"]) and positive_finite(
        result["skip_step_ratio"]["egrsd"]
    )
    assert "egrsd: skipping flat groups' rollouts takes" in capsys.readouterr().out
    with pytest.raises(SystemExit) as error:
        step_time.parse_args(["--flat-share", "1.5"])
    assert error.value.code == 2
    assert "'1.5' is not a share" in capsys.readouterr().err


def test_step_time_teacher_backends_name_their_trainers(capsys):
    step_time = load_bench("step_time")
    both = step_time.trainer_methods(["grpo", "egrsd"], flat=False, teacher_backends=("trainer", "vllm"))
    assert both == ["grpo", "egrsd", "egrsd_vllm_teacher"]
    assert step_time.trainer_methods(["grpo", "egrsd"], flat=False, teacher_backends=("vllm",)) == [
        "grpo",
        "egrsd_vllm_teacher",
    ]
    with pytest.raises(SystemExit) as error:
        step_time.parse_args(["--teacher-backend", "vllm"])
    assert error.value.code == 2
    assert "add --vllm" in capsys.readouterr().err


def test_teacher_memory_writes_rows(tmp_path):
    teacher_memory = load_bench("teacher_memory")
    path = tmp_path / "teacher_memory.json"
    teacher_memory.main(
        ["--lengths", "48", "--vocab", "300", "--hidden", "16", "--prompt-length", "8", "--in-process"]
        + ["--json", str(path)]
    )
    (row,) = json.loads(path.read_text())["rows"]
    assert row["T"] == 48 and row["V"] == 300
    assert row["peak_extra_mb"] >= 0 and row["naive_peak_extra_mb"] >= 0 and row["seconds"] > 0
    assert row["dense_attention_mask"] is False  # one all-ones sequence: SDPA's causal kernel, no T x T mask
    assert row["prompt_cache_peak_extra_mb"] >= 0 and row["prompt_cache_seconds"] > 0
    assert row["prompt_cache_dense_attention_mask"] is True  # completion queries against prompt + completion keys


def test_teacher_memory_skips_naive_above_the_limit(tmp_path):
    teacher_memory = load_bench("teacher_memory")
    result = teacher_memory.main(
        ["--lengths", "16", "--vocab", "300", "--hidden", "16", "--prompt-length", "4", "--in-process"]
        + ["--naive-limit-gb", "1e-9"]
    )
    assert result["rows"][0]["naive_peak_extra_mb"] is None


def test_gpu_step_tiny_runs_on_cpu(tmp_path):
    gpu_step = load_bench("gpu_step")
    path = tmp_path / "gpu_step.json"
    gpu_step.main(["--tiny", "--json", str(path)])
    result = json.loads(path.read_text())
    assert set(result["median_s"]) == {"grpo", "egrsd"} and result["ratio_to_grpo"]["grpo"] == 1.0
    assert result["breakdown_s"]["egrsd"]["teacher"] > 0 and result["breakdown_s"]["grpo"]["teacher"] == 0


def test_gpu_step_stops_at_its_budget_and_still_reports(tmp_path):
    gpu_step = load_bench("gpu_step")
    result = gpu_step.main(["--tiny", "--steps", "3", "--budget-s", "0"])
    assert {method: len(samples) for method, samples in result["samples_s"].items()} == {"grpo": 1, "egrsd": 1}
