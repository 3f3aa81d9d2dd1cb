"""`teacher_backend: vllm`: the teacher scored by the colocated vLLM rollout engine, not by a training forward.

The engine already holds the live policy's weights (TRL syncs them before each generation), so the teacher pass is a
prefill of each row's teacher sequence (teacher prompt ids + completion ids, as the trainer path scores them) with
vLLM's prompt log-probs (`SamplingParams(prompt_logprobs=k, max_tokens=1)`). For every completion position vLLM
returns the log-prob of the actual token (exact, wherever it ranks) and the top-k log-probs.

Entropy from the top k. With K the tokens whose probabilities are known (the top k, plus the actual token when it is
outside them), m = 1 - sum_K p the mass of the other n = V - |K| tokens and p_k the k-th largest probability (no
unknown token is more likely), the true entropy is

    H = H_K + sum_unknown(-p log p),  H_K = -sum_K p log p,

and since every unknown token has p <= min(m, p_k), and n tokens of total mass m have at most the entropy of a uniform
spread:

    H_K - m log min(m, p_k)  <=  H  <=  H_K + m log(n / m).

`topk_entropy` returns the lower bound as the estimate (a gate fed an entropy never above the truth) and the upper
bound. The gap between them is m log(n min(m, p_k) / m) <= m log n; it is 0 when k covers the vocabulary (m = 0, n = 0)
and small when the tail is either light (m -> 0) or flat (p_k -> m / n). Treating the tail as one outcome (-m log m)
would be looser: m log(1/m) <= m log(1/min(m, p_k)).

Temperature. vLLM computes prompt log-probs from the raw logits: its sampling parameters (temperature included)
apply to sampled tokens only, whatever `logprobs_mode`. The trainer path divides the logits by TRL's temperature in
float32 (`egrsd.scoring.chunked_logps_and_entropy`), so for the scoring call the model's `compute_logits` is wrapped
to return `logits.float() / temperature`; vLLM's log-softmax then runs on those. It is restored before returning.
"""

import contextlib
import math

import torch


# vLLM's default `max_logprobs` (0.31.0, ModelConfig): TRL 1.16 creates the colocated engine without setting it.
VLLM_DEFAULT_MAX_LOGPROBS = 20


