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


@pytest.mark.parametrize("share_prompts", [False, True])
def test_score_tokens_equals_full_logits_of_the_model(tiny_model_dir, share_prompts):
    """Prompts of different lengths (left padding), repeated prompts (a GRPO group) and right-padded completions all
    score exactly as one full forward over each row's own prompt + completion, with or without sharing prompts."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    generator = torch.Generator().manual_seed(1)
    vocab = model.config.vocab_size
    prompt_a = torch.randint(4, vocab, (5,), generator=generator).tolist()
    prompt_b = torch.randint(4, vocab, (8,), generator=generator).tolist()
    prompt_ids = [prompt_a, prompt_a, prompt_b, prompt_a, prompt_b]
    completion = torch.randint(4, vocab, (5, 7), generator=generator)
    completion_mask = torch.ones_like(completion)
    completion_mask[1, 4:] = 0
    completion_mask[4, 2:] = 0

    logps, entropy = score_tokens(
        model,
        prompt_ids,
        completion,
        completion_mask,
        pad_token_id=0,
        temperature=0.8,
        batch_size=4,
        chunk_size=3,
        share_prompts=share_prompts,
    )
    valid = completion_mask.bool()
    for row, prompt in enumerate(prompt_ids):
        ids = torch.cat([torch.tensor(prompt), completion[row]]).unsqueeze(0)
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1]
        expected_logps, expected_entropy = naive_logps_and_entropy(logits, completion[row], 0.8)
        keep = valid[row]
        torch.testing.assert_close(logps[row][keep], expected_logps[keep], atol=1e-5, rtol=0)
        torch.testing.assert_close(entropy[row][keep], expected_entropy[keep], atol=1e-5, rtol=0)
    assert (logps[~valid] == 0).all() and (entropy[~valid] == 0).all()


@pytest.mark.parametrize(
    "share_prompts,expected_calls",
    [
        (False, [(4, 5), (2, 6)]),  # one forward per row batch: left-padded prompt + completion
        # the distinct prompts (rows 0-3 hold two, width 2; rows 4-5 one, width 3), then every completion on the cache
        (True, [(2, 2), (4, 3), (1, 3), (2, 3)]),
    ],
)
def test_forward_count_depends_on_row_batches_only(tiny_model_dir, share_prompts, expected_calls):
    """The number of forwards is the same on every rank whatever the groups (ZeRO-3 gathers collectively)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    calls = []
    model.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(kwargs["input_ids"].shape), with_kwargs=True
    )
    completion = torch.randint(4, 50, (6, 3))
    prompts = [[5, 6], [5, 6], [7], [5, 6], [8, 9, 10], [8, 9, 10]]
    score_tokens(
        model,
        prompts,
        completion,
        torch.ones_like(completion),
        pad_token_id=0,
        batch_size=4,
        share_prompts=share_prompts,
    )
    assert calls == expected_calls


def test_score_tokens_rejects_an_empty_prompt(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    completion = torch.randint(4, 50, (2, 3))
    with pytest.raises(ValueError, match="at least one token"):
        score_tokens(model, [[5], []], completion, torch.ones_like(completion), pad_token_id=0)


def test_prompt_cache_names_a_model_without_a_cache(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    class CachelessWrapper(torch.nn.Module):  # as a wrapper whose forward drops the key/value cache
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, **kwargs):
            return self.module(**{**kwargs, "use_cache": False})

    model = CachelessWrapper(AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval())
    completion = torch.randint(4, 50, (2, 3))
    with pytest.raises(ValueError, match="Qwen3ForCausalLM returned no selectable key/value cache.*false"):
        score_tokens(model, [[5], [5]], completion, torch.ones_like(completion), pad_token_id=0, share_prompts=True)
