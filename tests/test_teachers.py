"""The teacher component: RLSD's mixing weight and its schedule, the teacher kinds (live, base, EMA) and their resume,
the privileged contexts (solution, answer, a successful sibling rollout), the teacher's chat-template keys, and proof
that the credit reaches TRL's loss."""

import math

import pytest
import torch
from helpers import digit_reward, tiny_training_settings

from egrsd.configs import EGRSDConfig
from egrsd.teacher_prompts import demonstration_sources, without_thinking
from egrsd.trainer import EGRSDTrainer


def tiny_args(tmp_path, **overrides):
    return EGRSDConfig(**tiny_training_settings(tmp_path, **overrides))


def logged(trainer, key):
    return [entry[key] for entry in trainer.state.log_history if key in entry]


# ---------------------------------------------------------------------------------------------- the RLSD mixing weight


def test_lambda_schedule_rises_then_falls_linearly(tmp_path):
    args = tiny_args(tmp_path, rlsd_lambda=0.5, rlsd_lambda_warmup_steps=2, rlsd_lambda_decay_steps=4)
    assert [args.rlsd_lambda_at(step) for step in range(8)] == [0.0, 0.25, 0.5, 0.375, 0.25, 0.125, 0.0, 0.0]
    published = tiny_args(tmp_path, rlsd_lambda=0.5, rlsd_lambda_decay_steps=50)  # RLSD: 0.5 to 0 over 50 steps
    assert [published.rlsd_lambda_at(step) for step in (0, 25, 50, 70)] == [0.5, 0.25, 0.0, 0.0]
    assert [tiny_args(tmp_path).rlsd_lambda_at(step) for step in (0, 1000)] == [1.0, 1.0]


def test_lambda_is_logged_every_step_and_at_zero_the_teacher_is_not_run(make_trainer):
    trainer = make_trainer(credit_method="rlsd", rlsd_lambda=0.5, rlsd_lambda_decay_steps=1)
    trainer.train()
    assert logged(trainer, "credit/lambda") == [0.5, 0.0]
    assert trainer.teacher.scoring_passes == 1  # step 2 has lambda 0: Ahat = A, no teacher pass


# ------------------------------------------------------------------------------------------------------ teacher kinds


def test_ema_teacher_at_rate_one_equals_the_student_after_each_sync(make_trainer):
    trainer = make_trainer(credit_method="egrsd", teacher_model_kind="ema", teacher_update_rate=1.0)
    initial = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.teacher.sync_callback.syncs == 2
    teacher = dict(trainer.teacher.model.named_parameters())
    moved = [name for name, p in trainer.model.named_parameters() if not torch.equal(p, initial[name])]
    assert moved
    for name, param in trainer.model.named_parameters():
        assert torch.equal(teacher[name], param), name


def test_ema_teacher_moves_by_its_rate_every_sync_steps(make_trainer):
    trainer = make_trainer(
        credit_method="egrsd", teacher_model_kind="ema", teacher_update_rate=0.25, teacher_sync_steps=2
    )
    initial = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.teacher.sync_callback.syncs == 1  # at step 2 only
    teacher = dict(trainer.teacher.model.named_parameters())
    for name, param in trainer.model.named_parameters():
        torch.testing.assert_close(teacher[name], 0.75 * initial[name] + 0.25 * param.detach(), rtol=0, atol=1e-7)


def test_a_resumed_ema_teacher_restarts_from_the_resumed_weights(tmp_path, tiny_model_dir, tokenizer, arith_dataset):
    """The EMA's state is not in the checkpoint: a resume syncs it fully to the resumed student, then goes on."""
    from transformers import AutoModelForCausalLM

    def index_reward(completions, **kwargs):  # every group has a spread, so every step trains
        return [float(i % 4) for i in range(len(completions))]

    def make(**overrides):
        settings = dict(
            credit_method="egrsd",
            teacher_model_kind="ema",
            teacher_update_rate=0.5,
            lr_scheduler_type="constant",  # the linear default reaches 0 at the last of 2 steps
            save_strategy="steps",
            save_steps=1,
        )
        return EGRSDTrainer(
            model=tiny_model_dir,
            reward_funcs=index_reward,
            args=tiny_args(tmp_path, **settings, **overrides),
            train_dataset=arith_dataset,
            processing_class=tokenizer,
        )

    make(max_steps=1).train()
    resumed_from = dict(AutoModelForCausalLM.from_pretrained(tmp_path / "checkpoint-1").named_parameters())
    trainer = make(max_steps=2)
    trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-1"))
    assert trainer.state.global_step == 2 and trainer.teacher.sync_callback.syncs == 2  # the resume sync + step 2
    teacher = dict(trainer.teacher.model.named_parameters())
    moved = [name for name, p in trainer.model.named_parameters() if not torch.equal(p, resumed_from[name])]
    assert moved  # step 2 trained, so a teacher left at the resumed weights (or at the student) would differ
    for name, param in trainer.model.named_parameters():
        expected = 0.5 * resumed_from[name].detach() + 0.5 * param.detach()
        torch.testing.assert_close(teacher[name], expected, rtol=0, atol=1e-7)


