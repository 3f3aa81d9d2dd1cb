"""vLLM for real, on vLLM's CPU build (`make test-vllm`): colocated rollouts, the weight sync, evaluation, the server.

`make test` skips this module where vLLM is not installed; `make test-vllm` sets EGRSD_REQUIRE_VLLM=1, which turns
that skip into a failure. Every vLLM engine runs in a child process (an engine holds the process's torch.distributed
state), started as few times as the checks allow: engine start-up is what these tests spend their time on.
"""

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import FIXTURES, ROOT, TESTS, digit_reward, tiny_model_shape, tiny_training_settings


pytestmark = pytest.mark.vllm

if importlib.util.find_spec("vllm") is None:
    if os.environ.get("EGRSD_REQUIRE_VLLM") == "1":
        pytest.fail("EGRSD_REQUIRE_VLLM=1 but vLLM is not installed here: run `make test-vllm`", pytrace=False)
    pytest.skip("vLLM is not installed (make test-vllm runs these in .venv-vllm)", allow_module_level=True)

PYTHON = sys.executable
# A small KV cache per engine and one BLAS thread for the trainer; vLLM binds its own OpenMP threads.
CHILD_ENV = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
# The vLLM switches on top of a tiny recipe; the recipes themselves stay transformers-on-CPU and differ only in
# their method keys.
VLLM_ARGS = ["--use_vllm", "true", "--vllm_mode", "colocate"]


def run(command: list[str], timeout: float, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=CHILD_ENV, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stderr[-6000:]}"
    return result


@pytest.fixture(scope="module")
def vllm_model_dir(tmp_path_factory):
    """A random-init tiny Qwen3 whose head size vLLM's CPU attention accepts (32)."""
    from egrsd.testbed.model import build_tiny_qwen3
    from egrsd.testbed.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    path = tmp_path_factory.mktemp("tiny-qwen3-vllm")
    model = build_tiny_qwen3(tokenizer, seed=0, **tiny_model_shape(hidden_size=64, head_dim=32, intermediate_size=128))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


# ----------------------------------------------------------------------------------------------------------------
# (a) egrsd-train with colocated vLLM rollouts, three methods


def logged_steps(output_dir: Path) -> list[dict]:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return [entry for entry in state["log_history"] if "loss" in entry]


@pytest.mark.parametrize("method", ["grpo", "egrsd", "cl_egrsd"])
def test_egrsd_train_three_steps_with_colocated_vllm(tmp_path, method):
    output_dir = tmp_path / method
    command = [PYTHON, "-m", "egrsd.train", "--config", f"recipes/tiny/{method}/config.yaml", *VLLM_ARGS]
    command += ["--max_steps", "3", "--output_dir", str(output_dir)]
    result = run(command, timeout=600)
    steps = logged_steps(output_dir)
    assert [entry["step"] for entry in steps] == [1, 2, 3]
    # vLLM generated the rollouts: TRL's importance-sampling metrics exist only on its vLLM path.
    differences = [entry["sampling/sampling_logp_difference/mean"] for entry in steps]
    assert all(0 <= difference < 0.01 for difference in differences), differences
    assert all(entry["completions/mean_length"] > 0 for entry in steps)
    if method == "grpo":
        assert not any(key.startswith("credit/") for key in steps[0])
    else:
        assert all(0.2 <= entry["credit/gate_mean"] <= 1.0 for entry in steps)
    assert "finished 3 steps" in result.stdout + result.stderr


# ----------------------------------------------------------------------------------------------------------------
# (b) the weight sync is real, (c) the credit's student log-probs are the trainer's own


