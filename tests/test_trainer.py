import math

import pytest
import torch
from helpers import digit_reward, tiny_training_settings

from egrsd.configs import EGRSDConfig
from egrsd.credit import compute_credit, with_entropy_ref
from egrsd.teacher_prompts import DEFAULT_TEACHER_TEMPLATE
from egrsd.trainer import EGRSDTrainer


def tiny_args(tmp_path, **overrides):
    return EGRSDConfig(**tiny_training_settings(tmp_path, **overrides))


@pytest.mark.parametrize(
    "method,teacher",
    [("grpo", "live"), ("opsd", "live"), ("rlsd", "base"), ("egrsd", "live"), ("cl_egrsd", "base"), ("egrsd", "ema")],
)
def test_two_steps_of_each_method_train(make_trainer, method, teacher):
    trainer = make_trainer(credit_method=method, teacher_model_kind=teacher)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    changed = [name for name, p in trainer.model.named_parameters() if not torch.equal(before[name], p)]
    assert changed, "no parameter moved"
    logged = trainer.state.log_history[0]
    if method == "grpo":
        assert not any(key.startswith(("credit/", "teacher/")) for key in logged)
    else:
        assert math.isfinite(logged["credit/delta_abs_mean"])
        assert 0 < logged["teacher/rows_scored_frac"] <= 1.0
    if method == "opsd":
        assert logged["teacher/rows_scored_frac"] == 1.0
    if method in ("egrsd", "cl_egrsd"):
        assert 0.2 <= logged["credit/gate_mean"] <= 1.0 and logged["credit/entropy_mean"] > 0
    if teacher == "base":
        assert trainer.teacher.model is not None and trainer.teacher.model is not trainer.model
        teacher_params = dict(trainer.teacher.model.named_parameters())
        assert all(torch.equal(before[name], teacher_params[name]) for name in before)


def test_credit_uses_rollout_logps_and_teacher_sees_prompt_plus_completion(make_trainer, tokenizer, monkeypatch):
    """The teacher scores each rollout's own completion ids after the chat template of problem + privileged context;
    with learning rate 0 (weights fixed) the deferred credit equals one computed from a separate student pass."""
    import egrsd.teacher as trainer_module

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
    import egrsd.teacher as trainer_module

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
    with pytest.raises(ValueError, match="teacher_model_kind must be one of"):
        tiny_args(tmp_path, teacher_model_kind="frozen")
    with pytest.raises(ValueError, match="teacher_model was renamed teacher_model_kind.*teacher_model_kind: base"):
        tiny_args(tmp_path, teacher_model="frozen")
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
        teacher_model_kind="base",
        max_steps=1,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    assert trainer.teacher.model is None
    trainer.train()
    assert math.isfinite(trainer.state.log_history[0]["loss"])
    # The teacher pass runs with the adapter off: it scores like the base model, not like the adapted one.
    model = trainer.accelerator.unwrap_model(trainer.model)
    ids = torch.tensor([tokenizer("Compute 3+4.<think>7</think>").input_ids])
    with trainer.teacher._forward_context(), torch.no_grad():
        teacher_logits = model(input_ids=ids).logits
    with model.disable_adapter(), torch.no_grad():
        base_logits = model(input_ids=ids).logits
    with torch.no_grad():
        adapted_logits = model(input_ids=ids).logits
    torch.testing.assert_close(teacher_logits, base_logits)
    assert not torch.allclose(teacher_logits, adapted_logits)


@pytest.mark.parametrize("teacher,beta", [("live", 0.0), ("base", 0.04)])
def test_fp32_lm_head_with_a_bf16_model_scores_the_teacher_as_trl_scores_the_student(make_trainer, teacher, beta):
    """`cast_lm_head_to_fp32` on a bf16 model (the frozen teacher being TRL's reference model at beta > 0): the teacher
    scores like TRL's fused head, so an identity teacher (template `{problem}`) gives Delta = 0."""
    trainer = make_trainer(
        credit_method="rlsd",
        teacher_model_kind=teacher,
        beta=beta,
        teacher_template="{problem}",
        cast_lm_head_to_fp32=True,
        model_init_kwargs={"dtype": "bfloat16"},
        max_steps=1,
        learning_rate=0.0,
    )
    assert trainer.model.model.norm.weight.dtype == torch.bfloat16
    assert trainer.model.lm_head.weight.dtype == torch.float32
    if teacher == "base":
        assert (
            trainer.teacher.model is trainer.ref_model and trainer.teacher.model.lm_head.weight.dtype == torch.float32
        )
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
    first = trainer.teacher.score(inputs, completion_ids, completion_mask)
    second = trainer.teacher.score(inputs, completion_ids, completion_mask)
    assert trainer.model.training
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def record_teacher_prompts(monkeypatch):
    import egrsd.teacher as trainer_module

    prompts = []
    original_score = trainer_module.score_tokens

    def recording_score(model, prompt_ids, *args, **kwargs):
        prompts.extend(list(ids) for ids in prompt_ids)
        return original_score(model, prompt_ids, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "score_tokens", recording_score)
    return prompts


