"""launch/slurm/train.slurm's wiring, with stand-ins for scontrol, srun and curl that record what they are asked.

The script itself runs under real Slurm in tests/test_slurm.py (`make test-slurm`); these check every mode's node
split and command lines in a second, including the vLLM server mode, which needs CUDA to train and so cannot run
here for real.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from helpers import ROOT, USER_ERROR


SCRIPT = ROOT / "launch" / "slurm" / "train.slurm"
RECIPE = "recipes/Qwen3-8B/egrsd/config.yaml"


@pytest.fixture
def fake_slurm(tmp_path):
    """A PATH with scontrol, srun and curl stand-ins; returns a function running the script, and the srun calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "srun_calls.jsonl"
    scripts = {
        # Node n<i> is reached at 10.0.0.<i>: the script must use NodeAddr, not the node's name.
        "scontrol": """
            if [ "$1 $2" = "show hostnames" ]; then tr ',' '\\n' <<< "$3"; exit 0; fi
            if [ "$1 $2" = "show node" ]; then echo "NodeName=$3 NodeAddr=10.0.0.${3#n} State=ALLOCATED"; fi
            """,
        "srun": f"""
            python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@" >> {calls}
            case "$*" in *vllm_serve.sh*) exec sleep 60 ;; esac
            """,
        "curl": "exit 0",
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text("#!/bin/bash\n" + textwrap.dedent(body))
        path.chmod(0o755)
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").write_text(f'#!/bin/bash\nexec {sys.executable} "$@"\n')
    (venv_bin / "python").chmod(0o755)

    def run(nodes: str, *args: str, **env: str):
        environment = dict(
            os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_NODELIST=nodes, VENV=str(tmp_path / "venv")
        )
        environment.update(env)
        result = subprocess.run(
            ["bash", str(SCRIPT), *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
        )
        recorded = [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
        return result, recorded

    return run


def training_command(srun_args):
    """The part of a training srun call after the wrapper: accelerate's arguments, then the training module's."""
    start = srun_args.index("bash")
    assert srun_args[start + 1 : start + 3] == ["-c", 'exec "$0" launch --machine_rank "$SLURM_PROCID" "$@"']
    return srun_args[start + 3 :]


def test_colocate_mode_trains_on_every_node_with_the_first_as_master(fake_slurm):
    result, calls = fake_slurm(
        "n1,n2", RECIPE, "--max_steps", "5", "--run_name", "two words", VLLM_MODE="colocate", PROCS_PER_NODE="4"
    )
    assert result.returncode == 0, result.stderr
    assert len(calls) == 1
    srun = calls[0]
    assert srun[:5] == ["--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1", "--nodelist=n1,n2"]
    command = training_command(srun)
    assert command[1:] == [
        "--config_file", "launch/accelerate/zero3.yaml",
        "--num_machines", "2",
        "--num_processes", "8",
        "--main_process_ip", "10.0.0.1",
        "--main_process_port", "29500",
        "--rdzv_backend", "static",
        "-m", "egrsd.train", "--config", RECIPE,
        "--vllm_mode", "colocate",
        "--max_steps", "5", "--run_name", "two words",
    ]  # fmt: skip
    assert command[0].endswith("venv/bin/accelerate")
    assert "training (colocate): n1 n2 (8 processes)" in result.stdout


def test_server_mode_puts_vllm_on_the_last_node_and_points_training_at_its_address(fake_slurm):
    result, calls = fake_slurm("n1,n2,n3", RECIPE, GPUS_PER_NODE="8")
    assert result.returncode == 0, result.stderr
    # The server's srun runs in the background: the two calls may be recorded in either order.
    [server] = [call for call in calls if "launch/vllm_serve.sh" in call]
    [training] = [call for call in calls if call is not server]
    assert server[:3] == ["--nodes=1", "--ntasks=1", "--nodelist=n3"]
    assert server[-3:] == ["bash", "launch/vllm_serve.sh", "Qwen/Qwen3-8B"] and "VLLM_DP=8" in server
    assert training[:5] == [
        "--nodes=2",
        "--ntasks=2",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
        "--nodelist=n1,n2",
    ]
    command = training_command(training)
    assert command[command.index("--num_processes") + 1] == "16"
    assert command[-6:] == ["--vllm_mode", "server", "--vllm_server_host", "10.0.0.3", "--vllm_server_port", "8000"]
    assert "vLLM server: n3 (Qwen/Qwen3-8B); training: n1 n2 (16 processes)" in result.stdout


@pytest.mark.parametrize(
    "nodes, mode, message",
    [
        ("n1", "server", "error: VLLM_MODE=server needs at least 2 nodes (N training nodes + 1 vLLM node); got 1"),
        ("n1,n2", "collocate", "error: VLLM_MODE=collocate is not a rollout mode — use server or colocate"),
    ],
)
def test_a_wrong_mode_or_node_count_is_one_line_before_anything_starts(fake_slurm, nodes, mode, message):
    result, calls = fake_slurm(nodes, RECIPE, VLLM_MODE=mode)
    assert result.returncode == USER_ERROR
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and result.stderr.startswith(message)
    assert calls == []