def sync_probe(model_dir: str, output_dir: str) -> None:
    """Three opsd steps at learning rate 1e-2 (the weights move) with vLLM rollouts; writes what the steps saw.

    Run in a child process (`python -c`). The sync runs before the rollouts of steps 1 and 2 and is skipped before
    step 3's: one engine gives the synced steps and the control.
    """
    import torch
    from datasets import load_dataset
    from transformers import AutoTokenizer

    from egrsd.configs import EGRSDConfig
    from egrsd.trainer import EGRSDTrainer

    records = []

    class ProbeTrainer(EGRSDTrainer):
        def _apply_credit(self, inputs, student_logps):
            mask = self._credit_mask(inputs).bool()
            old = inputs.get("old_per_token_logps")
            sampling = inputs["sampling_per_token_logps"]
            records.append(
                {
                    "step": self.state.global_step + 1,
                    "student_is_trl_old_logps": old is not None and torch.equal(student_logps, old),
                    "student_vs_vllm_max_abs": float((student_logps - sampling)[mask].abs().max()),
                }
            )
            return super()._apply_credit(inputs, student_logps)

    settings = tiny_training_settings(
        output_dir, credit_method="opsd", use_vllm=True, vllm_mode="colocate", max_steps=3, learning_rate=1e-2
    )
    trainer = ProbeTrainer(
        model=model_dir,
        reward_funcs=digit_reward,
        args=EGRSDConfig(**settings),
        train_dataset=load_dataset("json", data_files=str(FIXTURES / "arith_tiny.jsonl"), split="train"),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
    )
    generation = trainer.vllm_generation
    installed_sync = generation.sync_weights
    synced_before = []

    def sync_until_step_3():
        if trainer.state.global_step < 2:
            installed_sync()
            synced_before.append(trainer.state.global_step + 1)

    generation.sync_weights = sync_until_step_3
    trainer.train()
    steps = [entry for entry in trainer.state.log_history if "loss" in entry]
    result = {
        "sync_function": installed_sync.__qualname__,
        "synced_before_steps": synced_before,
        "logp_difference": [entry["sampling/sampling_logp_difference/mean"] for entry in steps],
        "credit": records,
    }
    Path(output_dir, "probe.json").write_text(json.dumps(result))


def test_weight_sync_reaches_vllm_and_the_credit_uses_the_trainers_logps(vllm_model_dir, tmp_path):
    code = f"from test_vllm import sync_probe; sync_probe({vllm_model_dir!r}, {str(tmp_path)!r})"
    run([PYTHON, "-c", code], timeout=600, cwd=TESTS)
    probe = json.loads((tmp_path / "probe.json").read_text())
    # The CPU platform's sync is this project's (egrsd.vllm_compat), not TRL's load_weights path.
    assert probe["sync_function"] == "sync_weights_on_cpu"
    assert probe["synced_before_steps"] == [1, 2]
    first, synced, control = probe["logp_difference"]
    # Step 1 samples from the weights vLLM loaded itself; step 2 from the weights synced after one update at lr 1e-2;
    # step 3, the control, from those same weights while the trainer has taken another update.
    assert first < 0.01 and synced < 0.01, probe
    assert control > 0.01, probe
    # (c) The credit's student log-probs are TRL's old log-probs (the trainer's own forward, which TRL's vLLM
    # importance-sampling correction computes), not vLLM's sampling log-probs.
    assert [record["step"] for record in probe["credit"]] == [1, 2, 3]
    assert all(record["student_is_trl_old_logps"] for record in probe["credit"]), probe
    assert probe["credit"][2]["student_vs_vllm_max_abs"] > 0.1, probe


