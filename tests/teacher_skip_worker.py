"""One rank of the 2-process ZeRO-3 teacher-skipping test (`accelerate launch ... tests/teacher_skip_worker.py OUT`).

Trains egrsd for 2 steps on the tiny model with a reward chosen per rank and step: at step 1 rank 0's groups are
all flat (every A = 0) and rank 1's none; at step 2 rank 0 has one flat group and one not. Each rank counts the
model forwards run inside teacher scoring and writes, per generation batch, its advantages, H_ref and the valid
teacher entropies of its scored rows to OUT/rank<r>.json; the test compares the ranks.
"""

import json
import os
import sys


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from datasets import load_dataset  # noqa: E402
from helpers import FIXTURES, tiny_model_shape, tiny_training_settings  # noqa: E402

from egrsd.configs import EGRSDConfig  # noqa: E402
from egrsd.testbed.model import build_tiny_qwen3  # noqa: E402
from egrsd.testbed.tokenizer import build_tokenizer  # noqa: E402
from egrsd.trainer import EGRSDTrainer  # noqa: E402


NUM_GENERATIONS = 4


def rank_reward(completions, trainer_state, **kwargs):
    """Flat (constant) groups where the test wants them; elsewhere distinct rewards, so every A != 0."""
    rank = torch.distributed.get_rank()
    distinct = [float(i) for i in range(len(completions))]
    if rank == 1:
        return distinct
    if trainer_state.global_step == 0:
        return [1.0] * len(completions)
    return [1.0] * NUM_GENERATIONS + distinct[NUM_GENERATIONS:]


def main(output_dir: str) -> None:
    settings = tiny_training_settings(
        output_dir,
        credit_method="egrsd",
        per_device_train_batch_size=4,  # teacher row batches of 4: 8 rows per rank take two
        gradient_accumulation_steps=2,  # one generation batch of 2 groups per rank per optimizer step
        num_generations=NUM_GENERATIONS,
        max_completion_length=16,
        teacher_prompt_cache=True,  # two forwards per row batch
    )
    args = EGRSDConfig(**settings)
    rank = args.process_index
    tokenizer = build_tokenizer()
    model_dir = os.path.join(output_dir, "model")
    if rank == 0:
        build_tiny_qwen3(tokenizer, seed=0, **tiny_model_shape()).save_pretrained(model_dir)
    args.distributed_state.wait_for_everyone()
    trainer = EGRSDTrainer(
        model=model_dir,
        reward_funcs=rank_reward,
        args=args,
        train_dataset=load_dataset("json", data_files=str(FIXTURES / "arith_tiny.jsonl"), split="train"),
        processing_class=tokenizer,
    )

    counts = {"teacher_forwards": 0}
    in_teacher = {"active": False}
    score_with_teacher = trainer.teacher.score

    def counted_score_with_teacher(*a, **kw):
        in_teacher["active"] = True
        try:
            return score_with_teacher(*a, **kw)
        finally:
            in_teacher["active"] = False

    def count_forward(_module, _args):
        if in_teacher["active"]:
            counts["teacher_forwards"] += 1

    trainer.teacher.score = counted_score_with_teacher
    trainer.accelerator.unwrap_model(trainer.model).register_forward_pre_hook(count_forward)

    batches = []
    generate = trainer._generate_and_score_completions

    def recording_generate(inputs):
        output = generate(inputs)
        mask = output["completion_mask"].bool() & output["teacher_scored"].unsqueeze(1)
        batches.append(
            {
                "advantages": output["advantages"].tolist(),
                "teacher_scored": output["teacher_scored"].tolist(),
                "entropy_ref": float(output["credit_entropy_ref"]),
                "scored_entropies": output["teacher_entropy"][mask].tolist(),
                "skipped_teacher_values": output["teacher_logps"][~output["teacher_scored"]].abs().sum().item()
                + output["teacher_entropy"][~output["teacher_scored"]].abs().sum().item(),
            }
        )
        return output

    trainer._generate_and_score_completions = recording_generate
    trainer.train()
    result = {
        "rank": rank,
        "steps": trainer.state.global_step,
        "teacher_scoring_passes": trainer.teacher.scoring_passes,
        "teacher_forwards": counts["teacher_forwards"],
        "batches": batches,
        "log_history": trainer.state.log_history,
    }
    with open(os.path.join(output_dir, f"rank{rank}.json"), "w") as handle:
        json.dump(result, handle)
    torch.distributed.barrier()


if __name__ == "__main__":
    main(sys.argv[1])
