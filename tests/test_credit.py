import math

import pytest
import torch

from egrsd.credit import CreditConfig, compute_credit, lookahead_entropy, token_advantages


def close(actual, expected, atol=1e-6):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), atol=atol, rtol=0)


def random_batch(seed=0, batch=6, length=9):
    generator = torch.Generator().manual_seed(seed)
    advantages = torch.randn(batch, generator=generator)
    advantages[0] = 0.0  # an equally rewarded group member
    student = -torch.rand(batch, length, generator=generator) * 6
    teacher = -torch.rand(batch, length, generator=generator) * 6
    entropy = torch.rand(batch, length, generator=generator) * 3
    mask = torch.ones(batch, length)
    mask[1, 6:] = 0
    mask[2, 2:] = 0
    return advantages, student, teacher, entropy, mask


def test_rlsd_ratio_exact_values():
    config = CreditConfig(ratio_clip_low=0.5, ratio_clip_high=2.0)
    advantages = torch.tensor([1.0, -2.0])
    delta = torch.log(torch.tensor([[1.5, 4.0, 0.25], [2.0, 0.5, 1.0]]))
    student = torch.full((2, 3), -3.0)  # log-probs stay <= 0 with the Deltas below
    ahat, stats = token_advantages("rlsd", advantages, student, student + delta, None, torch.ones(2, 3), config)
    # A > 0: exp(Delta) clipped to [0.5, 2]; A < 0: exp(-Delta), the teacher backing the penalty.
    close(ahat, [[1.5, 2.0, 0.5], [-1.0, -4.0, -2.0]], atol=1e-5)
    close(stats["ratio_clip_frac"], 2 / 6)
    close(stats["delta_abs_mean"], delta.abs().mean(), atol=1e-6)


def test_egrsd_gate_exact_values():
    config = CreditConfig(gate_floor=0.2, entropy_ref=2.0)
    advantages = torch.tensor([2.0])
    logps = torch.full((1, 4), -0.5)
    entropy = torch.tensor([[0.0, 1.0, 3.0, 0.5]])
    ahat, stats = token_advantages("egrsd", advantages, logps, logps, entropy, torch.ones(1, 4), config)
    # h = min(1, H / 2) = [0, .5, 1, .25]; g = 0.2 + 0.8 * (1 - h); the ratio is 1 (Delta = 0).
    close(ahat, [[2.0, 2 * 0.6, 2 * 0.2, 2 * 0.8]])
    close(stats["gate_mean"], (1.0 + 0.6 + 0.2 + 0.8) / 4)
    close(stats["gate_floor_frac"], 0.25)
    close(stats["entropy_ref"], 2.0)