def test_long_reference_solutions_are_truncated_to_fit_the_model_context(
    make_trainer, arith_dataset, tokenizer, monkeypatch
):
    """A 64-position model: by default a teacher prompt gets what the context leaves after the completion (64 - 12);
    the reference solution is cut, never the problem, and the cut prompts are counted."""
    long_solutions = arith_dataset.map(lambda x: {"solution": x["solution"] * 40})
    prompts = record_teacher_prompts(monkeypatch)
    trainer = make_trainer(
        credit_method="egrsd",
        train_dataset=long_solutions,
        teacher_template="{problem}\nSolution: {solution}",
        model_init_kwargs={"max_position_embeddings": 64},
        max_steps=1,
    )
    trainer.train()
    assert trainer.state.log_history[0]["teacher/truncated_prompts_frac"] == 1.0
    assert prompts and all(len(ids) == 64 - 12 for ids in prompts)  # one token per character: cut exactly
    problems = {x["prompt"][-1]["content"]: x["solution"] for x in long_solutions}
    for ids in prompts:
        text = tokenizer.decode(ids)
        problem, rest = text.split("<|im_start|>user\n")[1].split("\nSolution: ")
        solution = rest.split("<|im_end|>")[0]
        assert problem in problems and 0 < len(solution) < len(problems[problem])
        assert problems[problem].startswith(solution)


def test_max_teacher_prompt_length_bounds_the_teacher_prompt(make_trainer, arith_dataset, tokenizer):
    trainer = make_trainer(credit_method="egrsd", max_teacher_prompt_length=160)
    trainer.model.train()
    inputs = [arith_dataset[i] for i in range(4)]
    ids = trainer.teacher.prompt_ids(inputs)
    assert all(len(row) == 160 for row in ids)  # 156 tokens without the solution, 164 with it
    assert trainer._metrics["train"]["teacher/truncated_prompts_frac"] == [1.0]
    text = tokenizer.decode(ids[0])
    assert inputs[0]["prompt"][-1]["content"] in text and "Here is a reference solution" in text
    assert inputs[0]["solution"] not in text
    # A problem that does not fit even without the solution is an error, not a silent cut of the problem.
    trainer.teacher.prompt_limit = 20
    with pytest.raises(ValueError, match="without its reference solution, over the limit of 20 tokens"):
        trainer.teacher.prompt_ids(inputs)


def test_a_teacher_sequence_that_can_exceed_the_context_fails_at_construction(make_trainer, tmp_path):
    with pytest.raises(ValueError, match=r"max_teacher_prompt_length=60 \+ max_completion_length=12 exceeds.*"
                       r"max_position_embeddings=64.*at most 52"):  # fmt: skip
        make_trainer(max_teacher_prompt_length=60, model_init_kwargs={"max_position_embeddings": 64})
    with pytest.raises(ValueError, match="max_completion_length=64 leaves no room for a teacher prompt"):
        make_trainer(max_completion_length=64, model_init_kwargs={"max_position_embeddings": 64})
    with pytest.raises(ValueError, match="max_teacher_prompt_length must be a positive integer"):
        tiny_args(tmp_path, max_teacher_prompt_length=0)


def test_a_chat_formatted_string_prompt_gets_the_solution_in_its_user_turn(make_trainer, arith_dataset, tokenizer):
    """An already-formatted string prompt scores the same teacher prompt as the same conversation given as messages."""

    def as_text(example):
        text = tokenizer.apply_chat_template(example["prompt"], add_generation_prompt=True, tokenize=False)
        return {"prompt": text}

    string_prompts = arith_dataset.map(as_text)
    assert string_prompts[0]["prompt"].startswith("<|im_start|>user\nCompute")
    from_text = make_trainer(train_dataset=string_prompts).teacher.prompt_ids([string_prompts[0]])
    from_messages = make_trainer().teacher.prompt_ids([arith_dataset[0]])
    assert from_text == from_messages
    text = tokenizer.decode(from_text[0])
    assert text.index(arith_dataset[0]["solution"]) < text.index("<|im_start|>assistant")


