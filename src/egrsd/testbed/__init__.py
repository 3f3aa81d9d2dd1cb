"""The embedded default: a tiny Qwen3-architecture model and a synthetic reasoning task that run on a CPU."""

import os
from pathlib import Path


# `model_name_or_path` values that name the embedded default instead of a Hub id or a folder; every tool takes them.
TESTBED_MODELS = ("testbed:random", "testbed:base")


def testbed_model_path(name: str, directory: str | Path, seed: int = 0, write: bool = True) -> Path:
    """A loadable folder for an embedded model name: the shipped base (built under `directory` only when its settings
    differ from the shipped copy's), or a random initialisation written once under `directory` (by the process that
    has `write`; the others wait for it)."""
    if name not in TESTBED_MODELS:
        raise ValueError(f"{name!r} is not an embedded model; they are {list(TESTBED_MODELS)}")
    if name == "testbed:base":
        from .base import ensure_base

        return Path(ensure_base(directory))
    path = Path(directory) / "testbed-random-init"
    if write and not os.path.exists(path / "config.json"):
        from .model import build_tiny_qwen3
        from .tokenizer import build_tokenizer

        tokenizer = build_tokenizer()
        build_tiny_qwen3(tokenizer, seed=seed).save_pretrained(path)
        tokenizer.save_pretrained(path)
    return path
