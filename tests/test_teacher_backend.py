"""`teacher_backend` without vLLM: the keys' validation, and the entropy bounds behind `teacher_backend: vllm`
(`egrsd.vllm_teacher.topk_entropy`, pure torch). The engine itself is tested in tests/test_vllm_teacher.py."""

import math

import pytest
import torch
from helpers import assert_one_clear_line, run_python

from egrsd.configs import EGRSDConfig
from egrsd.vllm_teacher import engine_max_logprobs, topk_entropy


NO_EXTRA = float("-inf")


def bounds(probs: list[float], k: int, extra: float | None = None):
    """topk_entropy of a distribution given as probabilities (any order), its top k known."""
    ordered = sorted(probs, reverse=True)
    topk = torch.tensor([ordered[:k]], dtype=torch.float64).log()
    extra_logp = torch.tensor([math.log(extra) if extra else NO_EXTRA], dtype=torch.float64)
    lower, upper = topk_entropy(topk, extra_logp, len(probs))
    return float(lower), float(upper)


def entropy(probs: list[float]) -> float:
    return -sum(p * math.log(p) for p in probs if p > 0)


def test_k_covering_the_vocabulary_gives_the_entropy_exactly():
    probs = [0.5, 0.2, 0.15, 0.1, 0.05]
    lower, upper = bounds(probs, k=5)
    assert lower == pytest.approx(entropy(probs), abs=1e-12) and upper == lower


def test_a_flat_tail_is_exact_at_any_k():
    # Uniform over 1000 tokens, top 20 known: every unknown token is as likely as the 20th, so H = log V exactly.
    lower, upper = bounds([1e-3] * 1000, k=20)
    assert lower == pytest.approx(math.log(1000), abs=1e-9)
    assert upper == pytest.approx(math.log(1000), abs=1e-9)


def test_the_bounds_by_hand():
    # Top 2 of [0.6, 0.3, 0.05, 0.05]: H_K = -0.6 log 0.6 - 0.3 log 0.3; tail m = 0.1 over n = 2 tokens, each
    # at most min(m, p_k) = 0.1: lower = H_K - 0.1 log 0.1, upper = H_K + 0.1 log(2 / 0.1).
    known = -0.6 * math.log(0.6) - 0.3 * math.log(0.3)
    lower, upper = bounds([0.6, 0.3, 0.05, 0.05], k=2)
    assert lower == pytest.approx(known - 0.1 * math.log(0.1), abs=1e-12)
    assert upper == pytest.approx(known + 0.1 * math.log(2 / 0.1), abs=1e-12)
    # The tail evenly spread is the upper bound's case: the truth.
    assert upper == pytest.approx(entropy([0.6, 0.3, 0.05, 0.05]), abs=1e-12)
    # Known actual token outside the top k: it leaves the tail (m = 0.05 over one token: exact).
    lower, upper = bounds([0.6, 0.3, 0.05, 0.05], k=2, extra=0.05)
    assert lower == pytest.approx(entropy([0.6, 0.3, 0.05, 0.05]), abs=1e-12) and upper == pytest.approx(lower)


def test_the_truth_lies_between_the_bounds_on_many_distributions():
    generator = torch.Generator().manual_seed(0)
    vocab_size = 500
    for scale in (0.5, 2.0, 5.0, 10.0):  # flat to peaked
        logps = torch.log_softmax(torch.randn(200, vocab_size, generator=generator, dtype=torch.float64) * scale, -1)
        truth = -(logps.exp() * logps).sum(-1)
        ordered = logps.sort(-1, descending=True).values
        for k in (1, 5, 20, 100):
            lower, upper = topk_entropy(ordered[:, :k], torch.full((200,), NO_EXTRA), vocab_size)
            assert (lower <= truth + 1e-9).all() and (truth <= upper + 1e-9).all(), (scale, k)
            tail = 1 - ordered[:, :k].exp().sum(-1)
            assert ((upper - lower) <= tail * math.log(vocab_size - k) + 1e-9).all()
            # Tighter than treating the tail as one outcome (-m log m).
            one_outcome = -(ordered[:, :k].exp() * ordered[:, :k]).sum(-1) - tail * tail.log()
            assert (lower >= one_outcome - 1e-12).all()


def test_impossible_tokens_add_nothing():
    # A -inf log-prob in the top k (a masked logit) and a k-th probability of 0: finite, and the known entropy.
    topk = torch.tensor([[math.log(0.5), math.log(0.5), -math.inf]], dtype=torch.float64)
    lower, upper = topk_entropy(topk, torch.tensor([NO_EXTRA], dtype=torch.float64), vocab_size=10)
    assert float(lower) == pytest.approx(math.log(2)) and float(upper) == pytest.approx(math.log(2))


def test_teacher_backend_defaults_to_the_trainer(tmp_path):
    config = EGRSDConfig(output_dir=str(tmp_path), use_cpu=True)
    assert config.teacher_backend == "trainer" and config.teacher_logprobs_topk == 20


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        ({}, ["use_vllm is false", "or use teacher_backend: trainer"]),
        ({"use_vllm": True, "vllm_mode": "server"}, ["vllm_mode=colocate only", "teacher_backend: trainer"]),
        ({"use_vllm": True, "teacher_model_kind": "base"}, ["not a base teacher", "teacher_backend: trainer"]),
        ({"use_vllm": True, "teacher_model_kind": "ema"}, ["not a ema teacher", "teacher_model_kind: live"]),
        ({"use_vllm": True, "vllm_enable_sleep_mode": True}, ["vllm_enable_sleep_mode off", "teacher_backend"]),
        ({"use_vllm": True, "vllm_tensor_parallel_size": 2}, ["vllm_tensor_parallel_size=1 only"]),
        ({"use_vllm": True, "teacher_logprobs_topk": 0}, ["teacher_logprobs_topk must be a positive integer"]),
    ],
)
def test_teacher_backend_vllm_refuses_what_it_cannot_score(tmp_path, overrides, fragments):
    with pytest.raises(ValueError) as raised:
        EGRSDConfig(output_dir=str(tmp_path), use_cpu=True, teacher_backend="vllm", **overrides)
    message = str(raised.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_teacher_backend_vllm_is_accepted_where_it_can_score_or_there_is_no_teacher(tmp_path):
    settings = dict(output_dir=str(tmp_path), use_cpu=True, teacher_backend="vllm")
    assert EGRSDConfig(**settings, use_vllm=True, vllm_mode="colocate").teacher_backend == "vllm"
    assert EGRSDConfig(**settings, credit_method="grpo").teacher_backend == "vllm"  # no teacher: nothing to score


def test_egrsd_train_check_reports_the_vllm_teacher_without_vllm_in_one_line(tmp_path):
    command = ["-m", "egrsd.train", "--config", "recipes/tiny/egrsd/config.yaml", "--teacher_backend", "vllm"]
    result = run_python(*command, "--check")
    assert_one_clear_line(result, "teacher_backend=vllm", "use_vllm is false", "teacher_backend: trainer")


def test_engine_max_logprobs_leaves_trl_alone_at_the_default():
    # Only above vLLM's default (20) does it touch TRL's module, whose vLLM import fails where vLLM is absent.
    with engine_max_logprobs(None), engine_max_logprobs(20):
        pass
