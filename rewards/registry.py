"""Reward functions by name, so a recipe can list them: `reward_funcs: [accuracy, format]`.

A name is one of:

* a registered name (`known_reward_names()`), e.g. `accuracy`;
* a registered name with parameters, for the configurable rewards: `soft_overlong(max_completion_len=8192)`;
* an import string for your own reward, `package.module:function` (the module must be importable; the working
  directory is tried too), or a file path `path/to/my_rewards.py:function`. With parameters,
  `my_rewards:make_reward(scale=2)`, the target is called with them and must return the reward function; a class
  is instantiated (with the parameters, if any).
"""

import ast
import importlib
import importlib.util
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .accuracy import accuracy_reward
from .format import format_reward
from .length import CosineScaledReward, SoftOverlongPunishment, length_penalty_reward
from .verifier import start_workers


logger = logging.getLogger(__name__)

# Rewards that take parameters: name -> factory (a class or function returning the reward).
REWARD_FACTORIES: dict[str, Callable[..., Callable]] = {
    "cosine_scaled": CosineScaledReward,
    "soft_overlong": SoftOverlongPunishment,
}
# Each factory's parameter that means "maximum completion length", filled from the trainer's setting when not given.
_LENGTH_PARAMETER = {"cosine_scaled": "max_len", "soft_overlong": "max_completion_len"}

REWARD_REGISTRY: dict[str, Callable] = {
    "accuracy": accuracy_reward,
    "format": format_reward,
    "length_penalty": length_penalty_reward,
    **{name: factory() for name, factory in REWARD_FACTORIES.items()},
}
# Rewards that grade answers; asking for one starts the grading worker early, so its start-up overlaps model loading.
_GRADING_REWARDS = {"accuracy", "length_penalty", "cosine_scaled"}

_NAME_WITH_PARAMETERS = re.compile(r"^\s*(?P<target>[^()\s]+)\s*(?:\((?P<arguments>.*)\))?\s*$", re.DOTALL)


def known_reward_names() -> list[str]:
    """The registered reward names, sorted."""
    return sorted(REWARD_REGISTRY)


def _unknown_name_error(name: str) -> ValueError:
    return ValueError(
        f"unknown reward {name!r} — use a registered reward: {', '.join(known_reward_names())} "
        f"(with parameters: {', '.join(f'{n}(...)' for n in sorted(REWARD_FACTORIES))}). "
        "For your own reward function, give its import string 'package.module:function' (e.g. a file "
        "my_rewards.py in the working directory defining my_reward -> 'my_rewards:my_reward') or a file path "
        "'path/to/my_rewards.py:my_reward'."
    )


def _parse_arguments(name: str, arguments: str) -> dict[str, Any]:
    try:
        call = ast.parse(f"reward({arguments})", mode="eval").body
        if call.args:
            raise ValueError("positional arguments")
        return {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords if keyword.arg}
    except (SyntaxError, ValueError) as error:
        raise ValueError(
            f"cannot read the parameters of reward {name!r} ({error}); write them as keyword=literal pairs, e.g. "
            "'soft_overlong(max_completion_len=8192, soft_punish_cache=1024)'"
        ) from None


def _import_module(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        # Console scripts do not put the working directory on sys.path; a user's reward file usually lives there.
        missing_is_target = error.name is not None and module_name.split(".")[0] == error.name.split(".")[0]
        if not missing_is_target or os.getcwd() in sys.path:
            raise
        sys.path.append(os.getcwd())
        return importlib.import_module(module_name)


def _import_from_file(path: Path):
    module_name = f"egrsd_user_rewards.{path.stem}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # registered first so the function pickles by reference in this process
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]  # a fixed file is read again on the next try
        raise
    return module


