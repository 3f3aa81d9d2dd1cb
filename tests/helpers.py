"""What the test modules share (conftest.py keeps only the fixtures): paths, child processes, tiny training settings,
the tiny model's shape. Test modules import from here, never from one another."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
FIXTURES = TESTS / "fixtures"
BENCH = ROOT / "bench"


def run_command(command, cwd=ROOT, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """`command` in a child process, its output captured as text: offline, one BLAS thread, unbuffered, plus `env`."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", **env)
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def run_python(*args: str, cwd=ROOT, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """This interpreter with `args` (`-m module ...`, `-c code`, a script path) in a child process (`run_command`)."""
    return run_command([sys.executable, *args], cwd=cwd, timeout=timeout, **env)


def console_script(name: str) -> str:
    """The path of an installed console script (`accelerate`, `egrsd-eval`) beside this interpreter."""
    return os.path.join(os.path.dirname(sys.executable), name)


def load_bench(name: str):
    """A `bench/` script as a module (the benches are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def digit_reward(completions, answer, **kwargs):
    """A dense toy reward: how many characters of the completion are digits of the gold answer."""
    return [float(sum(ch in gold for ch in completion[0]["content"])) for completion, gold in zip(completions, answer)]


def tiny_training_settings(output_dir, **overrides) -> dict:
    """GRPOConfig/EGRSDConfig keyword arguments for two quick CPU steps of the tiny model."""
    settings = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=12,
        max_steps=2,
        learning_rate=1e-2,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        seed=7,
    )
    settings.update(overrides)
    return settings


def tiny_model_shape(**overrides) -> dict:
    """The smoke-test model's shape (`egrsd.testbed.model.SMOKE_TEST_SIZE`: ~22k parameters), with `overrides`."""
    from egrsd.testbed.model import SMOKE_TEST_SIZE

    return {**SMOKE_TEST_SIZE, **overrides}
