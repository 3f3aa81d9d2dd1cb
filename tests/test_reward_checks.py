"""The reward checks in one process: which return values pass, what is wrapped, how signatures are read (the
command-line side is in test_data_path.py and test_new_user_probe.py)."""

import functools
import logging

import numpy as np
import pytest
import torch

from egrsd.cli import UserError
from egrsd.reward_checks import CheckedReward, checked_rewards, column_problems, signature_problems
from egrsd.rewards import get_reward_funcs


def constant(value):
    def reward(completions, **kwargs):
        return value

    return reward


def test_numbers_of_any_kind_pass_and_none_and_nan_mean_no_verdict(caplog):
    logged = []
    values = [1, 0.5, np.float32(0.25), torch.tensor(2.0), None, float("nan"), True]
    checked = CheckedReward(constant(values))
    completions = ["c"] * len(values)
    with caplog.at_level(logging.WARNING, logger="egrsd.reward_checks"):
        for _ in range(2):
            rewards = checked(completions=completions, log_metric=lambda name, value: logged.append((name, value)))
    assert rewards == [1.0, 0.5, 0.25, 2.0, None, None, 1.0]
    assert logged == [("rewards/reward/nan_count", 1.0)] * 2
    assert caplog.text.count("returned NaN for 1 of 7 completions") == 1  # warned once per reward function


def test_a_numpy_array_or_tuple_is_a_list_but_a_dict_is_not():
    completions = ["a", "b"]
    assert CheckedReward(constant(np.array([1.0, 0.0])))(completions=completions) == [1.0, 0.0]
    assert CheckedReward(constant((1, 0)))(completions=completions) == [1.0, 0.0]
    with pytest.raises(UserError, match=r"returned a dict \(\{'a': 1.0\}\), not a list"):
        CheckedReward(constant({"a": 1.0}))(completions=completions)
    with pytest.raises(UserError, match=r"returned a NoneType \(None\), not a list"):
        CheckedReward(constant(None))(completions=completions)


def test_only_plain_reward_functions_are_wrapped_and_keep_their_name():
    async def judge(completions, **kwargs):
        return [1.0 for _ in completions]

    model = torch.nn.Linear(1, 1)
    partial = functools.partial(get_reward_funcs(["accuracy"])[0])
    wrapped = checked_rewards(["Qwen/reward-model", model, judge, partial, *get_reward_funcs(["soft_overlong"])])
    assert wrapped[:3] == ["Qwen/reward-model", model, judge]
    assert [type(r).__name__ for r in wrapped[3:]] == ["CheckedReward", "CheckedReward"]
    assert [r.__name__ for r in wrapped[3:]] == ["accuracy_reward", "soft_overlong_punishment_reward"]
    assert checked_rewards(wrapped) == wrapped and checked_rewards(None) is None


def test_signatures_against_trl_arguments_and_columns():
    def by_level(completions, level, answer, scale=1.0, **kwargs): ...

    def bare(completions, prompts, answer): ...

    def positional(completions, /, **kwargs): ...

    columns = ["prompt", "problem", "solution", "answer"]
    assert signature_problems([by_level], ["by_level"], [*columns, "level"]) == []
    (missing,) = signature_problems([by_level], ["by_level"], columns)
    assert missing.startswith("reward 'by_level' requires the parameter(s) ['level'], which TRL does not pass")
    (no_kwargs,) = signature_problems([bare], ["bare"], columns)
    # The prompt column is TRL's own, never passed to rewards.
    passed = ["completion_ids", "trainer_state", "log_extra", "log_metric", "problem", "solution"]
    assert f"has no **kwargs, but TRL passes it also {passed} — add **kwargs" in no_kwargs
    (by_position,) = signature_problems([positional], ["positional"], columns)
    assert "takes ['completions'] by position only" in by_position
    assert column_problems([*columns, "completions", "difficulty"]) == [
        "the data has a column 'completions', the name of an argument TRL passes every reward function itself — "
        "rename that column in the data"
    ]
    # Every registered reward takes what TRL and the mapped columns give it.
    names = ["accuracy", "format", "length_penalty", "cosine_scaled", "soft_overlong"]
    assert signature_problems(get_reward_funcs(names), names, columns) == []
