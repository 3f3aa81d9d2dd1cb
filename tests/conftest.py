import os

import pytest


# Tests run offline and on a small CPU: no Hub calls, no tracker, single-threaded BLAS is faster for tiny models.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture(scope="session")
def tokenizer():
    from egrsd.testbed.tokenizer import build_tokenizer

    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    """A random-init tiny Qwen3 and its tokenizer saved to disk, loadable by path like a Hub model."""
    from egrsd.testbed.model import SMOKE_TEST_SIZE, build_tiny_qwen3

    path = tmp_path_factory.mktemp("tiny-qwen3")
    build_tiny_qwen3(tokenizer, seed=0, **SMOKE_TEST_SIZE).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def arith_dataset():
    from datasets import load_dataset

    return load_dataset("json", data_files=os.path.join(FIXTURES, "arith_tiny.jsonl"), split="train")


def digit_reward(completions, answer, **kwargs):
    """A dense toy reward: how many characters of the completion are digits of the gold answer."""
    return [float(sum(ch in gold for ch in completion[0]["content"])) for completion, gold in zip(completions, answer)]


def tiny_training_settings(output_dir, **overrides) -> dict:
    """GRPOConfig/EGRSDConfig keyword arguments for two quick CPU steps of the tiny model."""
    settings = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=12,
        max_steps=2,
        learning_rate=1e-2,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        seed=7,
    )
    settings.update(overrides)
    return settings


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
