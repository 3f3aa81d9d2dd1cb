"""Under DeepSpeed ZeRO-3 on 2 CPU processes: teacher skipping (equal teacher forwards, one H_ref over both ranks),
and the base and EMA teachers."""

import json
import math

import pytest
from helpers import TESTS, console_script, run_command


WORKER = str(TESTS / "teacher_skip_worker.py")


def quantile(values, q=0.95):
    """The q-quantile as H_ref defines it: the ceil(q * n)-th smallest value."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def test_ranks_agree_on_teacher_forwards_and_h_ref_under_zero3(tmp_path):
    command = [console_script("accelerate"), "launch", "--config_file", "launch/accelerate/cpu_zero3.yaml"]
    result = run_command([*command, WORKER, str(tmp_path)], timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["steps"] for r in ranks] == [2, 2]

    # Step 1: rank 0 only flat groups, rank 1 none; step 2: rank 0 one flat group of two.
    first, second = ([r["batches"][step] for r in ranks] for step in (0, 1))
    assert all(a == 0 for a in first[0]["advantages"]) and not any(first[0]["teacher_scored"])
    assert all(a != 0 for a in first[1]["advantages"]) and all(first[1]["teacher_scored"])
    assert second[0]["teacher_scored"] == [a != 0 for a in second[0]["advantages"]]
    assert sum(second[0]["teacher_scored"]) == 4 and all(second[1]["teacher_scored"])
    assert all(r["batches"][step]["skipped_teacher_values"] == 0 for r in ranks for step in (0, 1))

    # Every rank ran the same teacher forwards: 2 row batches of 4 (8 rows, padded on rank 0), 2 forwards each with
    # the prompt cache, per generation batch.
    assert [r["teacher_scoring_passes"] for r in ranks] == [2, 2]
    assert [r["teacher_forwards"] for r in ranks] == [8, 8]

    # One H_ref for both ranks: the quantile of the scored entropies of both.
    for step, batches in enumerate((first, second)):
        union = batches[0]["scored_entropies"] + batches[1]["scored_entropies"]
        expected = quantile(union)
        assert [b["entropy_ref"] for b in batches] == [expected, expected], step
    # ... which at step 2 is not what either rank's own rollouts would give alone.
    local = [quantile(b["scored_entropies"]) for b in second]
    assert local != [second[0]["entropy_ref"]] * 2

    logged = [entry for entry in ranks[0]["log_history"] if "loss" in entry]
    assert [entry["teacher/rows_scored_frac"] for entry in logged] == [0.5, 0.75]
    assert all(math.isfinite(entry["loss"]) for entry in logged)
    assert all(math.isfinite(entry["credit/gate_mean"]) for entry in logged)


KINDS_WORKER = str(TESTS / "teacher_kinds_worker.py")


@pytest.mark.parametrize("kind", [pytest.param("base", marks=pytest.mark.slow), "ema"])
def test_base_and_ema_teachers_under_zero3(tmp_path, kind):
    """ZeRO-3 on 2 CPU ranks, the teacher loaded again from the model's path: a base teacher stays the initial
    weights; an EMA teacher at rate 1.0 is the student after every sync (TRL's callback gathers the shards)."""
    command = [console_script("accelerate"), "launch", "--config_file", "launch/accelerate/cpu_zero3.yaml"]
    result = run_command([*command, KINDS_WORKER, str(tmp_path), kind], timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for r in ranks:
        assert r["steps"] == 2 and len(r["losses"]) == 2 and all(math.isfinite(loss) for loss in r["losses"])
        assert r["student_vs_initial"] > 1e-4  # the student trained
        if kind == "base":
            assert r["teacher_vs_initial"] == 0.0 and r["syncs"] == 0
        else:
            assert r["teacher_vs_student"] == 0.0 and r["syncs"] == 2
