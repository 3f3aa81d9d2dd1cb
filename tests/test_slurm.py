"""Slurm for real (`make test-slurm`): a one-node cluster on this machine (Debian's slurmctld, slurmd and munge) runs
`launch/slurm/train.slurm` with a tiny CPU recipe on 2 ZeRO-3 ranks, as a GPU cluster runs the Qwen3 recipes.

One node only: Debian's slurmd is built without --enable-multiple-slurmd, which two nodes on one host would need; the
multi-node part of the script (one launcher per node, static rendezvous on the first node) runs here with N = 1.
"""

import json
import os
import shutil

import pytest
from helpers import ROOT, run_command


pytestmark = pytest.mark.slurm
CLUSTER = ROOT / "tests" / "slurm" / "local_cluster.sh"
SCRIPT = "launch/slurm/train.slurm"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if shutil.which("slurmctld") is None:
        if os.environ.get("EGRSD_REQUIRE_SLURM") == "1":
            pytest.fail("Slurm is not installed: `make test-slurm` installs it (tests/slurm/local_cluster.sh install)")
        pytest.skip("Slurm is not installed (make test-slurm installs it)")
    directory = tmp_path_factory.mktemp("slurm")
    started = run_command(["bash", str(CLUSTER), "start", str(directory)], timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    yield {"SLURM_CONF": str(directory / "slurm.conf")}
    run_command(["bash", str(CLUSTER), "stop", str(directory)], timeout=60)


def submit(tmp_path, cluster, recipe_args, **env):
    """`sbatch --wait` of the training script on the CPU; the job's exit status and its stdout and stderr logs."""
    command = ["sbatch", "--wait", "--nodes=1", "--gres=none", "--cpus-per-task=2", f"--chdir={ROOT}"]
    command += [f"--output={tmp_path}/job.out", f"--error={tmp_path}/job.err", SCRIPT, *recipe_args]
    settings = dict(ACCELERATE_CONFIG="launch/accelerate/cpu_zero3.yaml", PROCESSES_PER_NODE="2", VENV=".venv")
    result = run_command(command, timeout=900, **cluster, **(settings | env))
    read = [(tmp_path / name).read_text() if (tmp_path / name).exists() else "" for name in ("job.out", "job.err")]
    return result.returncode, *read


def test_colocate_mode_trains_a_tiny_recipe_on_two_zero3_ranks(tmp_path, cluster):
    output = tmp_path / "trained"
    tiny = ["--max_steps", "2", "--per_device_train_batch_size", "8", "--num_generations", "4"]
    tiny += ["--max_completion_length", "32", "--output_dir", str(output), "--disable_tqdm", "true"]
    code, out, err = submit(tmp_path, cluster, ["recipes/tiny/egrsd/config.yaml", *tiny], VLLM_MODE="colocate")
    assert code == 0, (out + err)[-4000:]
    assert "2 processes" in out
    for rank in (0, 1):
        assert f"[rank {rank}] finished 2 steps" in out
    assert (output / "model.safetensors").exists()
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["global_step"] == 2


def test_server_mode_on_one_node_is_one_clear_line(tmp_path, cluster):
    code, out, err = submit(tmp_path, cluster, ["recipes/tiny/egrsd/config.yaml"], VLLM_MODE="server")
    assert code != 0
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "needs at least 2 nodes" in lines[0] and "VLLM_MODE=colocate" in lines[0], err
