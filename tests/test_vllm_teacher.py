"""`teacher_backend: vllm` for real, on vLLM's CPU build (`make test-vllm`): the teacher scored by the rollout engine.

(a) The scorer against the trainer path (`egrsd.scoring.score_tokens`) on a tiny model with the testbed vocabulary,
at two temperatures: equal to float tolerance where k covers the vocabulary, inside the documented entropy bounds
where it does not. (b) Training with the teacher in the colocated engine, its scores compared with the trainer
path's at every step. Each engine runs in a child process (an engine holds the process's torch.distributed state).
"""

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FIXTURES, ROOT, TESTS, tiny_model_shape, tiny_training_settings


pytestmark = pytest.mark.vllm

if importlib.util.find_spec("vllm") is None:
    if os.environ.get("EGRSD_REQUIRE_VLLM") == "1":
        pytest.fail("EGRSD_REQUIRE_VLLM=1 but vLLM is not installed here: run `make test-vllm`", pytrace=False)
    pytest.skip("vLLM is not installed (make test-vllm runs these in .venv-vllm)", allow_module_level=True)

PYTHON = sys.executable


def free_port() -> str:
    """A port nothing listens on now: a child's torch.distributed would otherwise take 29500, which other jobs on a
    shared machine may hold (seen once: EADDRINUSE)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


CHILD_ENV = dict(
    os.environ,
    VLLM_CPU_KVCACHE_SPACE="1",
    OMP_NUM_THREADS="1",
    TOKENIZERS_PARALLELISM="false",
    MASTER_PORT=free_port(),
)
TEMPERATURES = (1.0, 0.7)
SMALL_KS = (5, 20)


def run_child(code: str, timeout: float) -> None:
    result = subprocess.run(
        [PYTHON, "-c", code], cwd=TESTS, env=CHILD_ENV, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"child exited {result.returncode}:\n{result.stderr[-6000:]}"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A random-init tiny Qwen3 on the testbed tokenizer (vocabulary ~100) with the head size vLLM's CPU attention
    accepts (32)."""
    from egrsd.testbed.model import build_tiny_qwen3
    from egrsd.testbed.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    path = tmp_path_factory.mktemp("tiny-qwen3-vllm-teacher")
    model = build_tiny_qwen3(tokenizer, seed=0, **tiny_model_shape(hidden_size=64, head_dim=32, intermediate_size=128))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


# ----------------------------------------------------------------------------------------------------------------
# (a) The scorer against the trainer path