def test_server_mode_on_a_cpu_fails_at_start_naming_the_cuda_requirement(tmp_path, vllm_model_dir):
    from datasets import Dataset

    from egrsd.configs import EGRSDConfig
    from egrsd.trainer import EGRSDTrainer

    # egrsd-train: one error line before anything is loaded, exit status 2.
    command = [PYTHON, "-m", "egrsd.train", "--config", "recipes/tiny/grpo/config.yaml", "--use_vllm", "true"]
    command += ["--vllm_mode", "server", "--output_dir", str(tmp_path / "cli")]
    result = subprocess.run(command, cwd=ROOT, env=CHILD_ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert "NCCL" in errors[0] and "CUDA" in errors[0] and "vllm_mode='colocate'" in errors[0]
    # The trainer itself, built without the CLI (use_cpu unset): the same refusal before TRL contacts a server.
    args = EGRSDConfig(**tiny_training_settings(tmp_path, credit_method="grpo", use_vllm=True, vllm_mode="server"))
    with pytest.raises(ValueError) as raised:
        EGRSDTrainer(
            model=vllm_model_dir,
            reward_funcs=digit_reward,
            args=args,
            train_dataset=Dataset.from_list([{"prompt": "1+1"}]),
        )
    message = str(raised.value)
    assert "\n" not in message and message in errors[0]
    assert "or train in server mode on a GPU" in message


def test_check_accepts_colocated_vllm_on_a_cpu_and_rejects_server_mode(capsys):
    from egrsd.check import run_check
    from egrsd.cli import UserError
    from egrsd.configs import make_parser
    from egrsd.vllm_compat import SERVER_MODE_ON_CPU

    recipe = "recipes/tiny/egrsd/config.yaml"
    assert run_check(make_parser(), ["--config", str(ROOT / recipe), *VLLM_ARGS, "--check"]) == 0
    assert "recipe OK" in capsys.readouterr().err
    server = ["--config", str(ROOT / recipe), "--use_vllm", "true", "--vllm_mode", "server", "--check"]
    with pytest.raises(UserError) as raised:
        run_check(make_parser(), server)
    assert raised.value.problems == [SERVER_MODE_ON_CPU]


# ----------------------------------------------------------------------------------------------------------------
# (d) egrsd-eval: vLLM and transformers agree on the shipped base


EVAL_ARGS = ["--benchmarks", "testbed-arithmetic", "--max-problems", "48", "--num-samples", "2"]
EVAL_ARGS += ["--max-new-tokens", "320", "--temperature", "1.0", "--top-p", "1.0", "--top-k", "0", "--seed", "0"]


def evaluate(model: str, output_dir: Path, *backend_args: str) -> dict:
    command = [PYTHON, "-m", "egrsd.eval", "--model", model, *EVAL_ARGS, "--output-dir", str(output_dir)]
    run([*command, *backend_args], timeout=600)
    return json.loads((output_dir / "results.json").read_text())


def test_vllm_and_transformers_evaluations_agree_on_the_shipped_base(tmp_path):
    from egrsd.testbed.base import shipped_base_path

    base = str(shipped_base_path())
    reference = evaluate(base, tmp_path / "transformers", "--backend", "transformers", "--batch-size", "96")
    single = evaluate(base, tmp_path / "vllm", "--backend", "vllm")
    replicas = evaluate(base, tmp_path / "vllm-dp2", "--backend", "vllm", "--data-parallel-size", "2")
    ref = reference["benchmarks"]["testbed-arithmetic"]
    samples = ref["num_samples"]  # every sample of every problem
    for results in (single, replicas):
        assert results["backend"] == "vllm"
        got = results["benchmarks"]["testbed-arithmetic"]
        assert got["num_problems"] == ref["num_problems"] and got["num_samples"] == ref["num_samples"]
        # Independent samples of the same model: accuracy within 3 standard errors of the difference of two
        # proportions, mean length within 15% (the base's lengths vary little around ~150 tokens).
        p = (ref["accuracy"] + got["accuracy"]) / 2
        standard_error = (2 * p * (1 - p) / samples) ** 0.5
        assert abs(got["accuracy"] - ref["accuracy"]) <= 3 * standard_error + 1e-9, (ref, got)
        ratio = got["mean_completion_tokens"] / ref["mean_completion_tokens"]
        assert 0.85 <= ratio <= 1.15, (ref, got)
    # The two replicas drew with distinct seeds: the samples are not the single engine's.
    single_samples = (tmp_path / "vllm" / "samples.jsonl").read_text()
    assert single_samples != (tmp_path / "vllm-dp2" / "samples.jsonl").read_text()


# ----------------------------------------------------------------------------------------------------------------
# (e) launch/vllm_serve.sh answers TRL's VLLMClient


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_vllm_serve_script_answers_trls_client(vllm_model_dir, tmp_path):
    from trl.generation.vllm_client import VLLMClient

    port = free_port()
    env = dict(CHILD_ENV, VENV=str(Path(PYTHON).parents[1]), VLLM_PORT=str(port), VLLM_MAX_MODEL_LEN="512")
    log = tmp_path / "server.log"
    server = subprocess.Popen(
        ["bash", "launch/vllm_serve.sh", vllm_model_dir],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the engine's children are killed with it
    )
    try:
        wait_until_serving(server, port, log, timeout=300)
        client = VLLMClient(base_url=f"http://127.0.0.1:{port}")
        assert client.model == vllm_model_dir
        prompts = [[5, 6, 7, 8], [9, 10]]
        output = client.generate(prompts=prompts, n=3, max_tokens=6, temperature=1.0, logprobs=0)
        assert output["prompt_ids"] == prompts
        assert len(output["completion_ids"]) == 6 and all(1 <= len(ids) <= 6 for ids in output["completion_ids"])
        assert [len(lps) for lps in output["logprobs"]] == [len(ids) for ids in output["completion_ids"]]
        assert all(lp[0] <= 0 for lps in output["logprobs"] for lp in lps)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
    assert server.returncode is not None


def wait_until_serving(server: subprocess.Popen, port: int, log: Path, timeout: float) -> None:
    """Until the server answers /health; fails at once with its output if it exits first."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"launch/vllm_serve.sh exited {server.returncode}:\n{log.read_text()[-6000:]}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(2)
    pytest.fail(f"the vLLM server did not answer within {timeout:.0f} s")
