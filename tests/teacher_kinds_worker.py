"""One rank of the 2-process ZeRO-3 teacher-kind test (`accelerate launch ... tests/teacher_kinds_worker.py OUT KIND`).

Trains egrsd for 2 steps on the tiny model (passed by path, so a base or EMA teacher is loaded again from it, as TRL
loads its reference model), then gathers the full weights of the student, the teacher and the initial model and
writes to OUT/rank<r>.json how far the teacher is from each.
"""

import json
import os
import sys


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import deepspeed  # noqa: E402
import torch  # noqa: E402
from datasets import load_dataset  # noqa: E402
from helpers import FIXTURES, tiny_model_shape, tiny_training_settings  # noqa: E402

from egrsd.configs import EGRSDConfig  # noqa: E402
from egrsd.testbed.model import build_tiny_qwen3  # noqa: E402
from egrsd.testbed.tokenizer import build_tokenizer  # noqa: E402
from egrsd.trainer import EGRSDTrainer  # noqa: E402


def index_reward(completions, **kwargs):
    """Every group has a spread of rewards, so both steps train."""
    return [float(i % 4) for i in range(len(completions))]


def full_weights(model) -> list[torch.Tensor]:
    with deepspeed.zero.GatheredParameters(list(model.parameters())):
        return [p.detach().clone().float() for p in model.parameters()]


def main(output_dir: str, kind: str) -> None:
    args = EGRSDConfig(
        **tiny_training_settings(
            output_dir,
            credit_method="egrsd",
            teacher_model_kind=kind,
            teacher_update_rate=1.0,
            lr_scheduler_type="constant",
        )
    )
    rank = args.process_index
    tokenizer = build_tokenizer()
    model_dir = os.path.join(output_dir, "model")
    if rank == 0:
        build_tiny_qwen3(tokenizer, seed=0, **tiny_model_shape()).save_pretrained(model_dir)
    args.distributed_state.wait_for_everyone()
    trainer = EGRSDTrainer(
        model=model_dir,
        reward_funcs=index_reward,
        args=args,
        train_dataset=load_dataset("json", data_files=str(FIXTURES / "arith_tiny.jsonl"), split="train"),
        processing_class=tokenizer,
    )
    initial = full_weights(trainer.teacher.model)
    trainer.train()
    student, teacher = full_weights(trainer.model), full_weights(trainer.teacher.model)

    def distance(a, b):
        return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))

    result = {
        "steps": trainer.state.global_step,
        "teacher_vs_student": distance(teacher, student),
        "teacher_vs_initial": distance(teacher, initial),
        "student_vs_initial": distance(student, initial),
        "syncs": trainer.teacher.sync_callback.syncs if trainer.teacher.sync_callback else 0,
        "losses": [entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
    }
    with open(os.path.join(output_dir, f"rank{rank}.json"), "w") as handle:
        json.dump(result, handle)
    torch.distributed.barrier()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
