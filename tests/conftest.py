import os

import pytest


# Tests run offline and on a small CPU: no Hub calls, no tracker, single-threaded BLAS is faster for tiny models.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")

# Small enough that a GRPO step with a teacher pass takes well under a second on a laptop core.
TINY_MODEL_OVERRIDES = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=16,
    intermediate_size=64,
)


@pytest.fixture(scope="session")
def tokenizer():
    from egrsd.testbed.tokenizer import build_tokenizer

    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    """A random-init tiny Qwen3 and its tokenizer saved to disk, loadable by path like a Hub model."""
    from egrsd.testbed.model import build_tiny_qwen3

    path = tmp_path_factory.mktemp("tiny-qwen3")
    build_tiny_qwen3(tokenizer, seed=0, **TINY_MODEL_OVERRIDES).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def arith_dataset():
    from datasets import load_dataset

    return load_dataset("json", data_files=os.path.join(FIXTURES, "arith_tiny.jsonl"), split="train")