def scorer_probe(model_dir: str, output: str) -> None:
    """Scores random rows both ways on one float32 engine (vLLM would downcast a float32 checkpoint to bfloat16)."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine in this process, as TRL's colocated one
    import torch
    from transformers import AutoModelForCausalLM
    from vllm import LLM

    from egrsd.scoring import score_tokens
    from egrsd.vllm_teacher import VLLMTeacherScorer, topk_entropy

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    vocab_size = model.config.vocab_size
    llm = LLM(model=model_dir, dtype="float32", max_logprobs=vocab_size, max_model_len=256, seed=0, enforce_eager=True)
    generator = torch.Generator().manual_seed(0)
    lengths = [20, 13, 1, 0, 7, 20]  # one row with an empty mask: not sent, zeros returned
    prompt_lengths = torch.randint(3, 30, (len(lengths),), generator=generator).tolist()
    prompts = [torch.randint(4, vocab_size, (n,), generator=generator).tolist() for n in prompt_lengths]
    completion_ids = torch.randint(4, vocab_size, (len(lengths), max(lengths)), generator=generator)
    mask = (torch.arange(max(lengths)).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)).long()
    valid = mask.bool()
    results = {"vocab_size": vocab_size, "runs": []}
    for temperature in TEMPERATURES:
        ref_logps, ref_entropy = score_tokens(
            model, prompts, completion_ids, mask, pad_token_id=0, temperature=temperature
        )
        # The exact bounds from full log-probs: what the scorer's top k should give (checks the parsing too).
        logits = model(torch.tensor([prompts[0] + completion_ids[0].tolist()])).logits[0, len(prompts[0]) - 1 : -1]
        log_probs = torch.log_softmax(logits.float() / temperature, -1)
        actual = log_probs.gather(-1, completion_ids[0, : lengths[0]].unsqueeze(-1)).squeeze(-1)
        rank = (log_probs > actual.unsqueeze(-1)).sum(-1) + 1
        full = log_probs.sort(-1, descending=True).values
        for k in (vocab_size, *SMALL_KS):
            scorer = VLLMTeacherScorer(llm, k)
            logps, entropy = scorer.score(prompts, completion_ids, mask, temperature)
            # The actual token is known too where it is outside the top k.
            outside = torch.where(rank > k, actual, torch.full_like(actual, -float("inf")))
            lower, upper = topk_entropy(full[:, :k], outside, vocab_size)
            results["runs"].append(
                {
                    "temperature": temperature,
                    "k": k,
                    "logp_error": float((logps - ref_logps)[valid].abs().max()),
                    "entropy_error": float((entropy - ref_entropy)[valid].abs().max()),
                    # true - estimate, which the bounds place in [0, upper - lower]
                    "below_truth": float((ref_entropy - entropy)[valid].min()),
                    "gap_minus_error": float(
                        ((upper - lower).float() - (ref_entropy[0] - entropy[0]))[valid[0]].min()
                    ),
                    "row0_lower_error": float((lower.float() - entropy[0])[valid[0]].abs().max()),
                    "masked_zero": bool((logps[~valid] == 0).all() and (entropy[~valid] == 0).all()),
                    "tail_mass_mean": scorer.last_stats["tail_mass_sum"] / scorer.last_stats["positions"],
                    "positions": scorer.last_stats["positions"],
                }
            )
    Path(output).write_text(json.dumps(results))


@pytest.fixture(scope="module")
def scorer_results(model_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("scorer") / "results.json"
    run_child(f"from test_vllm_teacher import scorer_probe; scorer_probe({model_dir!r}, {str(output)!r})", 600)
    return json.loads(output.read_text())


def test_with_k_covering_the_vocabulary_vllm_scores_equal_the_trainer_path(scorer_results):
    vocab_size = scorer_results["vocab_size"]
    exact = [run for run in scorer_results["runs"] if run["k"] == vocab_size]
    assert [run["temperature"] for run in exact] == list(TEMPERATURES)
    for run in exact:
        # float32 both ways; measured 4.8e-7 (log-probs) and 1.9e-6 (entropies) at both temperatures.
        assert run["logp_error"] < 1e-4, run
        assert run["entropy_error"] < 1e-3, run
        assert run["tail_mass_mean"] < 1e-5, run
        assert run["masked_zero"] and run["positions"] == 61, run  # 20 + 13 + 1 + 7 + 20 scored positions


def test_with_k_below_the_vocabulary_the_entropy_is_inside_its_bounds(scorer_results):
    for run in [run for run in scorer_results["runs"] if run["k"] in SMALL_KS]:
        assert run["logp_error"] < 1e-4, run  # the actual token's log-prob stays exact outside the top k
        # The estimate is the lower bound: never above the truth, and the truth never above the upper bound.
        assert run["below_truth"] > -1e-5, run
        assert run["gap_minus_error"] > -1e-5, run
        assert run["row0_lower_error"] < 1e-4, run
        # A random model's distributions are flat: most mass is outside a top 5 or 20, and the error is real.
        assert run["tail_mass_mean"] > 0.3 and run["entropy_error"] > 0.05, run


# ----------------------------------------------------------------------------------------------------------------
# (b) Training with the teacher in the colocated engine


def checksum_reward(completions, **kwargs):
    """A reward that differs between a random model's rollouts (a checksum of the text), so groups are not flat."""
    return [float(sum(map(ord, completion[0]["content"])) % 7) for completion in completions]


def training_probe(model_dir: str, output_dir: str, topk: int) -> None:
    """Two egrsd steps with teacher_backend vllm at learning rate 1e-2 (the weights move between the steps); at each
    teacher pass the trainer path scores the same rows too, and the differences are written."""
    from datasets import load_dataset
    from transformers import AutoTokenizer

    from egrsd.configs import EGRSDConfig
    from egrsd.trainer import EGRSDTrainer

    settings = tiny_training_settings(
        output_dir,
        credit_method="egrsd",
        use_vllm=True,
        vllm_mode="colocate",
        teacher_backend="vllm",
        teacher_logprobs_topk=topk,
    )
    trainer = EGRSDTrainer(
        model=model_dir,
        reward_funcs=checksum_reward,
        args=EGRSDConfig(**settings),
        train_dataset=load_dataset("json", data_files=str(FIXTURES / "arith_tiny.jsonl"), split="train"),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
    )
    teacher = trainer.teacher
    vllm_score = teacher.score
    comparisons = []

    def score_both_ways(inputs, completion_ids, completion_mask, contexts=None):
        logps, entropy = vllm_score(inputs, completion_ids, completion_mask, contexts)
        scorer, teacher.vllm_scorer = teacher.vllm_scorer, None
        try:
            ref_logps, ref_entropy = vllm_score(inputs, completion_ids, completion_mask, contexts)
        finally:
            teacher.vllm_scorer = scorer
        valid = completion_mask.bool()
        if valid.any():
            comparisons.append(
                {
                    "step": trainer.state.global_step + 1,
                    "logp_error": float((logps - ref_logps)[valid].abs().max()),
                    "entropy_error": float((entropy - ref_entropy)[valid].abs().max()),
                    "positions": int(valid.sum()),
                }
            )
        return logps, entropy

    teacher.score = score_both_ways
    trainer.train()
    steps = [entry for entry in trainer.state.log_history if "loss" in entry]
    engine_config = trainer.vllm_generation.llm.llm_engine.model_config
    result = {
        "comparisons": comparisons,
        "steps": steps,
        "max_logprobs": engine_config.max_logprobs,
        "engine_dtype": str(engine_config.dtype),
    }
    Path(output_dir, "probe.json").write_text(json.dumps(result))