def test_frozen_teacher_copied_from_an_instance_a_trl_trainer_already_patched(tmp_path, tiny_model_dir, tokenizer,
                                                                                arith_dataset):  # fmt: skip
    """TRL's fused LM head replaces the instance's `forward` with one bound to the original model: the frozen copy
    must run its own weights (it failed with KeyError: 'hidden')."""
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    GRPOTrainer(
        model=model,
        reward_funcs=digit_reward,
        args=GRPOConfig(**tiny_training_settings(tmp_path / "trl")),
        train_dataset=arith_dataset,
        processing_class=tokenizer,
    )
    assert "forward" in model.__dict__  # patched
    trainer = EGRSDTrainer(
        model=model,
        reward_funcs=digit_reward,
        args=tiny_args(tmp_path / "egrsd", credit_method="egrsd", teacher_model_kind="base"),
        train_dataset=arith_dataset,
        processing_class=tokenizer,
    )
    trainer.train()
    assert math.isfinite(trainer.state.log_history[-1]["train_loss"])
    assert any(not torch.equal(p, initial[name]) for name, p in trainer.model.named_parameters())  # the student moved
    for name, param in trainer.teacher.model.named_parameters():
        assert torch.equal(param, initial[name]), name  # the teacher did not


def test_zero3_frozen_teacher_from_an_instance_is_refused_naming_the_path_alternative(
    tmp_path, tiny_model_dir, monkeypatch
):
    """Under ZeRO-3 an instance is already partitioned (a copy holds empty partitions): refuse and name the fix."""
    from transformers import AutoModelForCausalLM

    import egrsd.teacher as teacher_module

    monkeypatch.setattr(teacher_module, "is_deepspeed_zero3_enabled", lambda: True)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with pytest.raises(ValueError, match="teacher_model_kind='base' with DeepSpeed ZeRO-3.*pass the model as a path"):
        EGRSDTrainer(model=model, reward_funcs=digit_reward, args=tiny_args(tmp_path, teacher_model_kind="base"))


