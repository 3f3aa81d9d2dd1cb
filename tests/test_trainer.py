import math

import pytest
import torch
from conftest import digit_reward, tiny_training_settings

from egrsd.configs import EGRSDConfig
from egrsd.credit import compute_credit, with_entropy_ref
from egrsd.teacher import DEFAULT_TEACHER_TEMPLATE
from egrsd.trainer import EGRSDTrainer


def tiny_args(tmp_path, **overrides):
    return EGRSDConfig(**tiny_training_settings(tmp_path, **overrides))


@pytest.mark.parametrize(
    "method,teacher",
    [("grpo", "live"), ("opsd", "live"), ("rlsd", "frozen"), ("egrsd", "live"), ("cl_egrsd", "frozen")],
)
def test_two_steps_of_each_method_train(make_trainer, method, teacher):
    trainer = make_trainer(credit_method=method, teacher_model=teacher)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    changed = [name for name, p in trainer.model.named_parameters() if not torch.equal(before[name], p)]
    assert changed, "no parameter moved"
    logged = trainer.state.log_history[0]
    if method == "grpo":
        assert not any(key.startswith("credit/") for key in logged)
    else:
        assert math.isfinite(logged["credit/delta_abs_mean"])
    if method in ("egrsd", "cl_egrsd"):
        assert 0.2 <= logged["credit/gate_mean"] <= 1.0 and logged["credit/entropy_mean"] > 0
    if teacher == "frozen":
        assert trainer.teacher is not None and trainer.teacher is not trainer.model
        teacher_params = dict(trainer.teacher.named_parameters())
        assert all(torch.equal(before[name], teacher_params[name]) for name in before)


def test_grpo_matches_trl_grpo_trainer(tmp_path, tiny_model_dir, tokenizer, arith_dataset):
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    args = tiny_args(tmp_path / "egrsd", credit_method="grpo")
    ours = EGRSDTrainer(
        model=tiny_model_dir,
        reward_funcs=digit_reward,
        args=args,
        train_dataset=arith_dataset,
        processing_class=tokenizer,
    )
    ours.train()
    reference_args = GRPOConfig(**tiny_training_settings(tmp_path / "trl"))
    reference = GRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=digit_reward,
        args=reference_args,
        train_dataset=arith_dataset,
        processing_class=tokenizer,
    )
    reference.train()
    # GRPO's loss value is ~0 by construction (advantages are centred), so compare what it does: the updates.
    ours_losses = [e["loss"] for e in ours.state.log_history if "loss" in e]
    reference_losses = [e["loss"] for e in reference.state.log_history if "loss" in e]
    assert ours_losses == pytest.approx(reference_losses, abs=1e-7)
    assert [e["reward"] for e in ours.state.log_history if "reward" in e] == [
        e["reward"] for e in reference.state.log_history if "reward" in e
    ]
    reference_params = dict(reference.model.named_parameters())
    for name, param in ours.model.named_parameters():
        torch.testing.assert_close(param, reference_params[name], atol=1e-6, rtol=0)
    initial = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert not torch.equal(initial.lm_head.weight, ours.model.lm_head.weight)


