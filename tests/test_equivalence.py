"""Equivalences that pin the trainer to TRL: grpo is TRL's GRPOTrainer bit for bit, the credit identities hold through
training, and the per-token credit reaches the right rows after TRL shuffles the generation batch."""

import pytest
import torch
from helpers import digit_reward, tiny_training_settings

from egrsd.configs import EGRSDConfig
from egrsd.credit import compute_credit, with_entropy_ref
from egrsd.trainer import EGRSDTrainer


# Old-log-prob modes and every loss type of TRL 1.16's GRPOConfig (grpo, bnpo, dr_grpo, dapo, cispo, sapo, luspo,
# vespo) and sequence-level importance sampling. Two steps each; every setting keeps a generation batch of 4 rows.
GRPO_MODES = {
    "aligned": {},
    "gradient_accumulation": dict(per_device_train_batch_size=2, gradient_accumulation_steps=2),
    "steps_per_generation": dict(per_device_train_batch_size=2, gradient_accumulation_steps=1, steps_per_generation=2),
    "num_iterations_2": dict(num_iterations=2),
    "beta": dict(beta=0.04),
    "entropy_mask_truncated": dict(top_entropy_quantile=0.5, mask_truncated_completions=True),
    "log_completions": dict(log_completions=True),
    **{f"loss_{loss}": dict(loss_type=loss) for loss in ("grpo", "bnpo", "dr_grpo", "cispo", "sapo", "vespo")},
    "loss_luspo": dict(loss_type="luspo", importance_sampling_level="sequence"),
    "sequence_importance_sampling": dict(importance_sampling_level="sequence"),
}


