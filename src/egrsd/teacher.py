"""The privileged self-teacher: a component the trainer holds, as TRL holds its reference model.

It owns which weights score (`teacher_model_kind`: the live policy, the initial weights, or an EMA of the policy kept
in step by TRL's `SyncRefModelCallback`), the privileged context of each rollout (`teacher_context`), the teacher
prompts and their truncation, the scoring pass with its ZeRO-3 row padding (a no-grad forward of the training
model, or with `teacher_backend: vllm` the colocated rollout engine's prompt log-probs, `egrsd.vllm_teacher`), and
the batch's H_ref. The trainer asks it for scores; the math that turns them into credit is `egrsd.credit`'s.
"""

import contextlib
import copy

import torch
from accelerate.utils import gather_object, is_peft_model
from jinja2 import TemplateError
from transformers import PreTrainedModel
from transformers.integrations import is_deepspeed_zero3_enabled
from trl.models import prepare_deepspeed
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.callbacks import SyncRefModelCallback
from trl.trainer.utils import create_model_from_path, disable_dropout_in_model, get_config_model_id, use_adapter

from .cli import UserError
from .credit import ENTROPY_METHODS, resolve_entropy_ref
from .scoring import score_tokens
from .teacher_budget import teacher_prompt_limit
from .teacher_prompts import build_teacher_prompt, demonstration_sources, user_turn_markers, without_thinking


# The PEFT adapter holding a copy of a pre-existing adapter's initial weights (TRL's name for its reference adapter).
REFERENCE_ADAPTER = "ref"


def initial_weights_source(model, args, peft_config) -> PreTrainedModel | None:
    """Before TRL wraps `model`: what a base or EMA teacher is built from when the model is an instance (a copy;
    a path is loaded again after, as TRL loads its reference model). Refuses what cannot work."""
    if not args.needs_teacher or args.teacher_model_kind == "live":
        return None
    peft = peft_config is not None or (not isinstance(model, str) and is_peft_model(model))
    if args.teacher_model_kind == "ema" and peft:
        raise UserError(
            "teacher_model_kind='ema' is not supported with a PEFT adapter (the teacher would need an EMA adapter of "
            "its own)",
            "use teacher_model_kind: base (the adapter disabled) or live with LoRA, or train without peft for an EMA",
        )
    # A pre-existing adapter is part of the initial weights: keep a frozen copy (at beta > 0 TRL makes it itself).
    if not isinstance(model, str) and is_peft_model(model) and args.beta == 0.0:
        _add_reference_adapter(model)
    if not isinstance(model, PreTrainedModel) or peft or (args.beta != 0.0 and args.teacher_model_kind == "base"):
        return None
    if is_deepspeed_zero3_enabled():
        # The instance's parameters are already partitioned: a copy would hold empty partitions.
        raise UserError(
            f"teacher_model_kind={args.teacher_model_kind!r} with DeepSpeed ZeRO-3 cannot copy a model passed as an "
            "instance (its parameters are already partitioned across ranks)",
            "pass the model as a path or Hub id (loaded again for the teacher), or use teacher_model_kind: live",
        )
    return _unpatched_copy(model)


