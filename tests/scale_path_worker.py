"""One rank of `make train-8b` in miniature (tests/test_scale_path.py): `egrsd-train`, unchanged, plus a record.

`accelerate launch --config_file launch/accelerate/cpu_zero3.yaml tests/scale_path_worker.py --config ... ARGS`
runs `egrsd.train.main` with ARGS on each rank, as `-m egrsd.train` does, and appends to
$EGRSD_RANK_RECORDS/rank<r>.jsonl one line per generation batch of this rank: the step it is for, this rank's own
mean |trainer log-prob - vLLM sampling log-prob| over its rollouts' completion tokens (TRL logs that mean gathered
over the ranks, where one rank's stale engine would be diluted by the other's), and the teacher's passes and model
forwards on this rank so far. Nothing of the trainer is changed: the record reads what TRL's rollout step returns
and counts forwards with a hook.
"""

import json
import os
import sys

from egrsd import train as egrsd_train
from egrsd.teacher import Teacher
from egrsd.trainer import EGRSDTrainer


RECORDS = os.environ["EGRSD_RANK_RECORDS"]

generate_and_score = EGRSDTrainer._generate_and_score_completions
teacher_score = Teacher.score


def counting_teacher_score(self, *args, **kwargs):
    """The teacher pass, with every model forward inside it counted (ZeRO-3 needs equal counts on all ranks)."""
    if not hasattr(self, "recorded_forwards"):
        self.recorded_forwards = 0
        self.recording = False
        model = self.model if self.model is not None else self.trainer.accelerator.unwrap_model(self.trainer.model)
        model.register_forward_pre_hook(lambda _module, _args: count_forward(self))
    self.recording = True
    try:
        return teacher_score(self, *args, **kwargs)
    finally:
        self.recording = False


def count_forward(teacher) -> None:
    if teacher.recording:
        teacher.recorded_forwards += 1


def recording_generate_and_score(self, inputs):
    output = generate_and_score(self, inputs)
    mask = output["completion_mask"].bool()
    difference = (output["old_per_token_logps"] - output["sampling_per_token_logps"]).abs()
    difference = difference[mask & ~difference.isnan()]  # as TRL: a token vLLM could not score carries NaN
    record = {
        "rank": self.accelerator.process_index,
        "step": self.state.global_step + 1,
        "rollouts": int(mask.size(0)),
        "completion_tokens": int(mask.sum()),
        "logp_difference_mean": float(difference.mean()) if difference.numel() else 0.0,
        "teacher_rows_scored": int(output["teacher_scored"].sum()),
        "teacher_scoring_passes": self.teacher.scoring_passes,
        "teacher_forwards": getattr(self.teacher, "recorded_forwards", 0),
    }
    with open(os.path.join(RECORDS, f"rank{record['rank']}.jsonl"), "a") as handle:
        handle.write(json.dumps(record) + "\n")
    return output


Teacher.score = counting_teacher_score
EGRSDTrainer._generate_and_score_completions = recording_generate_and_score

if __name__ == "__main__":
    sys.exit(egrsd_train.main())
