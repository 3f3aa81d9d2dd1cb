"""Reward functions for math reasoning, selectable by name from a recipe.

    from egrsd.rewards import get_reward_funcs
    reward_funcs = get_reward_funcs(["accuracy", "format"])

Every reward is a plain TRL reward function, `f(completions, **dataset_columns) -> list[float | None]`; see
`egrsd.rewards.registry` for the name syntax (registered names, parameters, and import strings for your own
rewards) and `egrsd.rewards.accuracy` for the grading rules shared with evaluation. The folder is the repository's
top-level `rewards/`, installed as `egrsd.rewards` (a PyPI distribution claims the top-level name `rewards`).
"""

from .accuracy import accuracy_reward, extract_final_answer, grade, grade_batch
from .format import format_reward
from .length import CosineScaledReward, SoftOverlongPunishment, length_penalty_reward
from .registry import REWARD_FACTORIES, REWARD_REGISTRY, get_reward_funcs, known_reward_names, make_reward


__all__ = [
    "REWARD_FACTORIES",
    "REWARD_REGISTRY",
    "CosineScaledReward",
    "SoftOverlongPunishment",
    "accuracy_reward",
    "extract_final_answer",
    "format_reward",
    "get_reward_funcs",
    "grade",
    "grade_batch",
    "known_reward_names",
    "length_penalty_reward",
    "make_reward",
]