def test_frozen_teacher_with_a_pre_existing_adapter_is_the_initial_adapter(
    tmp_path, tiny_model_dir, tokenizer, arith_dataset
):
    """A PEFT model with a trained adapter: the frozen teacher is base + the initial adapter (a reference copy, as
    TRL keeps for its reference model), not the bare base."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(base, config)
    ids = torch.tensor([tokenizer("Compute 3+4.<think>7</think>").input_ids])
    with torch.no_grad():
        initial_logits = model(input_ids=ids).logits
        with model.disable_adapter():
            base_logits = model(input_ids=ids).logits
    assert not torch.allclose(initial_logits, base_logits)
    trainer = EGRSDTrainer(
        model=model,
        reward_funcs=digit_reward,
        args=tiny_args(tmp_path, credit_method="egrsd", teacher_model_kind="base", max_steps=1),
        train_dataset=arith_dataset,
        processing_class=tokenizer,
    )
    assert all(not p.requires_grad for name, p in model.named_parameters() if ".ref." in name)
    trainer.train()
    peft_model = trainer.accelerator.unwrap_model(trainer.model)
    with torch.no_grad():
        trained_logits = peft_model(input_ids=ids).logits
        with trainer.teacher._forward_context():
            teacher_logits = peft_model(input_ids=ids).logits
    assert not torch.allclose(trained_logits, initial_logits)  # the adapter trained
    torch.testing.assert_close(teacher_logits, initial_logits)


def test_teacher_methods_refuse_environments_and_images(make_trainer, arith_dataset, tmp_path):
    with pytest.raises(ValueError, match="does not support environment_factory.*reset observation.*'grpo'"):
        EGRSDTrainer(model="unused", reward_funcs=digit_reward, args=tiny_args(tmp_path), environment_factory=object)
    with_images = arith_dataset.add_column("image", [None] * len(arith_dataset))
    with pytest.raises(ValueError, match=r"multimodal column\(s\) \['image'\].*credit_method='grpo'"):
        make_trainer(train_dataset=with_images)


def test_user_turn_markers_skip_a_default_system_turn_and_leave_plain_strings_alone():
    from egrsd.teacher_prompts import build_teacher_prompt, user_turn_markers

    def qwen25_like(messages):  # a template that adds a default system turn
        turns = [{"role": "system", "content": "You are helpful."}, *messages]
        return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in turns)

    markers = user_turn_markers(qwen25_like)
    assert markers == ("<|im_start|>user\n", "<|im_end|>")
    example = {"solution": "S"}
    formatted = qwen25_like([{"role": "user", "content": "P"}]) + "<|im_start|>assistant\n"
    assert build_teacher_prompt(formatted, example, "{problem} | {solution}", user_turn=markers) == (
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nP | S<|im_end|>\n<|im_start|>assistant\n"
    )
    assert build_teacher_prompt("P", example, "{problem} | {solution}", user_turn=markers) == "P | S"
    assert user_turn_markers(lambda messages: "no content shown") == ("", "")


def first_group_flat_reward(completions, **kwargs):
    """The first group of each generation batch rewarded all alike (A = 0); every other rollout its own reward."""
    rewards = [float(i) for i in range(len(completions))]
    rewards[:4] = [1.0] * 4
    return rewards


def one_recorded_step(tmp_path, tiny_model_dir, tokenizer, arith_dataset, reward=first_group_flat_reward, **overrides):
    """One step (weights fixed) of 2 groups of 4 with `first_group_flat_reward`: the generation batch's outputs and
    the number of rows each teacher scoring call received."""
    overrides = dict(per_device_train_batch_size=8, learning_rate=0.0, max_steps=1) | overrides
    trainer = EGRSDTrainer(
        model=tiny_model_dir,
        reward_funcs=reward,
        args=tiny_args(tmp_path, **overrides),
        train_dataset=arith_dataset,
        processing_class=tokenizer,
    )
    scored_rows, outputs = [], []
    score_with_teacher, generate = trainer.teacher.score, trainer._generate_and_score_completions

    def recording_score(inputs, completion_ids, completion_mask, contexts=None):
        scored_rows.append(len(inputs))
        return score_with_teacher(inputs, completion_ids, completion_mask, contexts)

    def recording_generate(inputs):
        output = generate(inputs)
        outputs.append(dict(output))
        return output

    trainer.teacher.score, trainer._generate_and_score_completions = recording_score, recording_generate
    trainer.train()
    return trainer, outputs, scored_rows


def test_teacher_scores_only_rows_whose_credit_it_can_change(tmp_path, tiny_model_dir, tokenizer, arith_dataset):
    from egrsd.credit_pages.records import load_step_records
    from egrsd.credit_pages.render import render_step

    runs = {}
    for skip in (True, False):
        runs[skip] = one_recorded_step(
            tmp_path / str(skip),
            tiny_model_dir,
            tokenizer,
            arith_dataset,
            credit_method="cl_egrsd",
            teacher_skip_zero_advantage=skip,
            log_completions=skip,
            num_completions_to_print=0,
            num_credit_rollouts=4,
        )
    (skipping, (skipped_output,), skipped_rows), (_, (full_output,), full_rows) = runs[True], runs[False]
    assert torch.equal(skipped_output["completion_ids"], full_output["completion_ids"])  # same rollouts
    advantages = skipped_output["advantages"]
    nonzero = advantages != 0
    assert nonzero.tolist() == [False] * 4 + [True] * 4
    assert skipped_rows == [4] and full_rows == [8]
    # The rows the teacher weights are those with A != 0 in both modes: H_ref and the credit stats come from them.
    assert torch.equal(skipped_output["teacher_scored"], nonzero) and torch.equal(
        full_output["teacher_scored"], nonzero
    )
    assert skipping.state.log_history[0]["teacher/rows_scored_frac"] == 0.5
    assert runs[False][0].state.log_history[0]["teacher/rows_scored_frac"] == 1.0

    # Skipped rows hold zeros, scored rows the same scores as without skipping.
    for key in ("teacher_logps", "teacher_entropy"):
        assert (skipped_output[key][~nonzero] == 0).all()
        torch.testing.assert_close(skipped_output[key][nonzero], full_output[key][nonzero], atol=1e-5, rtol=0)

    # H_ref is the quantile of the scored rows' valid entropies only.
    mask = skipped_output["completion_mask"].bool()
    scored_entropies = sorted(skipped_output["teacher_entropy"][mask & nonzero.unsqueeze(1)].tolist())
    expected_ref = scored_entropies[math.ceil(0.95 * len(scored_entropies)) - 1]
    assert float(skipped_output["credit_entropy_ref"]) == pytest.approx(expected_ref, abs=1e-6)
    # Skipping is a speed option: H_ref does not depend on it (scoring 4 or 8 rows moves the floats by ~1e-7 only).
    assert float(full_output["credit_entropy_ref"]) == pytest.approx(expected_ref, abs=1e-5)

    # Each run with its own H_ref: every row's credit agrees with and without skipping; the A == 0 rows' is zero.
    student_logps = full_output["teacher_logps"] - 0.3 * full_output["teacher_entropy"]  # any fixed student
    credits = [
        compute_credit(
            "cl_egrsd",
            advantages,
            student_logps,
            output["teacher_logps"],
            output["teacher_entropy"],
            output["completion_mask"],
            with_entropy_ref(skipping.credit_config, float(output["credit_entropy_ref"])),
            scored=output["teacher_scored"],
        ).advantages
        for output in (skipped_output, full_output)
    ]
    torch.testing.assert_close(credits[0], credits[1], atol=1e-5, rtol=0)
    assert (credits[0][~nonzero] == 0).all() and (credits[0][nonzero][mask[nonzero]] != 0).all()

    # The saved credit of a skipped rollout keeps its zero credit and no stand-in teacher values.
    _, records = load_step_records(tmp_path / "True")
    flat = [record for record in records if record["group"] == 0]
    assert flat and all(record["advantage"] == 0 for record in flat)
    for record in flat:
        assert all(record[name] is None for name in ("ratio", "gate", "entropy", "delta", "lookahead_entropy"))
        assert record["ahat"] == [0.0] * len(record["tokens"])
    assert all(record["entropy"] is not None for record in records if record["group"] == 1)
    render_step(tmp_path / "True")  # a page mixing scored and skipped rollouts renders


def test_opsd_scores_every_rollout_even_in_flat_groups(tmp_path, tiny_model_dir, tokenizer, arith_dataset):
    trainer, (output,), scored_rows = one_recorded_step(
        tmp_path, tiny_model_dir, tokenizer, arith_dataset, credit_method="opsd"
    )
    assert (output["advantages"][:4] == 0).all()
    assert scored_rows == [8] and output["teacher_scored"].all()
    assert trainer.state.log_history[0]["teacher/rows_scored_frac"] == 1.0


def test_a_flat_group_with_an_inexact_mean_gets_zero_advantage(tmp_path, tiny_model_dir, tokenizer, arith_dataset):
    """Eight rewards of 0.1 (wrong but well formatted under the recipes' weights): TRL's float32 A is -7.45e-5, not
    0; the reward-grounded methods make it 0, so the group gets no credit and no teacher pass."""

    def first_group_at_one_tenth(completions, **kwargs):
        return [0.1] * 8 + [float(i) for i in range(8, len(completions))]

    trainer, (output,), scored_rows = one_recorded_step(
        tmp_path,
        tiny_model_dir,
        tokenizer,
        arith_dataset,
        reward=first_group_at_one_tenth,
        credit_method="rlsd",
        per_device_train_batch_size=16,
        num_generations=8,
    )
    trl_advantages = torch.tensor(list(trainer._logs["advantages"]))
    assert (trl_advantages[:8] != 0).all() and (trl_advantages[:8].abs() < 1e-3).all()  # TRL's float dust
    assert output["advantages"][:8].tolist() == [0.0] * 8
    assert torch.equal(output["advantages"][8:], trl_advantages[8:])
    assert scored_rows == [8] and output["teacher_scored"].tolist() == [False] * 8 + [True] * 8


def test_normalize_then_sum_zeroes_groups_in_which_every_reward_is_constant(
    tmp_path, tiny_model_dir, tokenizer, arith_dataset
):
    """Each function constant in group 1 (1.0 and 0.3): its per-group-centred rewards are 0, so A is 0 up to float
    dust; the reward-grounded methods make it exactly 0 and the teacher skips it. Group 2 varies."""

    def correctness(completions, **kwargs):
        return [1.0] * 4 + [0.1, 0.7, 0.2, 0.9]

    def formatting(completions, **kwargs):
        return [0.3] * 4 + [0.13, 0.3, 0.77, 0.05]

    trainer = EGRSDTrainer(
        model=tiny_model_dir,
        reward_funcs=[correctness, formatting],
        args=tiny_args(
            tmp_path,
            credit_method="egrsd",
            multi_objective_aggregation="normalize_then_sum",
            per_device_train_batch_size=8,
            learning_rate=0.0,
            max_steps=1,
        ),
        train_dataset=arith_dataset,
        processing_class=tokenizer,
    )
    outputs = []
    generate = trainer._generate_and_score_completions

    def recording_generate(inputs):
        outputs.append(dict(generate(inputs)))
        return outputs[-1]

    trainer._generate_and_score_completions = recording_generate
    trainer.train()
    (output,) = outputs
    trl_advantages = torch.tensor(list(trainer._logs["advantages"]))
    assert (trl_advantages[:4] != 0).all() and (trl_advantages[:4].abs() < 1e-5).all()  # TRL's float dust
    assert output["advantages"][:4].tolist() == [0.0] * 4
    assert (output["advantages"][4:] != 0).all()
    assert output["teacher_scored"].tolist() == [False] * 4 + [True] * 4
