"""Tiny Qwen3-architecture models, randomly initialized from a config (no download)."""

import torch
from transformers import Qwen3Config, Qwen3ForCausalLM


# The smallest Qwen3 worth running: a training step with a teacher pass in well under a second (tests, smoke runs).
SMOKE_TEST_SIZE = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=16,
    intermediate_size=64,
)


def tiny_qwen3_config(
    vocab_size: int,
    hidden_size: int = 128,
    num_hidden_layers: int = 4,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    head_dim: int = 32,
    intermediate_size: int = 384,
    max_position_embeddings: int = 2048,
    **overrides,
) -> Qwen3Config:
    """A Qwen3 config small enough to train on a laptop CPU (defaults: ~0.8M parameters with a 100-symbol vocab)."""
    return Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        head_dim=head_dim,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        **overrides,
    )


def build_tiny_qwen3(tokenizer, seed: int = 0, **config_overrides) -> Qwen3ForCausalLM:
    """Random-init tiny Qwen3 whose special token ids match `tokenizer`."""
    config = tiny_qwen3_config(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
        **config_overrides,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model