def train(trainer_class, config_class, output_dir, model, dataset, tokenizer, **overrides):
    trainer = trainer_class(
        model=model,
        reward_funcs=digit_reward,
        args=config_class(**tiny_training_settings(output_dir, **overrides)),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return trainer, losses


def assert_same_training(ours, ours_losses, reference, reference_losses):
    assert len(ours_losses) == 2
    assert ours_losses == reference_losses
    reference_params = dict(reference.model.named_parameters())
    for name, param in ours.model.named_parameters():
        assert torch.equal(param, reference_params[name]), name


@pytest.mark.parametrize("mode", list(GRPO_MODES))
def test_grpo_is_trl_grpo_trainer_bit_for_bit(tmp_path, tiny_model_dir, tokenizer, arith_dataset, mode):
    from trl import GRPOConfig, GRPOTrainer

    settings = GRPO_MODES[mode]
    common = (tiny_model_dir, arith_dataset, tokenizer)
    ours, ours_losses = train(EGRSDTrainer, EGRSDConfig, tmp_path / "ours", *common, credit_method="grpo", **settings)
    reference, reference_losses = train(GRPOTrainer, GRPOConfig, tmp_path / "trl", *common, **settings)
    assert_same_training(ours, ours_losses, reference, reference_losses)


@pytest.mark.parametrize("mode", ["aligned", "steps_per_generation"])
def test_egrsd_with_gate_floor_1_is_rlsd_bit_for_bit(tmp_path, tiny_model_dir, tokenizer, arith_dataset, mode):
    settings = GRPO_MODES[mode]
    common = (tiny_model_dir, arith_dataset, tokenizer)
    egrsd, egrsd_losses = train(
        EGRSDTrainer, EGRSDConfig, tmp_path / "egrsd", *common, credit_method="egrsd", gate_floor=1.0, **settings
    )
    rlsd, rlsd_losses = train(EGRSDTrainer, EGRSDConfig, tmp_path / "rlsd", *common, credit_method="rlsd", **settings)
    assert egrsd.state.log_history[0]["credit/gate_mean"] == 1.0
    assert_same_training(egrsd, egrsd_losses, rlsd, rlsd_losses)


@pytest.mark.parametrize("mode", ["aligned", "steps_per_generation"])
def test_rlsd_with_an_identity_teacher_is_trl_grpo(tmp_path, tiny_model_dir, tokenizer, arith_dataset, mode):
    """Teacher prompt == student prompt (template `{problem}`): Delta = 0, every ratio is 1 and rlsd is GRPO."""
    from trl import GRPOConfig, GRPOTrainer

    settings = GRPO_MODES[mode]
    common = (tiny_model_dir, arith_dataset, tokenizer)
    rlsd, rlsd_losses = train(
        EGRSDTrainer, EGRSDConfig, tmp_path / "rlsd", *common, credit_method="rlsd", teacher_template="{problem}",
        **settings,
    )  # fmt: skip
    reference, reference_losses = train(GRPOTrainer, GRPOConfig, tmp_path / "trl", *common, **settings)
    assert rlsd.state.log_history[0]["credit/delta_abs_mean"] == 0.0
    assert_same_training(rlsd, rlsd_losses, reference, reference_losses)


@pytest.mark.parametrize("mode,steps", [("aligned", 1), ("steps_per_generation", 2), ("num_iterations_2", 2)])
def test_per_token_credit_reaches_its_rows_after_trl_shuffle(make_trainer, mode, steps):
    """Each micro-batch row TRL trains on carries the teacher scores and the credit of its own rollout (`steps`: the
    optimizer steps that consume one generation batch)."""
    trainer = make_trainer(credit_method="egrsd", learning_rate=0.0, max_steps=steps, **GRPO_MODES[mode])
    generated, trained = [], []
    original_generate, original_loss = trainer._generate_and_score_completions, trainer._compute_loss

    def capture_generate(inputs):
        output = original_generate(inputs)
        generated.append({key: value.clone() for key, value in output.items() if isinstance(value, torch.Tensor)})
        return output

    def capture_loss(model, inputs):
        loss = original_loss(model, inputs)
        trained.append({key: value.clone() for key, value in inputs.items() if isinstance(value, torch.Tensor)})
        return loss

    trainer._generate_and_score_completions, trainer._compute_loss = capture_generate, capture_loss
    trainer.train()
    (batch,) = generated

    def row_key(inputs, row):
        return (tuple(inputs["prompt_ids"][row].tolist()), tuple(inputs["completion_ids"][row].tolist()))

    rows = {row_key(batch, row): row for row in range(batch["completion_ids"].size(0))}
    micro_rows = [(micro, row) for micro in trained for row in range(micro["completion_ids"].size(0))]
    assert len(micro_rows) == len(rows) * trainer.num_iterations
    if batch["advantages"].dim() == 2:  # TRL had old log-probs: the credit was applied to the generation batch
        expected = batch["advantages"]
    else:  # deferred to the loss pass; the weights are fixed (learning rate 0), so a separate pass gives its logps
        with torch.no_grad():
            student_logps, _, _ = trainer._get_per_token_logps_and_entropies(
                trainer.model,
                torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1),
                torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1),
                batch["completion_ids"].size(1),
            )
        expected = compute_credit(
            "egrsd",
            batch["advantages"],
            student_logps,
            batch["teacher_logps"],
            batch["teacher_entropy"],
            batch["completion_mask"],
            with_entropy_ref(trainer.credit_config, float(batch["credit_entropy_ref"])),
        ).advantages
    assert expected.abs().sum() > 0
    for micro, row in micro_rows:
        source = rows[row_key(micro, row)]
        assert torch.equal(micro["teacher_logps"][row], batch["teacher_logps"][source])
        torch.testing.assert_close(micro["advantages"][row], expected[source], atol=1e-5, rtol=0)


def test_cl_egrsd_at_lambda_0_is_trl_grpo_bit_for_bit(tmp_path, tiny_model_dir, tokenizer, arith_dataset):
    """lambda = 0 leaves no teacher weight: Ahat = A, the run is TRL's GRPO (and no teacher pass is spent)."""
    from trl import GRPOConfig, GRPOTrainer

    common = (tiny_model_dir, arith_dataset, tokenizer)
    ours, ours_losses = train(
        EGRSDTrainer, EGRSDConfig, tmp_path / "ours", *common, credit_method="cl_egrsd", rlsd_lambda=0.0
    )
    reference, reference_losses = train(GRPOTrainer, GRPOConfig, tmp_path / "trl", *common)
    assert [entry["credit/lambda"] for entry in ours.state.log_history if "loss" in entry] == [0.0, 0.0]
    assert ours.teacher.scoring_passes == 0
    assert_same_training(ours, ours_losses, reference, reference_losses)
