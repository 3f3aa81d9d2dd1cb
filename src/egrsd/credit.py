"""Token-level credit for GRPO, OPSD, RLSD, EGRSD and CL-EGRSD (the method's math; see docs/method.md).

Pure tensors-in, tensors-out functions with no trainer state. Every method is a per-token advantage `Ahat_t` that
plugs into GRPO's clipped surrogate:

    grpo      Ahat_t = A
    opsd      Ahat_t = clip(Delta_t, -d, d)
    rlsd      Ahat_t = A * ((1 - lambda) + lambda * m_t),        m_t = clip(exp(sign(A) * Delta_t), m_lo, m_hi)
    egrsd     Ahat_t = A * ((1 - lambda) + lambda * m_t * g_t),  g_t = g_min + (1 - g_min) * (1 - min(1, H_t / H_ref))
    cl_egrsd  as egrsd, with H_t replaced by min(H_t, L_t), L_t the mean teacher entropy of the next k positions

with Delta_t = teacher log-prob - student log-prob of the sampled token, and lambda the RLSD mixing weight (1: the
teacher's weight alone, this project's reading; 0: grpo).
"""

import math
from dataclasses import dataclass, field, replace

import torch


CREDIT_METHODS = ("grpo", "opsd", "rlsd", "egrsd", "cl_egrsd")
ENTROPY_METHODS = ("egrsd", "cl_egrsd")
# Ahat_t = A * (...): a rollout with A = 0 gets zero credit whatever its teacher scores.
REWARD_GROUNDED_METHODS = ("rlsd", "egrsd", "cl_egrsd")
ENTROPY_REFS = ("quantile", "log_vocab")
CREDIT_NORMALIZATIONS = ("none", "sequence_mean")

# Log-probs are clamped here before differencing: -inf - (-inf) is NaN, and a token the model cannot produce is
# already at the clip bound of every method long before this value.
LOGP_FLOOR = -1.0e4


