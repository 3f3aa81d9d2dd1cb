import pytest
import torch

from egrsd.scoring import chunked_logps_and_entropy, default_chunk_size, naive_logps_and_entropy, score_tokens


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("with_bias", [False, True])
def test_chunked_equals_naive(temperature, with_bias):
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(37, 16, generator=generator)
    weight = torch.randn(103, 16, generator=generator)
    bias = torch.randn(103, generator=generator) if with_bias else None
    targets = torch.randint(0, 103, (37,), generator=generator)
    logps, entropy = chunked_logps_and_entropy(
        hidden, weight, targets, bias=bias, temperature=temperature, chunk_size=5
    )
    expected_logps, expected_entropy = naive_logps_and_entropy(
        torch.nn.functional.linear(hidden, weight, bias), targets, temperature
    )
    torch.testing.assert_close(logps, expected_logps, atol=1e-5, rtol=0)
    torch.testing.assert_close(entropy, expected_entropy, atol=1e-5, rtol=0)


def test_default_chunk_does_not_grow_with_length():
    assert default_chunk_size(151_936) * 151_936 * 4 <= 64 * 2**20
    assert default_chunk_size(10) > 1000


def test_score_tokens_equals_full_logits_of_the_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    generator = torch.Generator().manual_seed(1)
    vocab = model.config.vocab_size
    prompt = torch.randint(4, vocab, (3, 5), generator=generator)
    completion = torch.randint(4, vocab, (3, 7), generator=generator)
    prompt_mask = torch.ones_like(prompt)
    prompt_mask[0, :2] = 0  # left padding
    completion_mask = torch.ones_like(completion)
    completion_mask[1, 4:] = 0  # right padding
    input_ids = torch.cat([prompt, completion], 1)
    attention_mask = torch.cat([prompt_mask, completion_mask], 1)

    logps, entropy = score_tokens(model, input_ids, attention_mask, 7, temperature=0.8, batch_size=2, chunk_size=3)
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, -8:-1]
    expected_logps, expected_entropy = naive_logps_and_entropy(logits, completion, 0.8)
    valid = completion_mask.bool()
    torch.testing.assert_close(logps[valid], expected_logps[valid], atol=1e-5, rtol=0)
    torch.testing.assert_close(entropy[valid], expected_entropy[valid], atol=1e-5, rtol=0)
    assert (logps[~valid] == 0).all() and (entropy[~valid] == 0).all()
