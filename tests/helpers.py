"""What the test modules share (conftest.py keeps only the fixtures): paths, child processes, tiny training settings,
the tiny model's shape. Test modules import from here, never from one another."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml


ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
FIXTURES = TESTS / "fixtures"
BENCH = ROOT / "bench"
TINY_RECIPES = ROOT / "recipes" / "tiny"
USER_ERROR = 2


def skip_unless_vllm() -> None:
    """At a `vllm` module's top: skip it where vLLM is not installed, fail instead under EGRSD_REQUIRE_VLLM=1
    (`make test-vllm`, where a missing vLLM is a broken install, not a reason to pass)."""
    if importlib.util.find_spec("vllm") is not None:
        return
    if os.environ.get("EGRSD_REQUIRE_VLLM") == "1":
        pytest.fail("EGRSD_REQUIRE_VLLM=1 but vLLM is not installed here: run `make test-vllm`", pytrace=False)
    pytest.skip("vLLM is not installed (make test-vllm runs these in .venv-vllm)", allow_module_level=True)


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


# ----------------------------------------------------------------------------------------------------------------
# Command-line tools as a user runs them: one error line, exit status 2, no traceback.


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def assert_one_clear_line(result, *fragments):
    """Exit status 2, exactly one `error:` line naming every fragment, written as `<what> — <fix>`; no traceback."""
    output = result.stdout + result.stderr
    assert result.returncode == USER_ERROR, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    lines = error_lines(result.stderr)
    assert len(lines) == 1, lines
    assert " — " in lines[0], lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def assert_one_clear_outcome(outcome, *fragments):
    """`assert_one_clear_line` for one outcome of `run_each`."""
    assert outcome["code"] == USER_ERROR, outcome["stderr"][-3000:]
    assert "Traceback" not in outcome["stderr"]
    lines = error_lines(outcome["stderr"])
    assert len(lines) == 1 and " — " in lines[0], lines
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# A Python start with torch and TRL imported costs seconds here, so many runs of one tool share a subprocess that
# calls its console entry point once per argv, as `sys.exit(main())` does.
DRIVER = textwrap.dedent(
    """
    import contextlib, importlib, io, json, sys, traceback

    main = importlib.import_module(sys.argv[1]).main
    results = []
    for argv in json.loads(sys.argv[2]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except SystemExit as exited:
                code = exited.code
            except Exception:  # a bug, or a mistake not caught: this case fails, the others still run
                traceback.print_exc()
                code = "uncaught exception"
        results.append({"code": code, "stderr": err.getvalue()})
    print(json.dumps(results))
    """
)


def run_each(cwd, module: str, argvs: list[list[str]], timeout: float = 600) -> list[dict]:
    """Exit status and stderr of `module`'s console entry point for each argv, all in one subprocess run in `cwd`."""
    result = run_python("-c", DRIVER, module, json.dumps(argvs), cwd=cwd, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def output_name(case: str) -> str:
    """An output folder's name for one case of a batch of runs (each its own, so a run that should not write and did
    is found)."""
    return "out-" + case.replace(" ", "-")


def write(path: Path, text: str) -> str:
    """Write `text` to `path`; its file name (tests run the tools in its folder)."""
    path.write_text(text, encoding="utf-8")
    return path.name


def recipe(tmp_path: Path, name: str, base: str = "egrsd", **changes) -> str:
    """A copy of the tiny `base` recipe with `changes`, written as `tmp_path / name`; its file name."""
    with open(TINY_RECIPES / base / "config.yaml") as f:
        values = yaml.safe_load(f)
    values.update(changes)
    (tmp_path / name).write_text(yaml.safe_dump(values))
    return name