def topk_entropy(
    topk_logps: torch.Tensor, extra_logps: torch.Tensor, vocab_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds of each position's entropy from its top-k log-probs (see the module docstring).

    Args:
        topk_logps: (N, k) log-probs of each position's k most likely tokens, the k-th the smallest.
        extra_logps: (N,) log-prob of a further known token (the actual one when it is outside the top k), or -inf.
        vocab_size: V, the number of tokens the distribution is over.

    Returns:
        (N,) lower bound (the estimate) and (N,) upper bound of the entropy in nats, float64.
    """
    topk_logps = topk_logps.double()
    extra_logps = extra_logps.double()
    k = topk_logps.size(-1)
    topk_probs = topk_logps.exp()
    extra_probs = extra_logps.exp()
    # p log p is 0 at p = 0 (a -inf log-prob, or one that underflows).
    known_entropy = -torch.where(topk_probs > 0, topk_probs * topk_logps, 0.0).sum(-1) - torch.where(
        extra_probs > 0, extra_probs * extra_logps, 0.0
    )
    unknown = (vocab_size - k - (extra_probs > 0).long()).clamp(min=0)
    tail_mass = (1.0 - topk_probs.sum(-1) - extra_probs).clamp(min=0.0)
    # No unknown token, or none that can hold mass (the k-th is already 0): what remains is rounding.
    tail_mass = torch.where((unknown > 0) & (topk_probs[:, -1] > 0), tail_mass, torch.zeros_like(tail_mass))
    has_tail = tail_mass > 0
    safe_mass = torch.where(has_tail, tail_mass, torch.ones_like(tail_mass))
    largest_unknown = torch.minimum(safe_mass, topk_probs[:, -1])
    lower = known_entropy + torch.where(has_tail, -tail_mass * largest_unknown.log(), torch.zeros_like(tail_mass))
    spread = unknown.clamp(min=1).double() / safe_mass
    upper = known_entropy + torch.where(has_tail, tail_mass * spread.log(), torch.zeros_like(tail_mass))
    return lower, upper


@contextlib.contextmanager
def engine_max_logprobs(max_logprobs: int | None):
    """While TRL builds its colocated vLLM engine: `LLM(..., max_logprobs=max_logprobs)` (TRL 1.16 passes none; vLLM
    refuses `prompt_logprobs` above it). None: nothing changes."""
    if max_logprobs is None or max_logprobs <= VLLM_DEFAULT_MAX_LOGPROBS:
        yield
        return
    import trl.generation.vllm_generation as vllm_generation

    engine_class = vllm_generation.LLM

    def build_engine(*args, **kwargs):
        kwargs["max_logprobs"] = max(max_logprobs, kwargs.get("max_logprobs") or VLLM_DEFAULT_MAX_LOGPROBS)
        return engine_class(*args, **kwargs)

    vllm_generation.LLM = build_engine
    try:
        yield
    finally:
        vllm_generation.LLM = engine_class


def _engine_model(llm):
    """The model inside a colocated (in-process) engine."""
    return llm.llm_engine.model_executor.driver_worker.model_runner.get_model()


@contextlib.contextmanager
def _tempered_logits(model, temperature: float):
    """The model's `compute_logits` returning float32 logits / temperature (TRL's semantics), restored after."""
    if temperature == 1.0:
        yield
        return
    compute_logits = model.compute_logits

    def tempered(hidden_states):
        logits = compute_logits(hidden_states)
        return None if logits is None else logits.float() / temperature

    model.compute_logits = tempered
    try:
        yield
    finally:
        del model.compute_logits  # back to the class's method


class VLLMTeacherScorer:
    """Teacher log-probs and entropies from a colocated vLLM engine's prompt log-probs."""

    def __init__(self, llm, topk: int):
        self.llm = llm
        model_config = llm.llm_engine.model_config
        self.vocab_size = model_config.get_vocab_size()
        self.max_model_len = model_config.max_model_len
        self.topk = min(topk, self.vocab_size)
        max_logprobs = model_config.max_logprobs
        if max_logprobs != -1 and max_logprobs < self.topk:
            raise RuntimeError(
                f"the vLLM engine allows {max_logprobs} log-probs per position, the teacher needs {self.topk}: it was "
                "not built under `engine_max_logprobs`"
            )
        self.last_stats: dict[str, float] = {}

    @torch.no_grad()
    def score(
        self,
        prompt_ids: list[list[int]],
        completion_ids: torch.Tensor,
        completion_mask: torch.Tensor,
        temperature: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) float32 log-probs of the completion tokens and entropy estimates (lower bounds), zeros where the
        mask is 0. Rows with an empty mask are not sent. `last_stats` holds sums over the scored positions: the tail
        mass and the bound gap (upper - lower) of the entropy."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        device = completion_ids.device
        logps = torch.zeros(completion_ids.shape, dtype=torch.float32, device=device)
        entropy = torch.zeros_like(logps)
        lengths = [int(n) for n in completion_mask.sum(1).tolist()]  # right-padded completions
        rows = [row for row, length in enumerate(lengths) if length > 0]
        self.last_stats = {"positions": 0.0, "tail_mass_sum": 0.0, "entropy_gap_sum": 0.0}
        if not rows:
            return logps, entropy
        ids = completion_ids.tolist()
        sequences = [prompt_ids[row] + ids[row][: lengths[row]] for row in rows]
        params = SamplingParams(
            max_tokens=1, temperature=0.0, prompt_logprobs=self.topk, detokenize=False, flat_logprobs=True
        )
        with _tempered_logits(_engine_model(self.llm), temperature):
            outputs = self.llm.generate(
                [TokensPrompt(prompt_token_ids=sequence) for sequence in sequences], params, use_tqdm=False
            )
        width = self.topk + 1  # per position: the actual token, then the top k by rank
        for row, output in zip(rows, outputs):
            flat = output.prompt_logprobs
            start = len(prompt_ids[row])  # position i of the prompt log-probs scores token i given tokens < i
            first = flat.start_indices[start]
            if flat.token_ids[first : first + lengths[row] * width : width] != ids[row][: lengths[row]]:
                raise RuntimeError("vLLM's prompt log-probs are not aligned with the completion tokens")
            table = torch.tensor(flat.logprobs[first : first + lengths[row] * width], dtype=torch.float64)
            ranks = torch.tensor(flat.ranks[first : first + lengths[row] * width : width])
            table = table.view(lengths[row], width)
            actual, topk_logps = table[:, 0], table[:, 1:]
            outside = torch.where(ranks > self.topk, actual, torch.full_like(actual, -math.inf))
            lower, upper = topk_entropy(topk_logps, outside, self.vocab_size)
            logps[row, : lengths[row]] = actual.float().to(device)
            entropy[row, : lengths[row]] = lower.float().to(device)
            tail = (1.0 - topk_logps.exp().sum(-1) - outside.exp()).clamp(min=0.0)
            self.last_stats["positions"] += lengths[row]
            self.last_stats["tail_mass_sum"] += float(tail.sum())
            self.last_stats["entropy_gap_sum"] += float((upper - lower).sum())
        return logps, entropy