def test_entropy_ref_quantile_and_log_vocab():
    entropy = torch.tensor([[1.0, 2.0, 3.0, 4.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    logps = torch.zeros(1, 5)
    config = CreditConfig(entropy_ref="quantile", entropy_ref_quantile=0.5, gate_floor=0.5)
    credit = compute_credit("egrsd", torch.tensor([1.0]), logps, logps, entropy, mask, config)
    assert credit.entropy_ref == 2.0  # the median of the valid entropies; the masked 100 is ignored
    close(credit.gate, [[0.75, 0.5, 0.5, 0.5, 0.0]])
    credit = compute_credit(
        "egrsd", torch.tensor([1.0]), logps, logps, entropy, mask, CreditConfig(entropy_ref="log_vocab"), vocab_size=8
    )
    assert credit.entropy_ref == pytest.approx(math.log(8))
    with pytest.raises(ValueError, match="vocab_size"):
        compute_credit(
            "egrsd", torch.tensor([1.0]), logps, logps, entropy, mask, CreditConfig(entropy_ref="log_vocab")
        )


def test_opsd_clips_delta_and_ignores_reward():
    student = torch.tensor([[-1.0, -1.0, -1.0]])
    teacher = torch.tensor([[-0.5, -4.0, -1.0]])
    for reward in (0.0, 3.0, -3.0):
        ahat, stats = token_advantages(
            "opsd", torch.tensor([reward]), student, teacher, None, torch.ones(1, 3), CreditConfig(opsd_clip=1.0)
        )
        close(ahat, [[0.5, -1.0, 0.0]])
        close(stats["ratio_clip_frac"], 1 / 3)


def test_grpo_is_the_sequence_advantage_on_valid_tokens():
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    ahat, _ = token_advantages("grpo", torch.tensor([0.5, -1.5]), None, None, None, mask)
    close(ahat, [[0.5, 0.5, 0.0], [-1.5, 0.0, 0.0]])


def test_egrsd_with_floor_one_equals_rlsd():
    advantages, student, teacher, entropy, mask = random_batch()
    rlsd, _ = token_advantages("rlsd", advantages, student, teacher, None, mask, CreditConfig(gate_floor=1.0))
    egrsd, _ = token_advantages("egrsd", advantages, student, teacher, entropy, mask, CreditConfig(gate_floor=1.0))
    assert torch.equal(rlsd, egrsd)
    assert rlsd.abs().sum() > 0


def test_rlsd_with_equal_logps_equals_grpo():
    advantages, student, _, _, mask = random_batch()
    grpo, _ = token_advantages("grpo", advantages, None, None, None, mask)
    rlsd, _ = token_advantages("rlsd", advantages, student, student.clone(), None, mask)
    assert torch.equal(grpo, rlsd)


def test_cl_egrsd_with_zero_window_equals_egrsd():
    advantages, student, teacher, entropy, mask = random_batch(seed=1)
    config = CreditConfig(lookahead_window=0)
    egrsd, _ = token_advantages("egrsd", advantages, student, teacher, entropy, mask, config)
    cl_egrsd, _ = token_advantages("cl_egrsd", advantages, student, teacher, entropy, mask, config)
    assert torch.equal(egrsd, cl_egrsd)


@pytest.mark.parametrize("method", ["rlsd", "egrsd", "cl_egrsd"])
@pytest.mark.parametrize("normalization", ["none", "sequence_mean"])
def test_sign_follows_reward_and_floor_bounds_magnitude(method, normalization):
    config = CreditConfig(ratio_clip_low=0.5, ratio_clip_high=2.0, gate_floor=0.2, credit_normalization=normalization)
    for seed in range(5):
        advantages, student, teacher, entropy, mask = random_batch(seed=seed)
        ahat, _ = token_advantages(method, advantages, student, teacher, entropy, mask, config)
        valid = mask.bool()
        expanded = advantages.unsqueeze(1).expand_as(ahat)
        assert torch.equal(torch.sign(ahat[valid]), torch.sign(expanded[valid]))
        # sequence_mean divides by the mean weight, at most m_hi, so its floor is m_lo * g_min / m_hi.
        bound = 0.5 * 0.2 * (1.0 if normalization == "none" else 1 / 2.0)
        assert torch.all(ahat[valid].abs() >= bound * expanded[valid].abs() - 1e-6)


def test_sequence_mean_normalization_makes_the_weights_average_one():
    advantages, student, teacher, entropy, mask = random_batch(seed=3)
    advantages = advantages.abs() + 0.5
    ahat, _ = token_advantages(
        "egrsd", advantages, student, teacher, entropy, mask, CreditConfig(credit_normalization="sequence_mean")
    )
    weights = ahat / advantages.unsqueeze(1)
    close((weights * mask).sum(1) / mask.sum(1), torch.ones(len(advantages)), atol=1e-5)


def test_transient_fork_keeps_more_weight_than_sustained_uncertainty():
    config = CreditConfig(entropy_ref=2.0, gate_floor=0.2, lookahead_window=3)
    logps = torch.zeros(2, 6)
    entropy = torch.tensor(
        [
            [0.0, 2.0, 0.1, 0.0, 0.1, 0.0],  # a spike at t=1 followed by confident context: a transient fork
            [0.0, 2.0, 2.0, 2.0, 2.0, 2.0],  # the same spike inside a sustained high-entropy span
        ]
    )
    mask = torch.ones(2, 6)
    advantages = torch.tensor([1.0, 1.0])
    cl, _ = token_advantages("cl_egrsd", advantages, logps, logps, entropy, mask, config)
    plain, _ = token_advantages("egrsd", advantages, logps, logps, entropy, mask, config)
    assert plain[0, 1] == plain[1, 1] == pytest.approx(0.2)  # the plain gate cannot tell them apart
    # Transient: L = (0.1 + 0 + 0.1) / 3, H~ = L, gate = 0.2 + 0.8 * (1 - L / 2).
    assert cl[0, 1].item() == pytest.approx(0.2 + 0.8 * (1 - 0.2 / 3 / 2), abs=1e-6)
    assert cl[1, 1].item() == pytest.approx(0.2)
    # At the end of the sequence there is no following position: H~ = H.
    assert cl[1, 5].item() == pytest.approx(0.2)


def test_lookahead_uses_only_valid_following_positions_and_decay():
    entropy = torch.tensor([[4.0, 1.0, 3.0, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    lookahead, has_following = lookahead_entropy(entropy, mask, window=3, decay=0.5)
    # t=0: (1 * 1.0 + 0.5 * 3.0) / 1.5; t=1: 3.0; t=2: only the masked position follows -> falls back to H.
    close(lookahead[0, :3], [(1.0 + 1.5) / 1.5, 3.0, 3.0])
    assert has_following.tolist() == [[True, True, False, False]]


@pytest.mark.parametrize("method", ["grpo", "opsd", "rlsd", "egrsd", "cl_egrsd"])
def test_masked_positions_are_zero_and_everything_finite(method):
    advantages, student, teacher, entropy, mask = random_batch(seed=4)
    student[1, 7] = -math.inf  # masked
    student[3, 2] = -math.inf  # valid: a token the student could not produce
    teacher[4, 1] = -math.inf
    teacher[5, 5] = -1e30
    student[5, 6] = float("nan")
    needs_teacher = method != "grpo"
    ahat, stats = token_advantages(
        method,
        advantages,
        student if needs_teacher else None,
        teacher if needs_teacher else None,
        entropy if method in ("egrsd", "cl_egrsd") else None,
        mask,
    )
    assert torch.isfinite(ahat).all()
    assert (ahat[mask == 0] == 0).all()
    assert all(torch.isfinite(value) for value in stats.values())


@pytest.mark.parametrize("method", ["grpo", "rlsd", "egrsd", "cl_egrsd"])
def test_zero_advantage_rows_give_zero(method):
    advantages, student, teacher, entropy, mask = random_batch(seed=5)
    ahat, _ = token_advantages(method, advantages, student, teacher, entropy, mask)
    assert (ahat[0] == 0).all()
    assert (ahat[1:][mask[1:].bool()] != 0).all()


def test_all_masked_batch_has_zero_stats():
    zeros = torch.zeros(2, 3)
    ahat, stats = token_advantages("cl_egrsd", torch.ones(2), zeros, zeros, zeros, zeros)
    assert (ahat == 0).all()
    assert all(value == 0 for value in stats.values())


def test_invalid_inputs_are_named():
    with pytest.raises(ValueError, match="Unknown credit method 'egrsdd'"):
        token_advantages("egrsdd", torch.ones(1), None, None, None, torch.ones(1, 2))
    with pytest.raises(ValueError, match="needs student_logps and teacher_logps"):
        token_advantages("rlsd", torch.ones(1), None, None, None, torch.ones(1, 2))
    with pytest.raises(ValueError, match="needs teacher_entropy"):
        token_advantages("egrsd", torch.ones(1), torch.zeros(1, 2), torch.zeros(1, 2), None, torch.ones(1, 2))
    with pytest.raises(ValueError, match="gate_floor must be in \\(0, 1\\]"):
        CreditConfig(gate_floor=0.0)
    with pytest.raises(ValueError, match="ratio_clip_low"):
        CreditConfig(ratio_clip_low=1.5)
    with pytest.raises(ValueError, match="entropy_ref"):
        CreditConfig(entropy_ref="median")


def test_rows_needing_teacher():
    from egrsd.credit import rows_needing_teacher

    advantages = torch.tensor([0.0, 1.5, -0.0, float("nan"), -2.0])
    assert rows_needing_teacher("grpo", advantages).tolist() == [False] * 5
    assert rows_needing_teacher("opsd", advantages).tolist() == [True] * 5
    for method in ("rlsd", "egrsd", "cl_egrsd"):
        assert rows_needing_teacher(method, advantages).tolist() == [False, True, False, False, True]
        assert rows_needing_teacher(method, advantages, skip_zero_advantage=False).tolist() == [True] * 5


@pytest.mark.parametrize("normalization", ["none", "sequence_mean"])
@pytest.mark.parametrize("method", ["rlsd", "egrsd", "cl_egrsd"])
def test_skipped_rows_change_no_credit(method, normalization):
    """Zero-advantage rows without teacher scores (zeros or garbage in their place): every row's credit is exactly
    the one with real scores (H_ref fixed), and the teacher's stats are those of the scored rows alone."""
    advantages, student, teacher, entropy, mask = random_batch(seed=3)
    advantages[3] = 0.0
    scored = advantages != 0
    config = CreditConfig(entropy_ref=1.7, credit_normalization=normalization)
    full = compute_credit(method, advantages, student, teacher, entropy, mask, config)
    for fill in (0.0, float("nan"), float("-inf")):
        stand_in_teacher = torch.where(scored.unsqueeze(1), teacher, torch.full_like(teacher, fill))
        stand_in_entropy = torch.where(scored.unsqueeze(1), entropy, torch.full_like(entropy, fill))
        skipped = compute_credit(
            method, advantages, student, stand_in_teacher, stand_in_entropy, mask, config, scored=scored
        )
        assert torch.equal(skipped.advantages, full.advantages)
        assert (skipped.advantages[~scored] == 0).all()
    subset = compute_credit(
        method, advantages[scored], student[scored], teacher[scored], entropy[scored], mask[scored], config
    )
    for name, value in skipped.stats.items():
        if name == "advantage_abs_mean":  # every row counts: a skipped row's zero credit is real
            close(value, full.stats[name])
        else:
            close(value, subset.stats[name])


def test_quantile_entropy_ref_counts_only_scored_rows():
    advantages = torch.tensor([0.0, 1.0])
    zeros = torch.zeros(2, 4)
    entropy = torch.tensor([[9.0, 9.0, 9.0, 9.0], [0.1, 0.2, 0.3, 0.4]])
    config = CreditConfig(entropy_ref_quantile=0.5)
    scored = torch.tensor([False, True])
    credit = compute_credit("egrsd", advantages, zeros, zeros, entropy, torch.ones(2, 4), config, scored=scored)
    assert credit.entropy_ref == pytest.approx(0.2)  # the 2nd of 4 scored values; with row 0 it would be 9.0


def test_a_batch_without_scored_rows_has_zero_credit_and_nan_teacher_stats():
    advantages = torch.zeros(2)
    zeros = torch.zeros(2, 3)
    credit = compute_credit(
        "cl_egrsd", advantages, zeros, zeros, zeros, torch.ones(2, 3), scored=torch.zeros(2, dtype=torch.bool)
    )
    assert (credit.advantages == 0).all()
    assert credit.stats["advantage_abs_mean"] == 0
    teacher_stats = {
        name: value for name, value in credit.stats.items() if name not in ("advantage_abs_mean", "entropy_ref")
    }
    assert teacher_stats and all(math.isnan(value) for value in teacher_stats.values())


def test_unscored_rows_keep_the_credit_without_a_teacher():
    """A row the teacher does not weight (no demonstration, say) keeps A under the reward-grounded methods and gets
    0 under opsd, whatever its teacher inputs hold."""
    advantages = torch.tensor([0.5, -1.5])
    student, teacher = torch.full((2, 3), -2.0), torch.full((2, 3), -1.0)
    entropy, mask = torch.full((2, 3), 0.7), torch.ones(2, 3)
    first_only = torch.tensor([True, False])
    for method in ("rlsd", "egrsd", "cl_egrsd"):
        credit = compute_credit(method, advantages, student, teacher, entropy, mask, scored=first_only)
        close(credit.advantages[1], [-1.5, -1.5, -1.5])
        assert not torch.equal(credit.advantages[0], torch.full((3,), 0.5))  # the scored row is weighted
    credit = compute_credit("opsd", advantages, student, teacher, None, mask, scored=first_only)
    close(credit.advantages, [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])


def test_rlsd_as_published_mixes_the_clipped_weight_with_lambda():
    """Ahat = A * ((1 - lambda) + lambda * clip(exp(sign(A) * Delta), 1 - eps, 1 + eps)), eps = 0.2, lambda = 0.5."""
    config = CreditConfig(ratio_clip_low=0.8, ratio_clip_high=1.2, rlsd_lambda=0.5)
    advantages = torch.tensor([1.0, -2.0])
    delta = torch.log(torch.tensor([[1.1, 4.0, 0.25], [2.0, 0.9, 1.0]]))
    student = torch.full((2, 3), -3.0)
    ahat, _ = token_advantages("rlsd", advantages, student, student + delta, None, torch.ones(2, 3), config)
    # A > 0: w = clip(exp(Delta)) = [1.1, 1.2, 0.8]; A < 0: w = clip(exp(-Delta)) = [0.8, 1/0.9, 1.0]
    expected = [
        [0.5 + 0.5 * 1.1, 0.5 + 0.5 * 1.2, 0.5 + 0.5 * 0.8],
        [-2 * (0.5 + 0.5 * 0.8), -2 * (0.5 + 0.5 / 0.9), -2.0],
    ]
    close(ahat, expected, atol=1e-5)


@pytest.mark.parametrize("method", ["rlsd", "egrsd", "cl_egrsd"])
@pytest.mark.parametrize("normalization", ["none", "sequence_mean"])
def test_lambda_zero_is_grpo_and_lambda_one_is_the_unmixed_credit_bit_for_bit(method, normalization):
    advantages, student, teacher, entropy, mask = random_batch(seed=3)
    grpo, _ = token_advantages("grpo", advantages, None, None, None, mask)
    mixed_out, _ = token_advantages(
        method,
        advantages,
        student,
        teacher,
        entropy,
        mask,
        CreditConfig(rlsd_lambda=0.0, credit_normalization=normalization),
    )
    assert torch.equal(mixed_out, grpo)
    unmixed = compute_credit(
        method, advantages, student, teacher, entropy, mask, CreditConfig(credit_normalization=normalization)
    )
    expected = advantages.unsqueeze(1) * (unmixed.ratio if unmixed.gate is None else unmixed.ratio * unmixed.gate)
    if normalization == "none":  # the weight itself, not re-derived: lambda = 1 is exactly A * m * g
        assert torch.equal(unmixed.advantages, expected * mask)
    full, _ = token_advantages(
        method,
        advantages,
        student,
        teacher,
        entropy,
        mask,
        CreditConfig(rlsd_lambda=1.0, credit_normalization=normalization),
    )
    assert torch.equal(full, unmixed.advantages)


def test_lambda_mixes_the_gated_weight_as_a_whole():
    config = CreditConfig(gate_floor=0.2, entropy_ref=2.0, rlsd_lambda=0.25)
    advantages = torch.tensor([2.0])
    student = torch.zeros(1, 2) - 1.0
    teacher = student + torch.log(torch.tensor([[1.5, 1.0]]))  # m = [1.5, 1]
    entropy = torch.tensor([[1.0, 4.0]])  # g = [0.2 + 0.8 * 0.5, 0.2] = [0.6, 0.2]
    ahat, _ = token_advantages("egrsd", advantages, student, teacher, entropy, torch.ones(1, 2), config)
    close(ahat, [[2 * (0.75 + 0.25 * 1.5 * 0.6), 2 * (0.75 + 0.25 * 1.0 * 0.2)]], atol=1e-5)


def test_negative_only_weights_only_penalised_rollouts():
    config = CreditConfig(rlsd_negative_only=True)
    advantages = torch.tensor([1.0, -1.0])
    student = torch.full((2, 2), -2.0)
    teacher = student + math.log(1.5)
    ahat, stats = token_advantages("rlsd", advantages, student, teacher, None, torch.ones(2, 2), config)
    close(ahat, [[1.0, 1.0], [-1 / 1.5, -1 / 1.5]], atol=1e-6)  # A > 0 keeps A; A < 0: exp(-Delta)
    with pytest.raises(ValueError, match="rlsd_lambda must be in"):
        CreditConfig(rlsd_lambda=1.5)


def test_flat_group_rows():
    from egrsd.credit import flat_group_rows

    nan = float("nan")
    rewards = torch.tensor([0.1, 0.1, 0.1, 0.1, 0.0, 1.0, 0.0, 0.0, nan, 2.0, 2.0, nan, nan, nan, nan, nan])
    assert flat_group_rows(rewards, 4).tolist() == [True] * 4 + [False] * 4 + [True] * 8
    with pytest.raises(ValueError, match="multiple of 4"):
        flat_group_rows(torch.zeros(6), 4)