def test_live_teacher_with_lora_is_the_adapted_model(make_trainer, tokenizer):
    from peft import LoraConfig

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    trainer = make_trainer(credit_method="egrsd", teacher_model_kind="live", peft_config=lora)
    trainer.train()
    assert len(logged(trainer, "loss")) == 2 and trainer.teacher.model is None
    model = trainer.accelerator.unwrap_model(trainer.model)
    ids = torch.tensor([tokenizer("Compute 3+4.<think>7</think>").input_ids])
    with torch.no_grad():
        with trainer.teacher._forward_context():
            teacher_logits = model(input_ids=ids).logits
        adapted_logits = model(input_ids=ids).logits
        with model.disable_adapter():
            base_logits = model(input_ids=ids).logits
    torch.testing.assert_close(teacher_logits, adapted_logits)
    assert not torch.allclose(teacher_logits, base_logits)


def test_ema_teacher_with_lora_is_refused_naming_the_alternatives(make_trainer):
    from peft import LoraConfig

    with pytest.raises(ValueError, match="teacher_model_kind='ema' is not supported with a PEFT adapter.*base"):
        make_trainer(teacher_model_kind="ema", peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))


# --------------------------------------------------------------------------------------------- privileged contexts


def test_demonstration_sources_pick_a_sibling_success():
    rewards = [1.0, 0.0, 1.0, 0.0] + [0.0] * 4 + [0.0, 1.2, 0.0, math.nan]
    assert demonstration_sources(rewards, 4, 1.0) == [2, 2, 0, 0] + [None] * 4 + [9] * 4
    assert without_thinking("<think>\nlong\n</think>\n\n\\boxed{7}") == "\\boxed{7}"
    assert without_thinking("no block") == "no block"


def record_teacher_prompts(trainer):
    prompts = []
    build = trainer.teacher.prompt

    def recording(example, context=None):
        prompt = build(example, context)
        prompts.append((example, context, prompt))
        return prompt

    trainer.teacher.prompt = recording
    return prompts


def test_answer_context_shows_the_answer_and_not_the_solution(make_trainer):
    trainer = make_trainer(credit_method="egrsd", teacher_context="answer", max_steps=1)
    prompts = record_teacher_prompts(trainer)
    trainer.train()
    assert prompts
    for example, _, prompt in prompts:
        text = prompt[-1]["content"]
        assert f"The final answer to this problem is: {example['answer']}" in text
        assert example["solution"] not in text


def first_rollout_of_each_group_succeeds(completions, **kwargs):
    """Group 1 (rows 0-3): rows 0 and 2 succeed; group 2 (rows 4-7): none does."""
    return [1.0 if i in (0, 2) else 0.1 * (i % 4) for i in range(len(completions))]


