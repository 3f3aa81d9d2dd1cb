"""Length-aware rewards for the efficient-reasoning baselines.

* `length_penalty_reward`: Kimi 1.5's group-relative length reward (arXiv:2501.12599, section 2.3.3).
* `CosineScaledReward`: TRL's cosine-scaled reward (`trl.rewards.get_cosine_scaled_reward`), with correctness from
  this repo's thinking-mode grader.
* `SoftOverlongPunishment`: TRL's DAPO soft overlong punishment (`trl.rewards.get_soft_overlong_punishment`).

The TRL pieces are imported on first use, so `import egrsd.rewards` stays light (the evaluation module imports it too).
Both wrappers are module-level classes and so stay picklable, like TRL's own reward objects.
"""

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from .accuracy import grade_batch
from .text import completion_text


# Used when neither the reward's parameters nor the trainer's max_completion_length say otherwise.
DEFAULT_MAX_COMPLETION_LENGTH = 4096


def _group_key(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    return json.dumps(prompt, sort_keys=True, default=str)


def _lengths(completions: Sequence[Any], completion_ids: Sequence[Sequence[int]] | None) -> list[int]:
    if completion_ids is not None:
        return [len(ids) for ids in completion_ids]
    return [len(completion_text(c)) for c in completions]


def length_penalty_reward(
    completions: Sequence[Any],
    answer: Sequence[Any],
    prompts: Sequence[Any] | None = None,
    completion_ids: Sequence[Sequence[int]] | None = None,
    problem: Sequence[Any] | None = None,
    **kwargs,
) -> list[float | None]:
    """Kimi 1.5 length reward: within each group of rollouts of one prompt, shorter is better.

    With `lambda = 0.5 - (len - min_len) / (max_len - min_len)` over the group's lengths, a correct completion gets
    `lambda` and a wrong one `min(0, lambda)`; a group whose completions all have one length gets 0. Lengths are token
    counts (`completion_ids`, which TRL passes) or, without them, characters. Groups are rollouts with the same
    prompt (`prompts`, which TRL passes; else the `problem` column). Note that TRL calls rewards per process: when a
    group's rollouts are spread over several GPUs, each process sees only its part of the group.
    """
    keys = prompts if prompts is not None else problem
    if keys is None:
        raise ValueError("length_penalty_reward needs `prompts` (passed by TRL) or a `problem` column to form groups")
    scores = [score for score, _ in grade_batch(completions, answer)]
    lengths = _lengths(completions, completion_ids)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        groups[_group_key(key)].append(i)
    rewards: list[float | None] = [None] * len(completions)
    for members in groups.values():
        shortest = min(lengths[i] for i in members)
        longest = max(lengths[i] for i in members)
        for i in members:
            if scores[i] is None:
                continue  # unparseable gold: no correctness, so no length reward either
            if longest == shortest:
                rewards[i] = 0.0
                continue
            lam = 0.5 - (lengths[i] - shortest) / (longest - shortest)
            rewards[i] = lam if scores[i] == 1.0 else min(0.0, lam)
    return rewards


class CosineScaledReward:
    """TRL's cosine-scaled reward, with correctness decided by this repo's grader (answer after `</think>`).

    TRL's version grades with its own accuracy reward against a `solution` column and reads the whole completion, so
    a boxed answer inside the thinking block would count. Here each completion is graded first, and TRL's object then
    receives a stand-in it grades the same way (a boxed "1" against gold "1" when correct, an empty completion when
    wrong, an unparseable gold when skipped): the length shaping is exactly TRL's, the verdict is ours.
    """

    __name__ = "cosine_scaled_reward"

    def __init__(
        self,
        max_len: int = DEFAULT_MAX_COMPLETION_LENGTH,
        min_value_wrong: float = -1.0,
        max_value_wrong: float = -0.5,
        min_value_correct: float = 0.5,
        max_value_correct: float = 1.0,
    ):
        if max_len <= 0:
            raise ValueError(f"cosine_scaled: max_len must be positive, got {max_len}")
        self.params = dict(
            max_len=max_len,
            min_value_wrong=min_value_wrong,
            max_value_wrong=max_value_wrong,
            min_value_correct=min_value_correct,
            max_value_correct=max_value_correct,
        )
        self._trl_reward: Callable | None = None

    def __call__(
        self,
        completions: Sequence[Any],
        answer: Sequence[Any],
        completion_ids: Sequence[Sequence[int]],
        **kwargs,
    ) -> list[float | None]:
        if self._trl_reward is None:
            from trl.rewards import get_cosine_scaled_reward

            self._trl_reward = get_cosine_scaled_reward(**self.params)
        scores = [score for score, _ in grade_batch(completions, answer)]
        stand_in_completions = [[{"role": "assistant", "content": "\\boxed{1}" if s == 1.0 else ""}] for s in scores]
        stand_in_golds = ["1" if s is not None else "" for s in scores]
        return self._trl_reward(stand_in_completions, stand_in_golds, completion_ids)

    def __getstate__(self) -> dict:
        return {"params": self.params, "_trl_reward": None}

    def __repr__(self) -> str:
        return f"CosineScaledReward({', '.join(f'{k}={v}' for k, v in self.params.items())})"


class SoftOverlongPunishment:
    """TRL's soft overlong punishment (DAPO eq. 13): 0 up to `max_completion_len - soft_punish_cache` tokens, then a
    linear ramp to -1 at `max_completion_len`, and -1 beyond it. The default cache is a fifth of the maximum length,
    DAPO's proportion (4096 of 20480)."""

    __name__ = "soft_overlong_punishment_reward"

    def __init__(self, max_completion_len: int = DEFAULT_MAX_COMPLETION_LENGTH, soft_punish_cache: int | None = None):
        if soft_punish_cache is None:
            soft_punish_cache = max_completion_len // 5
        if max_completion_len <= 0 or not 0 <= soft_punish_cache <= max_completion_len:
            raise ValueError(
                "soft_overlong: need max_completion_len > 0 and 0 <= soft_punish_cache <= max_completion_len, got "
                f"{max_completion_len} and {soft_punish_cache}"
            )
        self.params = dict(max_completion_len=max_completion_len, soft_punish_cache=soft_punish_cache)
        self._trl_reward: Callable | None = None

    def __call__(self, completion_ids: Sequence[Sequence[int]], **kwargs) -> list[float]:
        if self._trl_reward is None:
            from trl.rewards import get_soft_overlong_punishment

            self._trl_reward = get_soft_overlong_punishment(**self.params)
        return self._trl_reward(completion_ids)

    def __getstate__(self) -> dict:
        return {"params": self.params, "_trl_reward": None}

    def __repr__(self) -> str:
        return f"SoftOverlongPunishment({', '.join(f'{k}={v}' for k, v in self.params.items())})"