@dataclass(frozen=True)
class CreditConfig:
    """Hyper-parameters of the token credit (defaults are the project's choice; docs/method.md explains them).

    Args:
        ratio_clip_low: m_lo, lower clip of the likelihood-ratio magnitude (0 < m_lo <= 1).
        ratio_clip_high: m_hi, upper clip of the likelihood-ratio magnitude (m_hi >= 1).
        gate_floor: g_min, the lowest gate value (0 < g_min <= 1); 1 turns the gate off (egrsd == rlsd).
        entropy_ref: H_ref of the normalized entropy: "quantile" (of the teacher entropy over the batch's valid
            tokens), "log_vocab" (log |V|, needs `vocab_size`), or a positive number in nats.
        entropy_ref_quantile: the quantile used when entropy_ref == "quantile".
        lookahead_window: k, how many following positions the causal lookahead averages (0: cl_egrsd == egrsd).
        lookahead_decay: weight decay^(j-1) of the j-th following position (1: plain mean).
        credit_normalization: "none", or "sequence_mean" to rescale m_t * g_t to mean 1 over each sequence.
        opsd_clip: d, the clip of Delta_t in OPSD's advantage.
        rlsd_lambda: lambda, how much of the teacher's weight the reward-grounded methods mix in (0 <= lambda <= 1);
            the trainer sets the current value of its schedule.
        rlsd_negative_only: the teacher weights only rollouts with A < 0; the others keep A (ms-swift's option).
    """

    ratio_clip_low: float = 0.5
    ratio_clip_high: float = 2.0
    gate_floor: float = 0.2
    entropy_ref: str | float = "quantile"
    entropy_ref_quantile: float = 0.95
    lookahead_window: int = 4
    lookahead_decay: float = 1.0
    credit_normalization: str = "none"
    opsd_clip: float = 1.0
    rlsd_lambda: float = 1.0
    rlsd_negative_only: bool = False

    def __post_init__(self):
        problems = []
        if not 0.0 < self.ratio_clip_low <= 1.0:
            problems.append(f"ratio_clip_low must be in (0, 1], got {self.ratio_clip_low}")
        if not 1.0 <= self.ratio_clip_high < math.inf:
            problems.append(f"ratio_clip_high must be a finite number >= 1, got {self.ratio_clip_high}")
        if not 0.0 < self.gate_floor <= 1.0:
            problems.append(f"gate_floor must be in (0, 1] (no token is silenced), got {self.gate_floor}")
        if isinstance(self.entropy_ref, str):
            if self.entropy_ref not in ENTROPY_REFS:
                problems.append(
                    f"entropy_ref must be one of {ENTROPY_REFS} or a positive number, got {self.entropy_ref!r}"
                )
        elif not (isinstance(self.entropy_ref, int | float) and 0.0 < self.entropy_ref < math.inf):
            problems.append(
                f"entropy_ref must be one of {ENTROPY_REFS} or a positive number, got {self.entropy_ref!r}"
            )
        if not 0.0 < self.entropy_ref_quantile <= 1.0:
            problems.append(f"entropy_ref_quantile must be in (0, 1], got {self.entropy_ref_quantile}")
        if not (isinstance(self.lookahead_window, int) and self.lookahead_window >= 0):
            problems.append(f"lookahead_window must be an integer >= 0, got {self.lookahead_window!r}")
        if not 0.0 < self.lookahead_decay <= 1.0:
            problems.append(f"lookahead_decay must be in (0, 1], got {self.lookahead_decay}")
        if self.credit_normalization not in CREDIT_NORMALIZATIONS:
            problems.append(
                f"credit_normalization must be one of {CREDIT_NORMALIZATIONS}, got {self.credit_normalization!r}"
            )
        if not 0.0 < self.opsd_clip < math.inf:
            problems.append(f"opsd_clip must be a positive finite number, got {self.opsd_clip}")
        if not 0.0 <= self.rlsd_lambda <= 1.0:
            problems.append(f"rlsd_lambda must be in [0, 1], got {self.rlsd_lambda}")
        if problems:
            raise ValueError("Invalid CreditConfig: " + "; ".join(problems))