def _load_import_string(target: str) -> Any:
    location, _, attribute = target.rpartition(":")
    if not location or not attribute:
        raise ValueError(f"reward import string {target!r} must look like 'package.module:function'")
    try:
        if location.endswith(".py"):
            path = Path(location).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"no reward file {path.resolve()}")
            module = _import_from_file(path)
        else:
            module = _import_module(location)
    except SyntaxError as error:
        raise ValueError(
            f"cannot import reward {target!r}: {error.filename}:{error.lineno}: syntax error ({error.msg}) — fix that "
            "line of the reward module"
        ) from None
    except (ImportError, FileNotFoundError) as error:
        raise ValueError(f"cannot import reward {target!r}: {error}") from error
    obj: Any = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"cannot import reward {target!r}: {location!r} has no attribute {attribute!r}")
        obj = getattr(obj, part)
    return obj


def make_reward(name: str, **params: Any) -> Callable:
    """One reward function from a registered name or import string, configured with `params` where it takes them."""
    if ":" in name:
        target = _load_import_string(name)
        if isinstance(target, type) or params:
            reward = target(**params)
        else:
            reward = target
        if not callable(reward):
            raise ValueError(f"reward {name!r} is not callable (got {type(reward).__name__})")
        return reward
    if name in REWARD_FACTORIES:
        if not params:
            return REWARD_REGISTRY[name]
        try:
            return REWARD_FACTORIES[name](**params)
        except TypeError as error:
            raise ValueError(f"bad parameters for reward {name!r}: {error}") from None
    if name in REWARD_REGISTRY:
        if params:
            raise ValueError(
                f"reward {name!r} takes no parameters; configurable rewards: {', '.join(sorted(REWARD_FACTORIES))}"
            )
        return REWARD_REGISTRY[name]
    raise _unknown_name_error(name)


def _check_length_scale(entry: str, reward: Any, parameter: str, max_completion_length: int) -> None:
    """A length-aware reward must not expect completions longer than the trainer ever generates: its schedule would
    then lie beyond reach (soft_overlong never fires, cosine_scaled uses only the short end of its scale)."""
    length = reward.params[parameter]
    if length <= max_completion_length:
        return
    if "soft_punish_cache" in reward.params:
        start = length - reward.params["soft_punish_cache"]
        effect = (
            f"its punishment starts at {start} tokens, so it can never fire"
            if start >= max_completion_length
            else f"it never reaches its full punishment (at {length} tokens)"
        )
    else:
        effect = f"completions use only the first {max_completion_length / length:.0%} of its length scale"
    raise ValueError(
        f"reward {entry!r}: {parameter}={length} is above max_completion_length={max_completion_length}, the longest "
        f"completion training generates; {effect} — drop {parameter} (it then follows max_completion_length) or "
        f"set it to at most {max_completion_length}"
    )


def get_reward_funcs(names: Sequence[str | Callable], *, max_completion_length: int | None = None) -> list[Callable]:
    """The reward functions for a recipe's `reward_funcs` list, in order.

    Each entry is a name as described in this module's docstring, or already a callable (kept as is). When
    `max_completion_length` is given (the trainer's setting), length-aware rewards whose maximum length is not set
    explicitly use it, and one set above it is a ValueError (its schedule would lie beyond any completion). Starts the
    grading worker in the background if a grading reward is among them.
    """
    if isinstance(names, str):
        names = [names]
    rewards: list[Callable] = []
    for entry in names:
        if callable(entry):
            rewards.append(entry)
            continue
        match = _NAME_WITH_PARAMETERS.match(str(entry))
        if match is None:
            raise _unknown_name_error(str(entry))
        target = match["target"]
        params = _parse_arguments(entry, match["arguments"]) if match["arguments"] is not None else {}
        length_parameter = _LENGTH_PARAMETER.get(target)
        if max_completion_length is not None and length_parameter is not None:
            params.setdefault(length_parameter, max_completion_length)
        reward = make_reward(target, **params)
        if max_completion_length is not None and length_parameter is not None:
            _check_length_scale(str(entry), reward, length_parameter, max_completion_length)
        rewards.append(reward)
        if target in _GRADING_REWARDS:
            start_workers()
    names_seen = [getattr(r, "__name__", type(r).__name__) for r in rewards]
    duplicates = sorted({n for n in names_seen if names_seen.count(n) > 1})
    if duplicates:
        logger.warning("several rewards share the name(s) %s; TRL will log them under one key", duplicates)
    return rewards
