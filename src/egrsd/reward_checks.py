"""What a reward function is given and what it must give back, checked where a user meets it.

* Before any model loads (`egrsd-train --check`, and training once the data is loaded): each reward's signature
  against what TRL passes it, by keyword: `TRL_REWARD_ARGUMENTS` and every column of the data. A required parameter
  that is neither, or a function without `**kwargs` that cannot take all of them, is one line naming the reward. A data
  column named like one of TRL's arguments is refused too (TRL would pass it twice, or drop it).
* While training (`CheckedReward`, which the trainer wraps every plain reward function in): a return value that is
  not one number (or None) per completion is a `UserError` naming the reward, what it returned and what is expected;
  an exception raised inside the reward is reported naming the reward first, then its own frames. NaN is counted per
  batch in the logged metric `rewards/<name>/nan_count` and warned about once per reward; it then counts as None
  (no verdict), as TRL treats it.
"""

import inspect
import logging
import math
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from trl.trainer.utils import get_callable_name, is_async_callable

from .cli import UserError


logger = logging.getLogger(__name__)

# The keyword arguments TRL's GRPOTrainer passes every reward function besides the data's columns.
TRL_REWARD_ARGUMENTS = ("prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric")
# Data columns TRL keeps from the rewards (it passes its own `prompts`, `completions` and `completion_ids`).
TRL_WITHHELD_COLUMNS = ("prompt", "completion", "completion_ids")
NAN_METRIC = "rewards/{name}/nan_count"


def column_problems(columns: Sequence[str]) -> list[str]:
    """A data column with the name of one of TRL's reward arguments, which the rewards could not get as a column."""
    return [
        f"the data has a column {column!r}, the name of an argument TRL passes every reward function itself — rename "
        "that column in the data"
        for column in columns
        if column in TRL_REWARD_ARGUMENTS
    ]


def signature_problems(reward_funcs: Sequence[Callable], labels: Sequence[str], columns: Sequence[str]) -> list[str]:
    """One line per reward (labelled as the recipe names it) that cannot be called with TRL's arguments and these
    columns: a required parameter that is neither, a parameter that only takes a position, or no `**kwargs` to take
    the rest."""
    problems = []
    passed = [*TRL_REWARD_ARGUMENTS, *(column for column in columns if column not in TRL_WITHHELD_COLUMNS)]
    for func, label in zip(reward_funcs, labels, strict=True):
        try:
            parameters = list(inspect.signature(func).parameters.values())
        except (TypeError, ValueError):  # a builtin or C callable without a readable signature
            continue
        names = {p.name for p in parameters}
        positional_only = [p.name for p in parameters if p.kind is p.POSITIONAL_ONLY and p.default is p.empty]
        required = [
            p.name
            for p in parameters
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is p.empty and p.name not in passed
        ]
        if positional_only:
            problems.append(
                f"reward {label!r} takes {positional_only} by position only, but TRL passes every argument by name — "
                "make them ordinary parameters"
            )
        if required:
            problems.append(
                f"reward {label!r} requires the parameter(s) {required}, which TRL does not pass and the data has no "
                f"column for (TRL passes {passed}) — rename the parameter to one of those columns, give it "
                "a default, or add the column to the data"
            )
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            extra = [name for name in passed if name not in names]
            if extra:
                problems.append(
                    f"reward {label!r} has no **kwargs, but TRL passes it also {extra} — add **kwargs to its "
                    "parameters"
                )
    return problems


class RewardFunctionError(UserError):
    """A reward function that raised: named first, its own traceback after (the user's code)."""

    def __init__(self, name: str, error: Exception):
        frames = traceback.extract_tb(error.__traceback__)[1:]  # from the reward's own frame on, not this module's
        details = "".join(traceback.format_list(frames) + traceback.format_exception_only(error))
        super().__init__(
            f"reward function {name!r} raised {type(error).__name__}: {str(error)[:300]}",
            "fix the reward function; its traceback follows",
            details="Traceback (most recent call last):\n" + details,
        )


def _describe(value: Any) -> str:
    text = repr(value)
    return f"a {type(value).__name__} ({text[:60]}{'...' if len(text) > 60 else ''})"


class CheckedReward:
    """A reward function whose calls are checked (see the module docstring); TRL logs it under the same name."""

    def __init__(self, func: Callable):
        self.func = func
        self.__name__ = get_callable_name(func)
        self.nan_warned = False

    def __call__(self, *args, **kwargs) -> list[float | None]:
        try:
            returned = self.func(*args, **kwargs)
        except Exception as error:
            raise RewardFunctionError(self.__name__, error) from error
        completions = kwargs.get("completions")
        rewards = self._numbers(returned, None if completions is None else len(completions))
        nans = sum(1 for reward in rewards if reward is not None and math.isnan(reward))
        log_metric = kwargs.get("log_metric")
        if log_metric is not None:
            log_metric(NAN_METRIC.format(name=self.__name__), float(nans))
        if nans and not self.nan_warned:
            self.nan_warned = True
            logger.warning(
                "reward function %r returned NaN for %d of %d completions: NaN counts as no verdict (None), and is "
                "counted in %s (warned once). Return None where there is no verdict.",
                self.__name__,
                nans,
                len(rewards),
                NAN_METRIC.format(name=self.__name__),
            )
        return [None if reward is None or math.isnan(reward) else reward for reward in rewards]

    def _numbers(self, returned: Any, expected: int | None) -> list[float | None]:
        fix = "return a list with one float (or None) per completion"
        if isinstance(returned, str | bytes | Mapping) or not hasattr(returned, "__iter__"):
            raise UserError(f"reward function {self.__name__!r} returned {_describe(returned)}, not a list", fix)
        values = list(returned)
        if expected is not None and len(values) != expected:
            raise UserError(
                f"reward function {self.__name__!r} returned {len(values)} values for {expected} completions", fix
            )
        numbers: list[float | None] = []
        for value in values:
            if value is None:
                numbers.append(None)
                continue
            try:
                if isinstance(value, str | bytes):
                    raise TypeError
                numbers.append(float(value))
            except (TypeError, ValueError):
                raise UserError(
                    f"reward function {self.__name__!r} returned {_describe(value)} among its values, where numbers "
                    "belong",
                    fix,
                ) from None
        return numbers

    def __repr__(self) -> str:
        return f"CheckedReward({self.func!r})"


def checked_rewards(reward_funcs: Any) -> Any:
    """TRL's `reward_funcs` argument with every plain (synchronous, not a model) reward function checked."""
    import torch

    if reward_funcs is None:
        return None
    funcs = reward_funcs if isinstance(reward_funcs, list) else [reward_funcs]
    return [
        func
        if isinstance(func, str | torch.nn.Module | CheckedReward) or is_async_callable(func)
        else CheckedReward(func)
        for func in funcs
    ]
