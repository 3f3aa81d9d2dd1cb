import os

import pytest
from helpers import FIXTURES, digit_reward, tiny_model_shape, tiny_training_settings


# Tests run offline and on a small CPU: no Hub calls, no tracker, single-threaded BLAS is faster for tiny models.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tokenizer():
    from egrsd.testbed.tokenizer import build_tokenizer

    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    """A random-init tiny Qwen3 and its tokenizer saved to disk, loadable by path like a Hub model."""
    from egrsd.testbed.model import build_tiny_qwen3

    path = tmp_path_factory.mktemp("tiny-qwen3")
    build_tiny_qwen3(tokenizer, seed=0, **tiny_model_shape()).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def arith_dataset():
    from datasets import load_dataset

    return load_dataset("json", data_files=str(FIXTURES / "arith_tiny.jsonl"), split="train")


@pytest.fixture
def make_trainer(tmp_path, tiny_model_dir, tokenizer, arith_dataset):
    """Build an EGRSDTrainer on the tiny model: make_trainer(credit_method="egrsd", train_dataset=..., **config)."""
    from egrsd.configs import EGRSDConfig
    from egrsd.trainer import EGRSDTrainer

    def make(train_dataset=None, peft_config=None, **overrides):
        return EGRSDTrainer(
            model=tiny_model_dir,
            reward_funcs=digit_reward,
            args=EGRSDConfig(**tiny_training_settings(overrides.pop("output_dir", tmp_path), **overrides)),
            train_dataset=arith_dataset if train_dataset is None else train_dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
        )

    return make