def test_egrsd_trains_with_the_teacher_in_the_colocated_engine(model_dir, tmp_path):
    topk = 128  # above the vocabulary: the entropy is exact, and above vLLM's default max_logprobs of 20
    code = f"from test_vllm_teacher import training_probe; training_probe({model_dir!r}, {str(tmp_path)!r}, {topk})"
    run_child(code, 600)
    probe = json.loads((tmp_path / "probe.json").read_text())
    assert probe["max_logprobs"] == topk  # raised when TRL built the engine
    steps = probe["steps"]
    assert [entry["step"] for entry in steps] == [1, 2]
    assert all(0.2 <= entry["credit/gate_mean"] <= 1.0 for entry in steps), steps
    assert all(entry["teacher/vllm_entropy_gap"] == 0.0 for entry in steps), steps
    # Both steps scored, the second after an update at lr 1e-2 that the weight sync brought to the engine. TRL's
    # engine runs the float32 checkpoint in bfloat16 (vLLM's default), the trainer in float32: the differences are
    # bfloat16 rounding, as TRL's own sampling_logp_difference.
    assert probe["engine_dtype"] == "torch.bfloat16"
    assert [c["step"] for c in probe["comparisons"]] == [1, 2], probe["comparisons"]
    for comparison in probe["comparisons"]:
        assert comparison["logp_error"] < 0.05 and comparison["entropy_error"] < 0.05, comparison


def test_check_accepts_the_vllm_teacher_with_colocate_and_refuses_server_mode(capsys):
    from egrsd.check import run_check
    from egrsd.cli import UserError
    from egrsd.configs import make_parser

    recipe = str(ROOT / "recipes/tiny/egrsd/config.yaml")
    colocate = ["--config", recipe, "--use_vllm", "true", "--vllm_mode", "colocate", "--teacher_backend", "vllm"]
    assert run_check(make_parser(), [*colocate, "--check"]) == 0
    assert "recipe OK" in capsys.readouterr().err
    with pytest.raises(UserError) as raised:
        run_check(make_parser(), [*colocate, "--teacher_model_kind", "ema", "--check"])
    assert "teacher_model_kind: live, or teacher_backend: trainer" in str(raised.value)


# ----------------------------------------------------------------------------------------------------------------
# (c) ZeRO-3 on 2 CPU ranks, each rank's engine scoring its own rows


def test_zero3_on_two_ranks_with_the_teacher_in_each_ranks_engine(tmp_path):
    from helpers import console_script, run_command

    output_dir = tmp_path / "run"
    command = [console_script("accelerate"), "launch", "--config_file", "launch/accelerate/cpu_zero3.yaml"]
    command += ["-m", "egrsd.train", "--config", "recipes/tiny/egrsd/config.yaml", "--output_dir", str(output_dir)]
    command += ["--use_vllm", "true", "--vllm_mode", "colocate", "--teacher_backend", "vllm", "--max_steps", "2"]
    command += ["--per_device_train_batch_size", "8", "--num_generations", "4", "--max_completion_length", "32"]
    command += ["--disable_tqdm", "true"]
    # A dense reward beside the verifier: no step has only flat groups, so every step runs the teacher.
    command += ["--reward_funcs", "accuracy", "tests/helpers.py:digit_reward"]
    result = run_command(command, timeout=900, VLLM_CPU_KVCACHE_SPACE="1", TOKENIZERS_PARALLELISM="false")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    # Both ranks ran a teacher pass per step, each in its own engine (the trainer's ZeRO-3 row padding is kept).
    finished = re.findall(r"\[rank (\d)\] finished (\d+) steps; teacher scoring passes: (\d+)", output)
    assert sorted(finished) == [("0", "2", "2"), ("1", "2", "2")], output[-3000:]
    state = json.loads((output_dir / "trainer_state.json").read_text())
    steps = [entry for entry in state["log_history"] if "loss" in entry]
    assert [entry["step"] for entry in steps] == [1, 2]
    for entry in steps:
        assert 0.2 <= entry["credit/gate_mean"] <= 1.0, entry
        # Top 20 of the testbed's 103 symbols: the trained base puts nearly all its mass there.
        assert 0 <= entry["teacher/vllm_tail_mass"] < 0.01, entry
        assert entry["teacher/vllm_entropy_gap"] >= 0, entry