def test_credit_uses_rollout_logps_and_teacher_sees_prompt_plus_completion(make_trainer, tokenizer, monkeypatch):
    """The teacher scores each rollout's own completion ids after the chat template of problem + privileged context;
    with learning rate 0 (weights fixed) the deferred credit equals one computed from a separate student pass."""
    import egrsd.trainer as trainer_module

    calls = []
    original_score = trainer_module.score_tokens

    def recording_score(model, prompt_ids, completion_ids, completion_mask, **kwargs):
        calls.append((prompt_ids, completion_ids.clone(), completion_mask.clone()))
        return original_score(model, prompt_ids, completion_ids, completion_mask, **kwargs)

    monkeypatch.setattr(trainer_module, "score_tokens", recording_score)
    trainer = make_trainer(credit_method="cl_egrsd", learning_rate=0.0, max_steps=1)
    captured = {}
    original_generate = trainer._generate_and_score_completions

    def capture_generate(inputs):
        output = original_generate(inputs)
        captured["inputs"], captured["output"] = inputs, dict(output)
        return output

    trainer._generate_and_score_completions = capture_generate
    trainer.train()
    output, inputs = captured["output"], captured["inputs"]
    assert output["advantages"].dim() == 1  # deferred to the loss pass (aligned, on-policy)

    # The teacher's ids: the chat template of problem + privileged context, then exactly the student's completion.
    ((teacher_prompts, teacher_completions, teacher_completion_mask),) = calls
    assert torch.equal(teacher_completions, output["completion_ids"])
    assert torch.equal(teacher_completion_mask, output["completion_mask"])
    for row, example in enumerate(inputs):
        content = DEFAULT_TEACHER_TEMPLATE.format(
            problem=example["prompt"][-1]["content"], solution=example["solution"]
        )
        expected_prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
        assert list(teacher_prompts[row]) == expected_prompt
        assert "Here is a reference solution" in tokenizer.decode(expected_prompt)
        assert example["solution"] in tokenizer.decode(expected_prompt)

    # The per-token advantages applied equal the credit computed from a separate student pass.
    prompt_completion = torch.cat([output["prompt_ids"], output["completion_ids"]], 1)
    attention = torch.cat([output["prompt_mask"], output["completion_mask"]], 1)
    with torch.no_grad():
        student_logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, prompt_completion, attention, output["completion_ids"].size(1)
        )
    expected = compute_credit(
        "cl_egrsd",
        output["advantages"],
        student_logps,
        output["teacher_logps"],
        output["teacher_entropy"],
        output["completion_mask"],
        with_entropy_ref(trainer.credit_config, float(output["credit_entropy_ref"])),
    ).advantages
    applied = trainer._last_credit.advantages
    # TRL shuffles the generation batch before the loss: compare as multisets of rows.
    assert sorted(map(tuple, applied.round(decimals=4).tolist())) == sorted(
        map(tuple, expected.round(decimals=4).tolist())
    )


def test_teacher_prompt_cache_scores_as_the_single_pass(make_trainer, tmp_path, monkeypatch):
    """Same seed and weights: the teacher's scores of the same rollouts with and without the prompt cache agree."""
    import egrsd.trainer as trainer_module

    shared = []
    original_score = trainer_module.score_tokens

    def recording_score(*args, **kwargs):
        shared.append(kwargs["share_prompts"])
        return original_score(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "score_tokens", recording_score)
    scores = {}
    for cache in (False, True):
        trainer = make_trainer(
            credit_method="egrsd",
            learning_rate=0.0,
            max_steps=1,
            teacher_prompt_cache=cache,
            output_dir=tmp_path / str(cache),
        )
        original_generate = trainer._generate_and_score_completions

        def capture_generate(inputs, original_generate=original_generate, cache=cache):
            output = original_generate(inputs)
            scores[cache] = {
                key: output[key].clone() for key in ("completion_ids", "teacher_logps", "teacher_entropy")
            }
            return output

        trainer._generate_and_score_completions = capture_generate
        trainer.train()
    assert shared == [False, True]
    assert torch.equal(scores[False]["completion_ids"], scores[True]["completion_ids"])
    for key in ("teacher_logps", "teacher_entropy"):
        torch.testing.assert_close(scores[True][key], scores[False][key], atol=1e-5, rtol=0)


def test_teacher_method_without_solution_column_fails_at_construction(make_trainer, arith_dataset):
    dataset = arith_dataset.remove_columns("solution")
    with pytest.raises(ValueError, match=r"credit_method='egrsd'.*no 'solution' column.*\['answer', 'prompt'\]"):
        make_trainer(train_dataset=dataset)
    # grpo needs no privileged context.
    make_trainer(credit_method="grpo", train_dataset=dataset)


def test_invalid_config_values_are_named(tmp_path):
    with pytest.raises(ValueError, match="credit_method must be one of"):
        tiny_args(tmp_path, credit_method="egrsd2")
    with pytest.raises(ValueError, match="teacher_model must be one of"):
        tiny_args(tmp_path, teacher_model="ema")
    with pytest.raises(ValueError, match="unknown placeholder"):
        tiny_args(tmp_path, teacher_template="{problem} {reference}")
    with pytest.raises(ValueError, match="gate_floor"):
        tiny_args(tmp_path, gate_floor=0.0)
    assert tiny_args(tmp_path, entropy_ref="1.5").credit_config.entropy_ref == 1.5