class Teacher:
    """Scores rollouts' completion tokens under their teacher prompts (log-probs and entropies)."""

    def __init__(self, trainer, initial_weights: PreTrainedModel | None = None):
        self.trainer = trainer
        self.args = trainer.args
        self.kind = self.args.teacher_model_kind
        # Separate weights for a base or EMA teacher; None: the live policy (or, with PEFT, its adapter disabled).
        self.model = None if self.kind == "live" else self._build_model(initial_weights)
        self.sync_callback = None
        if self.kind == "ema":
            self.sync_callback = TeacherSyncCallback(
                self.model, trainer.accelerator, self.args.teacher_update_rate, self.args.teacher_sync_steps
            )
        text_config = trainer.accelerator.unwrap_model(trainer.model).config.get_text_config()
        self.prompt_limit = teacher_prompt_limit(
            self.args.max_teacher_prompt_length,
            self.args.max_completion_length,
            getattr(text_config, "max_position_embeddings", None),
        )
        self.vllm_scorer = self._vllm_scorer() if self.args.teacher_backend == "vllm" else None
        self.user_turn = self._chat_user_turn()
        self.chat_template_kwargs = (
            trainer.chat_template_kwargs
            if self.args.teacher_chat_template_kwargs is None
            else dict(self.args.teacher_chat_template_kwargs)
        )
        self.scoring_passes = 0  # scoring calls on this rank (none when no rank has a row to score)

    # --------------------------------------------------------------------------------------------------------------
    # Weights

    def _build_model(self, initial_weights):
        trainer, args = self.trainer, self.args
        if is_peft_model(trainer.model):
            return None  # base: the adapter is disabled around the teacher pass (EMA was refused before)
        if self.kind == "base" and trainer.ref_model is not None:
            return trainer.ref_model  # TRL already keeps the initial weights (beta != 0)
        if initial_weights is not None:
            teacher = initial_weights
        else:
            model_id = get_config_model_id(trainer.model.config)
            if not model_id:
                raise UserError(
                    f"teacher_model_kind={self.kind!r} needs the initial weights, but the model has no path",
                    "pass the model as a path or Hub id, or as an instance (copied before training), or use "
                    "teacher_model_kind: live",
                )
            model_init_kwargs = dict(args.model_init_kwargs or {})
            if args.distributed_state.distributed_type in ["MULTI_GPU", "DEEPSPEED"]:
                model_init_kwargs["device_map"] = None
            model_init_kwargs.setdefault("trust_remote_code", args.trust_remote_code)
            model_init_kwargs.setdefault("dtype", trainer.model.dtype)
            model_init_kwargs.setdefault("attn_implementation", trainer.model.config._attn_implementation)
            teacher = create_model_from_path(model_id, **model_init_kwargs)
        teacher.requires_grad_(False)
        if args.disable_dropout:
            disable_dropout_in_model(teacher)
        if trainer.is_deepspeed_enabled:
            return prepare_deepspeed(teacher, trainer.accelerator)
        return trainer.accelerator.prepare_model(teacher, evaluation_mode=True)

    def _forward_context(self):
        trainer = self.trainer
        stack = contextlib.ExitStack()
        stack.enter_context(disable_gradient_checkpointing(trainer.model, self.args.gradient_checkpointing_kwargs))
        # As TRL's student log-prob pass: under the accelerator's autocast (bf16/fp16 with float32 weights).
        stack.enter_context(trainer.accelerator.autocast())
        if self.kind == "base" and self.model is None and is_peft_model(trainer.model):
            # A pre-existing adapter was copied to "ref" at construction (the initial weights); a new one is disabled.
            peft_model = trainer.accelerator.unwrap_model(trainer.model)
            adapter = REFERENCE_ADAPTER if REFERENCE_ADAPTER in peft_model.peft_config else None
            stack.enter_context(use_adapter(peft_model, adapter_name=adapter))
        return stack

    def _vllm_scorer(self):
        """teacher_backend vllm: the colocated rollout engine scores (egrsd.vllm_teacher); the teacher prompt limit
        leaves vLLM room for the one token it generates after a prompt (it refuses a prompt of max_model_len)."""
        from .vllm_teacher import VLLMTeacherScorer

        scorer = VLLMTeacherScorer(self.trainer.vllm_generation.llm, self.args.teacher_logprobs_topk)
        limit = scorer.max_model_len - self.args.max_completion_length - 1
        if limit < 1:
            raise UserError(
                f"teacher_backend=vllm: the vLLM engine's max_model_len ({scorer.max_model_len}) leaves no room for a "
                f"teacher prompt before max_completion_length={self.args.max_completion_length} completion tokens",
                "raise vllm_max_model_length, or lower max_completion_length",
            )
        self.prompt_limit = limit if self.prompt_limit is None else min(self.prompt_limit, limit)
        return scorer

    # --------------------------------------------------------------------------------------------------------------
    # Privileged context and prompts

    def contexts(self, inputs: list[dict], output: dict, rewards: torch.Tensor) -> list[str | None] | None:
        """Each local rollout's privileged text where it is not the data's: for `successful_rollout`, the
        demonstration (None: the group has no success); None for the other contexts.

        `rewards` are the combined rewards of every process's rollouts (groups may span processes), and the
        completions of every process are gathered to pick a sibling's text.
        """
        if self.args.teacher_context != "successful_rollout":
            return None
        trainer = self.trainer
        ids, mask = output["completion_ids"], output["completion_mask"]
        texts = trainer.processing_class.batch_decode(
            [row[: int(m.sum())] for row, m in zip(ids.tolist(), mask)], skip_special_tokens=True
        )
        all_texts = gather_object(texts)
        sources = demonstration_sources(rewards.tolist(), trainer.num_generations, self.args.success_reward_threshold)
        offset = trainer.accelerator.process_index * len(inputs)
        demonstrations = []
        for source in sources[offset : offset + len(inputs)]:
            text = None if source is None else all_texts[source]
            if text is not None and self.args.remove_thinking_from_demonstration:
                text = without_thinking(text)
            demonstrations.append(text)
        return demonstrations

    def _chat_user_turn(self) -> tuple[str, str]:
        """How the chat template opens and closes a user turn (for string prompts that are already formatted)."""
        trainer = self.trainer
        if getattr(trainer.processing_class, "chat_template", None) is None and trainer.chat_template is None:
            return "", ""

        def render(messages):
            return trainer.processing_class.apply_chat_template(
                messages, chat_template=trainer.chat_template, tokenize=False, **trainer.chat_template_kwargs
            )

        try:
            return user_turn_markers(render, getattr(trainer._tokenizer, "bos_token", None))
        except TemplateError:  # a template that cannot render a lone user message: plain string prompts only
            return "", ""

    def prompt(self, example: dict, context: str | None = None):
        """The teacher prompt of `example`; `context` replaces the data's solution (a demonstration, or a cut one)."""
        if context is not None:
            example = {**example, self.args.solution_column: context}
        return build_teacher_prompt(
            example["prompt"], example, self.args.teacher_template, self.args.solution_column, self.user_turn
        )

    def _tokenize(self, prompts: list) -> list[list[int]]:
        """Token ids through TRL's prompt tokenization, with the teacher's chat-template kwargs."""
        trainer = self.trainer
        student_kwargs = trainer.chat_template_kwargs
        trainer.chat_template_kwargs = self.chat_template_kwargs
        try:
            prompt_ids, _, _ = trainer._tokenize_prompts(prompts)
        finally:
            trainer.chat_template_kwargs = student_kwargs
        return [list(ids) for ids in prompt_ids]

    def prompt_ids(self, inputs: list[dict], contexts: list[str | None] | None = None) -> list[list[int]]:
        """Token ids of each rollout's teacher prompt; one over the length limit has its privileged context
        truncated (counted in `teacher/truncated_prompts_frac`)."""
        contexts = contexts or [None] * len(inputs)
        prompt_ids = self._tokenize([self.prompt(x, c) for x, c in zip(inputs, contexts)])
        limit = self.prompt_limit
        truncated = 0
        for row, ids in enumerate(prompt_ids):
            if limit is not None and len(ids) > limit:
                prompt_ids[row] = self._truncated_prompt_ids(inputs[row], contexts[row], len(ids), limit)
                truncated += 1
        trainer = self.trainer
        mode = "train" if trainer.model.training else "eval"
        fraction = torch.tensor([truncated / max(len(inputs), 1)], device=trainer.accelerator.device)
        trainer._metrics[mode]["teacher/truncated_prompts_frac"].append(
            trainer.accelerator.gather(fraction).mean().item()
        )
        return prompt_ids

    def _truncated_prompt_ids(self, example: dict, context: str | None, length: int, limit: int) -> list[int]:
        """The teacher prompt with as much of its privileged text's head as fits in `limit` tokens."""
        tokenizer = self.trainer._tokenizer
        text = context if context is not None else example.get(self.args.solution_column)
        shows_text = "{solution}" in self.args.teacher_template
        text_ids = tokenizer(str(text or ""), add_special_tokens=False)["input_ids"] if shows_text else []
        keep = len(text_ids) - (length - limit)
        while True:
            keep = max(keep, 0)
            (ids,) = self._tokenize(
                [self.prompt(example, tokenizer.decode(text_ids[:keep]) if shows_text else context)]
            )
            if len(ids) <= limit:
                return ids
            if keep == 0 or text is None or not shows_text:
                raise UserError(
                    f"a teacher prompt is {len(ids)} tokens without its reference solution, over the limit of {limit} "
                    "tokens (max_teacher_prompt_length, by default the model's context minus max_completion_length)",
                    "the problem is never truncated: shorten the prompts or raise the limit",
                )
            keep -= len(ids) - limit

    # --------------------------------------------------------------------------------------------------------------
    # Scoring

    @torch.no_grad()
    def score(
        self,
        inputs: list[dict],
        completion_ids: torch.Tensor,
        completion_mask: torch.Tensor,
        contexts: list[str | None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher log-probs and entropies (B, T) of the rollouts' completion tokens under their teacher prompts."""
        trainer = self.trainer
        mode = "train" if trainer.model.training else "eval"
        args = self.args
        batch_size = args.per_device_train_batch_size if mode == "train" else args.per_device_eval_batch_size
        model = self.model if self.model is not None else trainer.model
        self.scoring_passes += 1
        prompt_ids = self.prompt_ids(inputs, contexts)
        if self.vllm_scorer is not None:
            return self._score_in_vllm(prompt_ids, completion_ids, completion_mask, mode)
        # The teacher scores without dropout (TRL's `disable_dropout` is off by default); the live model's mode is
        # restored for the loss pass.
        was_training = model.training
        model.eval()
        try:
            with self._forward_context():
                return score_tokens(
                    model,
                    prompt_ids,
                    completion_ids,
                    completion_mask,
                    pad_token_id=trainer._tokenizer.pad_token_id,
                    temperature=trainer.temperature,
                    batch_size=batch_size,
                    chunk_size=args.teacher_chunk_size,
                    share_prompts=args.teacher_prompt_cache,
                    fp32_head=args.cast_lm_head_to_fp32,
                )
        finally:
            model.train(was_training)

    def _score_in_vllm(self, prompt_ids, completion_ids, completion_mask, mode: str):
        """teacher_backend vllm: the rollout engine's prompt log-probs, at TRL's temperature; logs the share of
        probability outside the top k and the width of the entropy's bounds, over the scored tokens of all ranks."""
        trainer = self.trainer
        logps, entropy = self.vllm_scorer.score(prompt_ids, completion_ids, completion_mask, trainer.temperature)
        stats = self.vllm_scorer.last_stats
        local = [stats["positions"], stats["tail_mass_sum"], stats["entropy_gap_sum"]]
        total = trainer.accelerator.gather(torch.tensor([local], device=trainer.accelerator.device)).sum(0)
        if float(total[0]) > 0:
            trainer._metrics[mode]["teacher/vllm_tail_mass"].append(float(total[1] / total[0]))
            trainer._metrics[mode]["teacher/vllm_entropy_gap"].append(float(total[2] / total[0]))
        return logps, entropy

    def score_rows(
        self,
        inputs: list[dict],
        output: dict,
        rows_to_score: torch.Tensor,
        mask: torch.Tensor,
        contexts: list[str | None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher log-probs and entropies (B, T) of the rows `rows_to_score`; zeros in the others.

        ZeRO-3 gathers parameters in every forward, collectively, so every rank must run the same number of teacher
        forwards: the ranks agree on the largest count of rows to score (one gather) and each pads its own to it
        with dummy rows (a copy of one of its rows with an empty completion mask, scored nowhere and discarded; one
        position wide on a rank with no row of its own, so nearly free).
        """
        trainer = self.trainer
        mode = "train" if trainer.model.training else "eval"
        device = output["completion_ids"].device
        rows = rows_to_score.nonzero().squeeze(1)
        counts = torch.tensor([[rows.numel(), rows_to_score.numel()]], device=trainer.accelerator.device)
        all_counts = trainer.accelerator.gather(counts).view(-1, 2)  # (processes, 2)
        rows_max = int(all_counts[:, 0].max())
        trainer._metrics[mode]["teacher/rows_scored_frac"].append(
            float(all_counts[:, 0].sum() / all_counts[:, 1].sum())
        )

        completion_ids, completion_mask = output["completion_ids"], output["completion_mask"]
        teacher_logps = torch.zeros(completion_ids.shape, dtype=torch.float32, device=device)
        teacher_entropy = torch.zeros_like(teacher_logps)
        if rows_max == 0:  # no rank has a row to score: no rank runs the teacher
            return teacher_logps, teacher_entropy
        # Completions are right-padded: scoring only up to the longest selected one changes no scored position.
        positions = torch.arange(1, completion_ids.size(1) + 1, device=device)
        width = max(1, int((completion_mask[rows].bool() * positions).max())) if rows.numel() else 1
        pad_row = int(rows[0]) if rows.numel() else 0
        num_pads = rows_max - rows.numel()
        selected = torch.cat([rows, torch.full((num_pads,), pad_row, dtype=rows.dtype, device=device)])
        selected_mask = completion_mask[selected, :width].clone()
        selected_mask[rows.numel() :] = 0
        picked = selected.tolist()
        logps, entropy = self.score(
            [inputs[i] for i in picked],
            completion_ids[selected, :width],
            selected_mask,
            None if contexts is None else [contexts[i] for i in picked],
        )
        teacher_logps[rows, :width] = logps[: rows.numel()].float()
        teacher_entropy[rows, :width] = entropy[: rows.numel()].float()
        return teacher_logps, teacher_entropy

    def entropy_ref(self, teacher_entropy: torch.Tensor, stat_mask: torch.Tensor) -> float:
        """H_ref of the generation batch: for a quantile, over the valid entropies of `stat_mask` on every rank.

        Ranks hold different numbers of such tokens: each pads its own to the largest count with a validity row,
        and one gather brings every rank the same values, so every rank gets the same H_ref.
        """
        trainer = self.trainer
        config = trainer.credit_config
        vocab_size = trainer.accelerator.unwrap_model(trainer.model).config.get_text_config().vocab_size
        if config.entropy_ref != "quantile" or self.args.credit_method not in ENTROPY_METHODS:
            # A fixed H_ref needs no data; rlsd and opsd do not gate (their H_ref is unused).
            return resolve_entropy_ref(config, teacher_entropy, stat_mask, vocab_size)
        local = teacher_entropy[stat_mask.bool()].float()
        count = torch.tensor([local.numel()], device=trainer.accelerator.device)
        tokens_max = int(trainer.accelerator.gather(count).max())
        if tokens_max == 0:  # no valid token on any rank
            return 0.0
        padded = torch.zeros(1, 2, tokens_max, dtype=torch.float32, device=trainer.accelerator.device)
        padded[0, 0, : local.numel()] = local.to(padded.device)
        padded[0, 1, : local.numel()] = 1.0
        gathered = trainer.accelerator.gather(padded).view(-1, 2, tokens_max)
        return resolve_entropy_ref(config, gathered[:, 0], gathered[:, 1], vocab_size)


class TeacherSyncCallback(SyncRefModelCallback):
    """Moves the EMA teacher towards the policy every `sync_steps` optimizer steps by `rate`, through TRL's
    `SyncRefModelCallback.sync_target_model` (which gathers ZeRO-3 shards).

    Its state is not saved in checkpoints: a resumed run restarts the EMA from the resumed weights (a full sync
    before its first step; docs/teachers.md).
    """

    def __init__(self, teacher_model, accelerator, rate: float, sync_steps: int):
        super().__init__(ref_model=teacher_model, accelerator=accelerator)
        self.rate, self.sync_steps = rate, sync_steps
        self.syncs = 0  # teacher updates on this process (for tests and logs)
        self._first_step = True

    def _sync(self, model, rate: float) -> None:
        self.sync_target_model(self.accelerator.unwrap_model(model), self.ref_model, rate)
        self.syncs += 1

    def on_step_begin(self, args, state, control, **kwargs):
        if self._first_step and state.global_step > 0:  # resumed: the EMA restarts from the resumed weights
            self._sync(kwargs["model"], 1.0)
        self._first_step = False

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.sync_steps == 0:
            self._sync(kwargs["model"], self.rate)


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
    base teacher is the initial weights (base + adapter), not the bare base."""
    if REFERENCE_ADAPTER in model.peft_config:  # TRL made it already (beta > 0)
        return
    active = model.active_adapter
    model.add_adapter(REFERENCE_ADAPTER, model.peft_config[active])
    marker, reference_marker = f".{active}.", f".{REFERENCE_ADAPTER}."
    for name, param in model.named_parameters():
        if marker in name:
            model.get_parameter(name.replace(marker, reference_marker)).data.copy_(param.data)
