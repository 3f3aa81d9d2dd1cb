import pytest
import torch
from helpers import tiny_model_shape

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


def tiny_causal_lm(kind: str, **overrides):
    """Random-init tiny models whose LM head transforms the logits: Granite divides them by `logits_scaling`, Cohere
    multiplies them by `logit_scale`, Gemma 2 softcaps them; Qwen3 does neither."""
    import transformers

    size = dict(vocab_size=97, **tiny_model_shape(num_hidden_layers=1), pad_token_id=0, bos_token_id=1, eos_token_id=2)
    configs = {
        "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM, {}),
        "granite": (transformers.GraniteConfig, transformers.GraniteForCausalLM, {"logits_scaling": 4.0}),
        "cohere": (transformers.CohereConfig, transformers.CohereForCausalLM, {"logit_scale": 3.0}),
        "gemma2": (transformers.Gemma2Config, transformers.Gemma2ForCausalLM, {"final_logit_softcapping": 2.0}),
    }
    config_class, model_class, transform = configs[kind]
    torch.manual_seed(0)
    model = model_class(config_class(**size, **transform, **overrides)).eval()
    with torch.no_grad():  # logits large enough that the scale and the cap change them
        model.get_output_embeddings().weight.mul_(20)
    return model


def trl_fused_head_scores(model, prompt, completion, temperature):
    """TRL's own fused LM head (what GRPOTrainer's student log-probs come from) on one row."""
    import copy

    from trl.trainer.utils import add_fused_lm_head

    patched = copy.deepcopy(model)
    add_fused_lm_head(patched, temperature=temperature, outputs=("log_probs", "entropy"))
    ids = torch.cat([torch.tensor(prompt), completion]).unsqueeze(0)
    labels = ids.clone()
    labels[:, : len(prompt)] = -100
    with torch.no_grad():
        output = patched(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels, fused_lm_head=True)
    return output.log_probs[0, -completion.numel() :], output.entropy[0, -completion.numel() :]


@pytest.mark.parametrize("kind", ["qwen3", "granite", "cohere", "gemma2"])
def test_score_tokens_matches_trl_fused_lm_head(kind):
    """Logit scaling (Granite, Cohere), softcapping (Gemma 2) and the temperature: the same numbers as TRL's head and
    as the model's own logits."""
    from egrsd.scoring import logit_transform

    model = tiny_causal_lm(kind)
    scale, softcap = logit_transform(model.config)
    assert (scale, softcap) == {
        "qwen3": (1.0, None), "granite": (0.25, None), "cohere": (3.0, None), "gemma2": (1.0, 2.0)
    }[kind]  # fmt: skip
    generator = torch.Generator().manual_seed(2)
    prompt = torch.randint(3, 97, (6,), generator=generator).tolist()
    completion = torch.randint(3, 97, (1, 9), generator=generator)
    logps, entropy = score_tokens(
        model, [prompt], completion, torch.ones_like(completion), pad_token_id=0, temperature=0.7, chunk_size=4
    )
    trl_logps, trl_entropy = trl_fused_head_scores(model, prompt, completion[0], 0.7)
    torch.testing.assert_close(logps[0], trl_logps, atol=1e-5, rtol=0)
    torch.testing.assert_close(entropy[0], trl_entropy, atol=1e-5, rtol=0)
    with torch.no_grad():  # the model's own forward applies its scale and cap too
        logits = model(input_ids=torch.cat([torch.tensor(prompt), completion[0]]).unsqueeze(0)).logits[0]
    expected_logps, _ = naive_logps_and_entropy(logits[len(prompt) - 1 : -1], completion[0], 0.7)
    torch.testing.assert_close(logps[0], expected_logps, atol=1e-5, rtol=0)


def test_under_autocast_the_head_projects_in_the_autocast_dtype_as_trl():
    """float32 weights under bf16 autocast: the projection runs in bf16, as in TRL's fused head; outside autocast (or
    with the fp32 head) it is float32."""
    generator = torch.Generator().manual_seed(3)
    hidden = torch.randn(11, 16, generator=generator)
    weight = torch.randn(53, 16, generator=generator) * 4
    targets = torch.randint(0, 53, (11,), generator=generator)
    fp32_logps, _ = naive_logps_and_entropy(hidden @ weight.t(), targets)
    bf16_logps, _ = naive_logps_and_entropy((hidden.bfloat16() @ weight.bfloat16().t()).float(), targets)
    assert not torch.allclose(fp32_logps, bf16_logps, atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast_logps, _ = chunked_logps_and_entropy(hidden, weight, targets, chunk_size=4)
        fp32_head_logps, _ = chunked_logps_and_entropy(hidden, weight, targets, chunk_size=4, fp32_head=True)
    torch.testing.assert_close(autocast_logps, bf16_logps, atol=1e-5, rtol=0)
    torch.testing.assert_close(fp32_head_logps, fp32_logps, atol=1e-5, rtol=0)
    # bf16 hidden states with an fp32 head (TRL's cast_lm_head_to_fp32 on a bf16 model): no dtype clash.
    logps, _ = chunked_logps_and_entropy(hidden.bfloat16(), weight, targets, fp32_head=True)
    expected, _ = naive_logps_and_entropy(hidden.bfloat16().float() @ weight.t(), targets)
    torch.testing.assert_close(logps, expected, atol=1e-5, rtol=0)