@dataclass
class TokenCredit:
    """Every per-token quantity of the credit, (B, T) each, zero where mask == 0 (for inspection and logging)."""

    advantages: torch.Tensor  # Ahat_t
    delta: torch.Tensor | None = None  # Delta_t = tau_t - s_t
    ratio: torch.Tensor | None = None  # m_t
    gate: torch.Tensor | None = None  # g_t
    entropy: torch.Tensor | None = None  # H_t
    lookahead_entropy: torch.Tensor | None = None  # L_t (cl_egrsd; H_t where no following position exists)
    entropy_ref: float | None = None  # H_ref actually used
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def flat_group_rows(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """(N,) bool: the rows of groups (`group_size` consecutive rows) whose rewards are all equal, NaN ignored.

    Such a group's GRPO advantage A = (r - mean) / (std + eps) is 0 in exact arithmetic, but float32 leaves dust when
    the mean of equal rewards is inexact: eight rollouts rewarded 0.1 each (wrong but well formatted, under the
    recipes' weights 1.0 and 0.1) get A = -7.45e-5. The reward-grounded methods set it to 0 exactly, as the method
    defines it, so their zero credit and the teacher skipping (`rows_needing_teacher`) see the group as flat.
    """
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be (N,) with N a multiple of {group_size}, got {tuple(rewards.shape)}")
    grouped = rewards.view(-1, group_size)
    scorable = ~torch.isnan(grouped)
    largest = torch.where(scorable, grouped, -math.inf).max(dim=1).values
    smallest = torch.where(scorable, grouped, math.inf).min(dim=1).values
    flat = (largest == smallest) | ~scorable.any(dim=1)
    return flat.repeat_interleave(group_size)


def rows_needing_teacher(method: str, advantages: torch.Tensor, skip_zero_advantage: bool = True) -> torch.Tensor:
    """(B,) bool: the rollouts whose credit depends on the teacher's scores.

    Reward-grounded methods (rlsd, egrsd, cl_egrsd) give a rollout with A == 0 exactly zero credit, so with
    `skip_zero_advantage` only rows with A != 0 need the teacher; opsd needs every row (no reward), grpo none.
    """
    if method not in CREDIT_METHODS:
        raise ValueError(f"Unknown credit method {method!r}; choose one of {CREDIT_METHODS}")
    if method == "grpo":
        return torch.zeros(advantages.shape, dtype=torch.bool, device=advantages.device)
    if method in REWARD_GROUNDED_METHODS and skip_zero_advantage:
        return torch.nan_to_num(advantages, nan=0.0) != 0  # compute_credit reads a NaN A as 0
    return torch.ones(advantages.shape, dtype=torch.bool, device=advantages.device)


def resolve_entropy_ref(
    config: CreditConfig, teacher_entropy: torch.Tensor, mask: torch.Tensor, vocab_size: int | None = None
) -> float:
    """H_ref in nats: the configured number, log |V|, or the quantile of the valid teacher entropies."""
    if not isinstance(config.entropy_ref, str):
        return float(config.entropy_ref)
    if config.entropy_ref == "log_vocab":
        if vocab_size is None:
            raise ValueError("entropy_ref='log_vocab' needs vocab_size")
        return math.log(vocab_size)
    valid = teacher_entropy[mask.bool()].float()
    if valid.numel() == 0:
        return 0.0
    # kthvalue instead of torch.quantile: the latter refuses inputs over 2**24 elements (long rollouts x big batch).
    rank = max(1, math.ceil(config.entropy_ref_quantile * valid.numel()))
    return float(valid.kthvalue(rank).values)


def lookahead_entropy(
    teacher_entropy: torch.Tensor, mask: torch.Tensor, window: int, decay: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """L_t: the (decay-weighted) mean of H_{t+1..t+window} over valid positions; and whether any such one exists."""
    valid = mask.to(teacher_entropy.dtype)
    weighted_sum = torch.zeros_like(teacher_entropy)
    weight_total = torch.zeros_like(teacher_entropy)
    # A loop over the window (k is small), never over tokens.
    for offset in range(1, min(window, teacher_entropy.size(1) - 1) + 1):
        weight = decay ** (offset - 1)
        weighted_sum[:, :-offset] += weight * (teacher_entropy * valid)[:, offset:]
        weight_total[:, :-offset] += weight * valid[:, offset:]
    has_following = weight_total > 0
    lookahead = torch.where(has_following, weighted_sum / weight_total.clamp(min=1e-12), teacher_entropy)
    return lookahead, has_following


def compute_credit(
    method: str,
    advantages: torch.Tensor,
    student_logps: torch.Tensor | None,
    teacher_logps: torch.Tensor | None,
    teacher_entropy: torch.Tensor | None,
    mask: torch.Tensor,
    config: CreditConfig = CreditConfig(),
    *,
    vocab_size: int | None = None,
    scored: torch.Tensor | None = None,
) -> TokenCredit:
    """All per-token credit quantities of `method` (see `token_advantages` for the arguments).

    `scored` (B,) bool marks the rows the teacher weights (default: every row). The others get the method's credit
    without a teacher whatever their teacher inputs hold: A for the reward-grounded methods (0 for a skipped row,
    whose A == 0; see `rows_needing_teacher`), 0 for opsd (a row without a demonstration, for instance). The
    teacher-derived stats (delta, ratio, entropy, gate, lookahead, their fractions) and a quantile H_ref count the
    scored rows only; those stats are NaN when no scored row has a valid token. `advantage_abs_mean` counts every
    row (an unscored row's credit is real).
    """
    if method not in CREDIT_METHODS:
        raise ValueError(f"Unknown credit method {method!r}; choose one of {CREDIT_METHODS}")
    if advantages.dim() != 1 or mask.dim() != 2 or advantages.size(0) != mask.size(0):
        raise ValueError(
            f"advantages must be (B,) and mask (B, T); got {tuple(advantages.shape)}, {tuple(mask.shape)}"
        )
    valid = mask.bool()
    valid_f = valid.to(torch.float32)
    seq_adv = torch.nan_to_num(advantages.to(torch.float32), nan=0.0).unsqueeze(1)  # (B, 1)
    if scored is None or method == "grpo":
        teacher_valid, teacher_valid_f = valid, valid_f
    else:
        if scored.shape != advantages.shape:
            raise ValueError(
                f"scored must be (B,) like advantages {tuple(advantages.shape)}, got {tuple(scored.shape)}"
            )
        teacher_valid = valid & scored.to(valid.device).bool().unsqueeze(1)
        teacher_valid_f = teacher_valid.to(torch.float32)

    def teacher_mean(x: torch.Tensor) -> torch.Tensor:
        """Mean over the scored rows' valid tokens (NaN when `scored` leaves none: not a zero to average in)."""
        if scored is not None and not teacher_valid.any():
            return torch.tensor(math.nan)
        return _masked_mean(x, teacher_valid_f)

    if method == "grpo":
        ahat = seq_adv * valid_f
        return TokenCredit(advantages=ahat, stats={"advantage_abs_mean": _masked_mean(ahat.abs(), valid_f)})

    if student_logps is None or teacher_logps is None:
        raise ValueError(f"credit method {method!r} needs student_logps and teacher_logps")
    for name, tensor in (("student_logps", student_logps), ("teacher_logps", teacher_logps)):
        if tensor.shape != mask.shape:
            raise ValueError(f"{name} must have the mask's shape {tuple(mask.shape)}, got {tuple(tensor.shape)}")

    def clean_logps(x: torch.Tensor) -> torch.Tensor:
        return torch.nan_to_num(x.to(torch.float32), nan=LOGP_FLOOR, neginf=LOGP_FLOOR, posinf=0.0).clamp(
            LOGP_FLOOR, 0.0
        )

    delta = (clean_logps(teacher_logps) - clean_logps(student_logps)) * valid_f
    stats = {"delta_abs_mean": teacher_mean(delta.abs())}

    if method == "opsd":
        ahat = delta.clamp(-config.opsd_clip, config.opsd_clip) * teacher_valid_f
        stats["ratio_clip_frac"] = teacher_mean((delta.abs() > config.opsd_clip).float())
        stats["advantage_abs_mean"] = _masked_mean(ahat.abs(), valid_f)
        return TokenCredit(advantages=ahat, delta=delta, stats=stats)

    # The reward sets the direction; exp(sign(A) * Delta) > 1 where the teacher backs that direction. Clamping in log
    # space is the same clip and never overflows.
    log_lo, log_hi = math.log(config.ratio_clip_low), math.log(config.ratio_clip_high)
    signed_delta = torch.sign(seq_adv) * delta
    ratio = torch.exp(signed_delta.clamp(log_lo, log_hi))
    stats["ratio_mean"] = teacher_mean(ratio)
    stats["ratio_clip_frac"] = teacher_mean(((signed_delta < log_lo) | (signed_delta > log_hi)).float())
    weight = ratio
    credit = TokenCredit(advantages=seq_adv, delta=delta, ratio=ratio * valid_f, stats=stats)

    if method in ENTROPY_METHODS:
        if teacher_entropy is None:
            raise ValueError(f"credit method {method!r} needs teacher_entropy")
        if teacher_entropy.shape != mask.shape:
            raise ValueError(f"teacher_entropy must have the mask's shape {tuple(mask.shape)}")
        entropy = torch.nan_to_num(teacher_entropy.to(torch.float32), nan=0.0, posinf=0.0).clamp(min=0.0) * valid_f
        entropy_ref = resolve_entropy_ref(config, entropy, teacher_valid, vocab_size)
        effective_entropy = entropy
        if method == "cl_egrsd" and config.lookahead_window > 0:
            lookahead, has_following = lookahead_entropy(
                entropy, valid, config.lookahead_window, config.lookahead_decay
            )
            effective_entropy = torch.where(has_following, torch.minimum(entropy, lookahead), entropy)
            credit.lookahead_entropy = lookahead * valid_f
            stats["lookahead_entropy_mean"] = teacher_mean(credit.lookahead_entropy)
        # H_ref = 0 means every valid entropy is 0: a fully confident teacher, gate 1 everywhere.
        normalized = (effective_entropy / entropy_ref).clamp(0.0, 1.0) if entropy_ref > 0 else effective_entropy * 0
        gate = config.gate_floor + (1.0 - config.gate_floor) * (1.0 - normalized)
        weight = weight * gate
        credit.gate = gate * valid_f
        credit.entropy = entropy
        credit.entropy_ref = entropy_ref
        stats["entropy_mean"] = teacher_mean(entropy)
        stats["entropy_ref"] = torch.tensor(entropy_ref)
        stats["gate_mean"] = teacher_mean(gate)
        stats["gate_floor_frac"] = teacher_mean((normalized >= 1.0).float())

    if config.credit_normalization == "sequence_mean":
        # The gate and ratio redistribute credit within each sequence instead of shrinking the step.
        sequence_mean = (weight * valid_f).sum(1, keepdim=True) / valid_f.sum(1, keepdim=True).clamp(min=1.0)
        weight = weight / sequence_mean.clamp(min=1e-12)

    # lambda = 1 leaves the teacher's weight as it is and lambda = 0 makes it 1, both exactly in floating point, so
    # the ends of the schedule are this project's reading and grpo bit for bit.
    teacher_weighted = teacher_valid
    if config.rlsd_negative_only:
        teacher_weighted = teacher_weighted & (seq_adv < 0)
    weight = torch.where(teacher_weighted, (1.0 - config.rlsd_lambda) + config.rlsd_lambda * weight, 1.0)
    ahat = seq_adv * weight * valid_f
    credit.advantages = ahat
    stats["advantage_abs_mean"] = _masked_mean(ahat.abs(), valid_f)
    return credit


def token_advantages(
    method: str,
    advantages: torch.Tensor,
    student_logps: torch.Tensor | None,
    teacher_logps: torch.Tensor | None,
    teacher_entropy: torch.Tensor | None,
    mask: torch.Tensor,
    config: CreditConfig = CreditConfig(),
    *,
    vocab_size: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token advantages Ahat (B, T) of `method`, and scalar logging stats.

    Args:
        method: "grpo" | "opsd" | "rlsd" | "egrsd" | "cl_egrsd".
        advantages: (B,) GRPO group-normalized advantages A.
        student_logps: (B, T) rollout-time log-probs s_t of the sampled tokens (unused by "grpo").
        teacher_logps: (B, T) teacher log-probs tau_t of the same tokens (None only for "grpo").
        teacher_entropy: (B, T) teacher entropy H_t over the full vocabulary (needed by "egrsd", "cl_egrsd").
        mask: (B, T) 1 on completion tokens.
        config: the credit hyper-parameters.
        vocab_size: |V|, needed only when config.entropy_ref == "log_vocab".

    Returns:
        Ahat, zero where mask == 0 and finite everywhere (log-probs may be -inf or very negative), and a dict of
        scalar tensors: advantage_abs_mean, and where the method has them delta_abs_mean, ratio_mean,
        ratio_clip_frac, entropy_mean, entropy_ref, gate_mean, gate_floor_frac, lookahead_entropy_mean.
    """
    credit = compute_credit(
        method, advantages, student_logps, teacher_logps, teacher_entropy, mask, config, vocab_size=vocab_size
    )
    return credit.advantages, credit.stats


def with_entropy_ref(config: CreditConfig, entropy_ref: float) -> CreditConfig:
    """`config` with H_ref fixed to a number (to apply one batch-level H_ref to every micro-batch of that batch)."""
    return replace(config, entropy_ref=max(float(entropy_ref), 1e-12))