def test_successful_rollout_context_demonstrates_with_a_sibling(tmp_path, tiny_model_dir, tokenizer, arith_dataset):
    trainer = EGRSDTrainer(
        model=tiny_model_dir,
        reward_funcs=first_rollout_of_each_group_succeeds,
        args=tiny_args(
            tmp_path,
            credit_method="egrsd",
            teacher_context="successful_rollout",
            per_device_train_batch_size=8,
            max_steps=1,
            learning_rate=0.0,
        ),
        train_dataset=arith_dataset.remove_columns("solution"),
        processing_class=tokenizer,
    )
    prompts = record_teacher_prompts(trainer)
    outputs = []
    generate = trainer._generate_and_score_completions

    def recording_generate(inputs):
        output = generate(inputs)
        outputs.append(dict(output))
        return output

    batches = []
    compute_loss = trainer._compute_loss

    def recording_loss(model, batch):
        batches.append((batch, batch["advantages"].clone()))  # TRL's shuffled rows, A before the credit
        return compute_loss(model, batch)

    trainer._generate_and_score_completions, trainer._compute_loss = recording_generate, recording_loss
    trainer.train()
    (output,) = outputs
    texts = tokenizer.batch_decode(
        [row[: int(m.sum())] for row, m in zip(output["completion_ids"].tolist(), output["completion_mask"])],
        skip_special_tokens=True,
    )
    # Group 1 is scored with its siblings' demonstrations (row 0 gets row 2's, the others row 0's or row 2's);
    # group 2 has no success: its rows keep A and are not scored.
    contexts = [context for _, context, _ in prompts]
    assert contexts == [texts[2], texts[2], texts[0], texts[0]]
    assert all("Here is a correct solution to this problem" in prompt[-1]["content"] for *_, prompt in prompts)
    assert output["teacher_scored"].tolist() == [True] * 4 + [False] * 4
    ((batch, advantages),) = batches
    unscored, mask = ~batch["teacher_scored"], batch["completion_mask"]
    assert torch.equal(batch["advantages"][unscored], advantages[unscored].unsqueeze(1) * mask[unscored])
    assert not torch.equal(batch["advantages"][~unscored], advantages[~unscored].unsqueeze(1) * mask[~unscored])
    assert logged(trainer, "teacher/demonstration_frac") == [0.5]


def test_teacher_chat_template_kwargs_render_the_teacher_prompt_only(make_trainer, arith_dataset, tokenizer):
    student_thinks = make_trainer(chat_template_kwargs={"enable_thinking": True})
    teacher_does_not = make_trainer(
        chat_template_kwargs={"enable_thinking": True}, teacher_chat_template_kwargs={"enable_thinking": False}
    )
    (thinking,) = student_thinks.teacher.prompt_ids([arith_dataset[0]])
    (not_thinking,) = teacher_does_not.teacher.prompt_ids([arith_dataset[0]])
    assert tokenizer.decode(thinking).endswith("<|im_start|>assistant\n<think>\n")
    assert tokenizer.decode(not_thinking).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert teacher_does_not.chat_template_kwargs == {"enable_thinking": True}  # the student's prompts unchanged


# -------------------------------------------------------------------------------------- the credit reaches TRL's loss


def one_step(tmp_path, tiny_model_dir, tokenizer, arith_dataset, method):
    trainer = EGRSDTrainer(
        model=tiny_model_dir,
        reward_funcs=digit_reward,
        args=tiny_args(tmp_path / method, credit_method=method, max_steps=1, loss_type="dapo", gate_floor=0.2),
        train_dataset=arith_dataset,
        processing_class=tokenizer,
    )
    inputs = []
    compute_loss = trainer._compute_loss

    def recording_loss(model, batch):
        inputs.append(batch)
        return compute_loss(model, batch)

    trainer._compute_loss = recording_loss
    trainer.train()
    return trainer, inputs


def test_the_applied_credit_is_what_trl_optimises(tmp_path, tiny_model_dir, tokenizer, arith_dataset):
    """Same seed, same rollouts: egrsd's step moves the weights differently from grpo's, and its logged loss is the
    DAPO loss of the per-token advantages it applied (on-policy, one iteration: -sum(Ahat) / tokens)."""
    egrsd, (egrsd_batch,) = one_step(tmp_path, tiny_model_dir, tokenizer, arith_dataset, "egrsd")
    grpo, (grpo_batch,) = one_step(tmp_path, tiny_model_dir, tokenizer, arith_dataset, "grpo")
    assert torch.equal(egrsd_batch["completion_ids"], grpo_batch["completion_ids"])  # the same rollouts
    applied = egrsd._last_credit.advantages
    sequence = egrsd_batch["advantages"]
    assert applied.dim() == 2 and sequence is applied  # TRL read the per-token credit from the batch it was given
    mask = egrsd_batch["completion_mask"]
    assert not torch.allclose(applied, grpo_batch["advantages"].unsqueeze(1) * mask)  # the teacher moved the credit
    for trainer, ahat in ((egrsd, applied), (grpo, grpo_batch["advantages"].unsqueeze(1) * mask)):
        (loss,) = logged(trainer, "loss")
        assert loss == pytest.approx(float(-(ahat * mask).sum() / mask.sum()), rel=1e-4, abs=1e-7)
    grpo_params = dict(grpo.model.named_parameters())
    assert any(not torch.equal(p, grpo_params[name]) for name, p in egrsd.model.named_parameters())
