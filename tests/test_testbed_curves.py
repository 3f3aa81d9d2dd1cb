"""Learning curves: TRL's eval loop on a held-out split during training, and `bench/testbed_curves.py` on it."""

import json

import pytest
from helpers import digit_reward, load_bench, tiny_training_settings


def test_eval_logs_rewards_and_lengths_without_the_teacher(tmp_path, tiny_model_dir, tokenizer, arith_dataset):
    from egrsd.configs import EGRSDConfig
    from egrsd.trainer import EGRSDTrainer

    settings = tiny_training_settings(tmp_path, credit_method="cl_egrsd", eval_strategy="steps", eval_steps=1)
    trainer = EGRSDTrainer(
        model=tiny_model_dir,
        reward_funcs=digit_reward,
        args=EGRSDConfig(**settings, num_generations_eval=2, per_device_eval_batch_size=8),
        train_dataset=arith_dataset,
        eval_dataset=arith_dataset.select(range(4)),
        processing_class=tokenizer,
    )
    metrics = trainer.evaluate()
    assert trainer.teacher.scoring_passes == 0
    assert metrics["eval_completions/mean_length"] > 0 and "eval_rewards/digit_reward/mean" in metrics
    assert not [key for key in metrics if key.startswith(("eval_credit/", "eval_teacher/"))]


def test_eval_split_is_capped_to_the_same_rows_for_every_seed():
    from egrsd.configs import EGRSDConfig, EGRSDScriptArguments
    from egrsd.data import load_math_dataset
    from egrsd.train import load_datasets

    script_args = EGRSDScriptArguments(dataset_name="testbed-arithmetic", dataset_test_max_samples=5)
    held_out = load_math_dataset("testbed-arithmetic", split="test")["problem"][:5]
    for seed in (0, 3):
        training_args = EGRSDConfig(output_dir="unused", eval_strategy="steps", seed=seed, use_cpu=True)
        train, evaluation = load_datasets(script_args, training_args)
        assert evaluation["problem"] == held_out and len(train) == 2000
    _, evaluation = load_datasets(script_args, EGRSDConfig(output_dir="unused", use_cpu=True))
    assert evaluation is None


def record(method, seed, step, accuracy, tokens):
    return {"method": method, "seed": seed, "step": step, "accuracy": accuracy, "mean_tokens": tokens}


def test_table_reads_the_mean_curves():
    curves = load_bench("testbed_curves")
    records = [
        # base: accuracy 0.70, 150 tokens (both seeds of both methods at step 0)
        *(record(m, s, 0, 0.70, 150.0) for m in ("opsd", "cl_egrsd") for s in (0, 1)),
        # opsd reaches 0.4x = 60 tokens at step 10 but at 0.60 < 0.68; by step 20 it has 0.64, still too low
        record("opsd", 0, 10, 0.62, 50.0), record("opsd", 1, 10, 0.58, 54.0),
        record("opsd", 0, 20, 0.66, 40.0), record("opsd", 1, 20, 0.62, 44.0),
        # cl_egrsd: 60 tokens at 0.69 at step 20 (the goal), its lowest (0.65) at step 10
        record("cl_egrsd", 0, 10, 0.66, 100.0), record("cl_egrsd", 1, 10, 0.64, 90.0),
        record("cl_egrsd", 0, 20, 0.70, 58.0), record("cl_egrsd", 1, 20, 0.68, 62.0),
    ]  # fmt: skip
    markdown, table, _ = curves.summarize(records, ["opsd", "cl_egrsd"])
    assert table["base"] == {"accuracy": pytest.approx(0.70), "mean_tokens": 150.0}
    assert table["opsd"]["steps_to_target"] is None and table["cl_egrsd"]["steps_to_target"] == 20
    assert table["opsd"]["lowest_accuracy"] == pytest.approx(0.60) and table["opsd"]["lowest_accuracy_step"] == 10
    assert table["cl_egrsd"]["lowest_accuracy"] == pytest.approx(0.65)
    assert table["cl_egrsd"]["final_relative_tokens"] == pytest.approx(0.4)
    assert table["opsd"]["final_accuracy_sd"] == pytest.approx(0.04 / 2**0.5)
    assert "| opsd | not reached | 60.0 (10) | 20 | 64.0 ± 2.8 | 42 | 0.28 |" in markdown
    assert "| cl_egrsd | 20 | 65.0 (10) | 20 | 69.0 ± 1.4 | 60 | 0.40 |" in markdown


def test_rejects_one_sample_and_a_last_step_off_the_eval_grid():
    curves = load_bench("testbed_curves")
    with pytest.raises(SystemExit):
        curves.parse_args(["--num-samples", "1"])
    with pytest.raises(SystemExit):
        curves.parse_args(["--max-steps", "25", "--eval-steps", "10"])


def test_curves_bench_tiny_run(tmp_path, tiny_model_dir, capsys):
    """Two methods, one seed, 2 steps, 4 held-out problems x 2 samples, the smoke-test-sized model."""
    curves = load_bench("testbed_curves")
    output_dir = tmp_path / "curves"
    curves.main(
        ["--methods", "grpo", "cl_egrsd", "--seeds", "0", "--max-steps", "2", "--eval-steps", "1"]
        + ["--max-problems", "4", "--num-samples", "2", "--parallel", "2", "--output-dir", str(output_dir)]
        + ["--model", tiny_model_dir, "--train-args", "--max_completion_length", "12"]
        + ["--per_device_train_batch_size", "8", "--num_generations", "4"]
        + ["--teacher_skip_zero_advantage", "false"]  # the random model's groups are flat: score them anyway
    )
    records = json.loads((output_dir / "curves.json").read_text())["records"]
    assert sorted((r["method"], r["step"]) for r in records) == [
        (method, step) for method in ("cl_egrsd", "grpo") for step in (0, 1, 2)
    ]
    for point in records:
        assert {"method", "seed", "step", "accuracy", "mean_tokens"} <= set(point) and point["seed"] == 0
        assert 0.0 <= point["accuracy"] <= 1.0 and 0 < point["mean_tokens"] <= 12
    assert (output_dir / "curves.png").stat().st_size > 0
    table = (output_dir / "curves.md").read_text()
    assert table.count("\n| grpo |") == 1 and table.count("\n| cl_egrsd |") == 1 and table in capsys.readouterr().out
    # In eval the teacher is skipped: cl_egrsd scored one generation batch per training step, none per evaluation.
    assert "teacher scoring passes: 2;" in (output_dir / "cl_egrsd-seed0-train.log").read_text()