def test_teacher_prompt_cache_warns_for_long_rollouts(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="egrsd.configs"):
        tiny_args(tmp_path, teacher_prompt_cache=True, max_completion_length=256)
    assert "teacher_prompt_cache" not in caplog.text
    with caplog.at_level("WARNING", logger="egrsd.configs"):
        tiny_args(tmp_path, teacher_prompt_cache=True, max_completion_length=16384)
    assert "teacher_prompt_cache with max_completion_length=16384" in caplog.text
    assert "1.0 GiB" in caplog.text  # 4 rows x 16384^2 one-byte mask entries


def test_frozen_teacher_with_lora_disables_the_adapter(make_trainer, tokenizer):
    from peft import LoraConfig

    trainer = make_trainer(
        credit_method="egrsd",
        teacher_model="frozen",
        max_steps=1,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    assert trainer.teacher is None
    trainer.train()
    assert math.isfinite(trainer.state.log_history[0]["loss"])
    # The teacher pass runs with the adapter off: it scores like the base model, not like the adapted one.
    model = trainer.accelerator.unwrap_model(trainer.model)
    ids = torch.tensor([tokenizer("Compute 3+4.<think>7</think>").input_ids])
    with trainer._teacher_forward_context(), torch.no_grad():
        teacher_logits = model(input_ids=ids).logits
    with model.disable_adapter(), torch.no_grad():
        base_logits = model(input_ids=ids).logits
    with torch.no_grad():
        adapted_logits = model(input_ids=ids).logits
    torch.testing.assert_close(teacher_logits, base_logits)
    assert not torch.allclose(teacher_logits, adapted_logits)


def capture_generation_outputs(trainer):
    outputs = []
    original_generate = trainer._generate_and_score_completions

    def capture(inputs):
        output = original_generate(inputs)
        outputs.append(dict(output))
        return output

    trainer._generate_and_score_completions = capture
    return outputs


@pytest.mark.parametrize("teacher,beta", [("live", 0.0), ("frozen", 0.04)])
def test_fp32_lm_head_with_a_bf16_model_scores_the_teacher_as_trl_scores_the_student(make_trainer, teacher, beta):
    """`cast_lm_head_to_fp32` on a bf16 model (the frozen teacher being TRL's reference model at beta > 0): the teacher
    scores like TRL's fused head, so an identity teacher (template `{problem}`) gives Delta = 0."""
    trainer = make_trainer(
        credit_method="rlsd",
        teacher_model=teacher,
        beta=beta,
        teacher_template="{problem}",
        cast_lm_head_to_fp32=True,
        model_init_kwargs={"dtype": "bfloat16"},
        max_steps=1,
        learning_rate=0.0,
    )
    assert trainer.model.model.norm.weight.dtype == torch.bfloat16
    assert trainer.model.lm_head.weight.dtype == torch.float32
    if teacher == "frozen":
        assert trainer.teacher is trainer.ref_model and trainer.teacher.lm_head.weight.dtype == torch.float32
    trainer.train()
    logged = trainer.state.log_history[0]
    assert math.isfinite(logged["loss"])
    assert logged["credit/delta_abs_mean"] == 0.0


def test_teacher_runs_under_the_accelerator_autocast(make_trainer):
    """float32 weights with `bf16: true`: TRL's student log-probs come from inside autocast, so must the teacher's; an
    identity teacher then gives Delta = 0 (outside autocast it was off by up to 1e-3)."""
    trainer = make_trainer(
        credit_method="rlsd", teacher_template="{problem}", bf16=True, max_steps=1, learning_rate=0.0
    )
    assert trainer.model.dtype == torch.float32
    trainer.train()
    assert trainer.state.log_history[0]["credit/delta_abs_mean"] == 0.0


def test_live_teacher_scores_without_dropout_and_restores_train_mode(make_trainer, arith_dataset):
    trainer = make_trainer(credit_method="egrsd", model_init_kwargs={"attention_dropout": 0.5})
    assert trainer.model.config.attention_dropout == 0.5
    trainer.model.train()
    inputs = [arith_dataset[i] for i in range(4)]
    completion_ids = torch.randint(4, 50, (4, 6), generator=torch.Generator().manual_seed(0))
    completion_mask = torch.ones_like(completion_ids)
    first = trainer.score_with_teacher(inputs, completion_ids, completion_mask)
    second = trainer.score_with_teacher(inputs, completion_ids, completion_mask)
    assert trainer.model.training
    for a, b in zip(first, second):
        assert torch.equal(a, b)
