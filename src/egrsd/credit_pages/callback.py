"""The trainer's credit recording: a `TrainerCallback`, as TRL keeps its completion logging apart from the trainer.

At each generation batch the trainer hands it the rollouts (`pick_rollouts`), and each per-token credit it applies
(`record_credit`); at each logging step (`on_log`) the callback writes the step's records and renders them for
`egrsd-inspect`, sending the page and curves to the run's trackers.
"""

import math

import torch
from transformers import TrainerCallback

from ..credit import compute_credit
from .records import write_step_records
from .trackers import report_step


class CreditRecordCallback(TrainerCallback):
    """Saves the per-token credit of the best and worst rollout of the first groups at every logging step.

    The trainer adds it on the main process when `log_completions` is on and `num_credit_rollouts` > 0 (see
    `EGRSDConfig.num_credit_rollouts`). Like TRL's `LogCompletionsCallback` it holds the trainer, whose rewards,
    tokenizer and credit mask it reads.
    """

    def __init__(self, trainer):
        self.trainer = trainer
        self.records: list[dict] = []  # per-token credit of the picked rollouts, saved at the next logging step
        self.picks: dict[int, str] = {}  # rollout index in the generation batch -> "best" / "worst"

    def pick_rollouts(self, output: dict) -> None:
        """Pick the best and worst rollout of the first groups of a training generation batch and tag the rows so
        the picks survive TRL's shuffle. A method without a teacher (grpo) has its credit already, TRL's
        sequence-level advantages unchanged: it is recorded now."""
        trainer = self.trainer
        rows = output["advantages"].size(0)
        offset = trainer.accelerator.process_index * rows
        rewards_per_func = trainer._last_rewards_per_func[offset : offset + rows]  # every process's rollouts
        rewards = (rewards_per_func * trainer.reward_weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)
        output["rollout_index"] = torch.arange(rows, device=output["advantages"].device)
        output["rollout_reward"] = rewards.to(output["advantages"].device)
        self.records = []
        self.picks = {}
        group_size = trainer.num_generations
        for group_start in range(0, rows, group_size):
            if len(self.picks) >= trainer.args.num_credit_rollouts:
                break
            group = output["advantages"][group_start : group_start + group_size]
            self.picks[group_start + int(group.argmax())] = "best"
            if len(self.picks) < trainer.args.num_credit_rollouts:
                self.picks.setdefault(group_start + int(group.argmin()), "worst")
        if not trainer.args.needs_teacher:
            mask = trainer._credit_mask(output)
            self.record_credit(output, compute_credit("grpo", output["advantages"], None, None, None, mask))

    def record_credit(self, inputs: dict, credit) -> None:
        """Per-token credit of the picked rollouts among `inputs`' rows (a generation batch or a micro-batch)."""
        trainer = self.trainer
        tokenizer = trainer._tokenizer
        mask = trainer._credit_mask(inputs).bool()
        per_token = {
            "ahat": credit.advantages,
            "ratio": credit.ratio,
            "gate": credit.gate,
            "entropy": credit.entropy,
            "delta": credit.delta,
            "lookahead_entropy": credit.lookahead_entropy,
        }
        scored = inputs.get("teacher_scored")
        for row, rollout in enumerate(inputs["rollout_index"].tolist()):
            pick = self.picks.get(rollout)
            if pick is None:
                continue
            # A skipped row (A == 0) has no teacher scores: its record keeps the (zero) credit, not stand-in values.
            teacher_scored = scored is None or bool(scored[row])
            valid = mask[row]
            token_ids = inputs["completion_ids"][row][valid].tolist()
            prompt_ids = inputs["prompt_ids"][row][inputs["prompt_mask"][row].bool()].tolist()
            record = {
                "step": trainer.state.global_step,
                "method": trainer.args.credit_method,
                "rollout": rollout,
                "group": rollout // trainer.num_generations,
                "pick": pick,
                "prompt": tokenizer.decode(prompt_ids),
                "completion": tokenizer.decode(token_ids),
                "reward": _finite_or_none(inputs["rollout_reward"][row]),
                "advantage": float(inputs["advantages"][row]) if inputs["advantages"].dim() == 1 else None,
                "entropy_ref": credit.entropy_ref,
                "tokens": [tokenizer.decode([token_id]) for token_id in token_ids],
                "token_ids": token_ids,
            }
            for name, values in per_token.items():
                if values is not None and (teacher_scored or name == "ahat"):
                    record[name] = values[row][valid].tolist()
            self.records.append(record)

    def on_log(self, args, state, control, **kwargs):
        if not self.records or not self.trainer.model.training:
            return
        step = state.global_step
        for record in self.records:
            record["step"] = step
        # Micro-batches arrive shuffled; the page reads best to worst, group by group.
        self.records.sort(key=lambda record: (record["group"], record["pick"] != "best"))
        write_step_records(args.output_dir, step, self.records)
        report_step(args.output_dir, step, list(args.report_to or []))
        self.records = []


def _finite_or_none(value: torch.Tensor) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
