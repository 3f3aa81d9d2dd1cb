"""launch/slurm/train.slurm under real Slurm (`make test-slurm`): a two-node cluster on this machine, the tiny recipe.

tests/slurm/run_local_cluster.sh starts slurmctld and two slurmd daemons (two nodes, one CPU each) with their own
munge key, submits the script with `sbatch --wait` in colocate mode with the CPU ZeRO-3 launch config (one training
process per node, so the two ranks meet over the network as on two machines), and tears the cluster down.
`make test` leaves this module out (marker `slurm`); without Slurm or root it is skipped, and EGRSD_REQUIRE_SLURM=1
(set by `make test-slurm`) turns that skip into a failure.
"""

import json
import math
import os
import shutil

import pytest
from helpers import ROOT, run_command


pytestmark = pytest.mark.slurm

MISSING = [name for name in ("munged", "slurmctld", "slurmd", "sbatch", "srun", "scontrol") if not shutil.which(name)]
if MISSING or os.geteuid() != 0:
    reason = f"Slurm programs missing: {MISSING}" if MISSING else "the local Slurm cluster runs its daemons as root"
    if os.environ.get("EGRSD_REQUIRE_SLURM") == "1":
        pytest.fail(f"EGRSD_REQUIRE_SLURM=1 but {reason} (make test-slurm installs Slurm as root)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)

DRIVER = ROOT / "tests" / "slurm" / "run_local_cluster.sh"


def test_train_slurm_trains_the_tiny_recipe_on_two_slurm_nodes(tmp_path):
    cluster = tmp_path / "cluster"
    output_dir = tmp_path / "out"
    job_out, job_err = tmp_path / "job.out", tmp_path / "job.err"
    result = run_command(
        [
            "bash", str(DRIVER), str(cluster),
            "--nodes=2", "--gres=none", "--cpus-per-task=1", f"--output={job_out}", f"--error={job_err}",
            "launch/slurm/train.slurm", "recipes/tiny/egrsd/config.yaml",
            "--output_dir", str(output_dir),
            "--max_steps", "2",
            "--per_device_train_batch_size", "4",
            "--num_generations", "4",
            "--max_completion_length", "48",
            "--logging_steps", "1",
        ],
        timeout=1200,
        LOCAL_NODES="2",
        VLLM_MODE="colocate",
        PROCS_PER_NODE="1",
        ACCELERATE_CONFIG="launch/accelerate/cpu_zero3.yaml",
        VENV=str(ROOT / ".venv"),
    )  # fmt: skip
    job_output = (job_out.read_text() if job_out.exists() else "") + (job_err.read_text() if job_err.exists() else "")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:] + job_output[-4000:]
    assert "local Slurm cluster up: 2 nodes (egrsd-n1 egrsd-n2 )" in result.stdout
    assert "job finished with exit code 0" in result.stdout
    assert "training (colocate): egrsd-n1 egrsd-n2 (2 processes)" in job_output
    # One training task on each node: each slurmd launched a task of the training step (step 0 of job 1).
    for node in ("egrsd-n1", "egrsd-n2"):
        assert "launch task StepId=1.0 request" in (cluster / f"slurmd-{node}.log").read_text(), node
    # Both ranks (one per node) ran both steps under ZeRO-3 (each holds a shard, not the whole model).
    for rank in (0, 1):
        assert f"[rank {rank}] finished 2 steps; teacher scoring passes: " in job_output
    assert job_output.count("parameter elements on this rank: 0 of 801024") == 2
    # The trained output: the model, and the logged history of both steps.
    assert (output_dir / "model.safetensors").stat().st_size > 0
    with open(output_dir / "trainer_state.json") as f:
        history = json.load(f)["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert [entry["step"] for entry in history if "loss" in entry] == [1, 2]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
