"""Configuration: the trainer's (TRL's GRPOConfig plus the keys that define the credit method), the script's, and the
recipe parser that reads them with TRL's ModelConfig (as open-r1 keeps its configs)."""

from dataclasses import dataclass, field

from transformers.utils import logging
from trl import GRPOConfig, ModelConfig, ScriptArguments, TrlParser

from .cli import UserError
from .credit import CREDIT_METHODS, ENTROPY_REFS, CreditConfig
from .teacher_prompts import TEACHER_CONTEXTS, template_context_problems


logger = logging.get_logger(__name__)

TEACHER_MODEL_KINDS = ("live", "base", "ema")
TEACHER_BACKENDS = ("trainer", "vllm")
_CREDIT_DEFAULTS = CreditConfig()


@dataclass
class EGRSDConfig(GRPOConfig):
    r"""
    [`~trl.GRPOConfig`] with the token-credit keys of GRPO, OPSD, RLSD, EGRSD and CL-EGRSD.

    Parameters:
        credit_method (`str`, defaults to `"egrsd"`):
            "grpo" (no teacher), "opsd", "rlsd", "egrsd" or "cl_egrsd".
        ratio_clip_low, ratio_clip_high, gate_floor, entropy_ref, entropy_ref_quantile, lookahead_window,
        lookahead_decay, credit_normalization, opsd_clip:
            The [`egrsd.credit.CreditConfig`] fields. `entropy_ref` is "quantile", "log_vocab" or a number in nats.
        rlsd_lambda (`float`, defaults to `1.0`):
            rlsd, egrsd, cl_egrsd: lambda of `Ahat = A * ((1 - lambda) + lambda * m_t * g_t)`, the peak of its
            schedule. 1 is this project's reading (the teacher's weight alone); RLSD as published runs 0.5.
        rlsd_lambda_warmup_steps (`int`, defaults to `0`), rlsd_lambda_decay_steps (`int`, defaults to `0`):
            lambda rises linearly from 0 over the warm-up steps, then falls linearly to 0 over the decay steps (0:
            no warm-up, no decay); see docs/teachers.md for the exact schedule.
        rlsd_negative_only (`bool`, defaults to `False`):
            The teacher weights only the rollouts with A < 0; the others keep A.
        teacher_model_kind (`str`, defaults to `"live"`):
            "live": the current weights score the rollouts; "base": the initial weights (TRL's reference model;
            with PEFT, the model with its adapter disabled); "ema": a copy of the initial weights moved towards the
            current ones every `teacher_sync_steps` by `teacher_update_rate`.
        teacher_update_rate (`float`, defaults to `0.05`), teacher_sync_steps (`int`, defaults to `1`):
            The EMA teacher: `teacher <- (1 - rate) * teacher + rate * student` every `teacher_sync_steps` optimizer
            steps (rate 1.0 and sync steps N: RLSD's teacher refreshed every N steps).
        teacher_context (`str`, defaults to `"solution"`):
            The teacher's privileged context: "solution" (the `solution_column`), "answer" (the final answer only),
            or "successful_rollout" (a sibling rollout of the same group whose reward reaches
            `success_reward_threshold`).
        success_reward_threshold (`float`, defaults to `1.0`):
            The combined reward a rollout needs to serve as a demonstration.
        remove_thinking_from_demonstration (`bool`, defaults to `False`):
            Show the teacher the demonstration without its thinking block.
        teacher_chat_template_kwargs (`dict` or `None`):
            The chat template's keyword arguments for the teacher's prompt (default: the student's
            `chat_template_kwargs`), e.g. `{enable_thinking: true}` for a teacher in thinking mode.
        teacher_template (`str` or `None`):
            How the privileged context joins the last user message; placeholders `{problem}` (the student's
            message), `{solution}` (the reference solution, or the demonstration) and `{answer}` (the `answer`
            column). Default: the template of `teacher_context`.
        solution_column (`str`, defaults to `"solution"`):
            Dataset column holding the reference solution.
        max_teacher_prompt_length (`int` or `None`):
            Longest teacher prompt in tokens: a longer one has its reference solution cut (never the problem), and
            the fraction cut is logged as `teacher/truncated_prompts_frac`. Default: what the model's context
            (`max_position_embeddings`) leaves after `max_completion_length`.
        teacher_chunk_size (`int` or `None`):
            Positions per chunk when the LM head scores the teacher pass (default: 64 MiB of float32 logits).
        teacher_prompt_cache (`bool`, defaults to `False`):
            Run each distinct teacher prompt once per row batch and score its rollouts on its key/value cache
            (saves the prompt's compute for all but one rollout of a group). Worth it when teacher prompts are long
            next to the completions (the tiny recipes); it keeps every layer's keys and values and a dense
            (T, P + T) attention mask per row, so leave it off for long thinking rollouts.
        num_credit_rollouts (`int`, defaults to 4):
            With `log_completions`, how many rollouts per logged step have their per-token credit saved for
            `egrsd-inspect` (best and worst of a group, group by group).
        teacher_skip_zero_advantage (`bool`, defaults to `True`):
            rlsd, egrsd, cl_egrsd: the teacher scores only the rollouts with A != 0 (a group rewarded all alike gets
            zero credit whatever the teacher says); every rank still runs the same number of teacher forwards. opsd
            scores every rollout whatever this says (no reward); grpo has no teacher. `teacher/rows_scored_frac` logs
            the share scored.
        teacher_backend (`str`, defaults to `"trainer"`):
            What runs the teacher's scoring pass: "trainer", a no-grad forward of the training model (exact
            entropies); "vllm", the colocated vLLM rollout engine's prompt log-probs (a live teacher with
            `use_vllm` in colocate mode; the sampled token's log-prob exact, the entropy from the top
            `teacher_logprobs_topk` log-probs and a lower bound for the rest, see docs/teacher-vllm.md).
        teacher_logprobs_topk (`int`, defaults to `20`):
            teacher_backend vllm: how many of each position's most likely tokens vLLM returns for the entropy (the
            engine's `max_logprobs` is raised to it); at least the vocabulary size makes the entropy exact.
    """

    credit_method: str = field(default="egrsd", metadata={"help": f"One of {CREDIT_METHODS}."})
    ratio_clip_low: float = field(default=_CREDIT_DEFAULTS.ratio_clip_low, metadata={"help": "m_lo in (0, 1]."})
    ratio_clip_high: float = field(default=_CREDIT_DEFAULTS.ratio_clip_high, metadata={"help": "m_hi >= 1."})
    gate_floor: float = field(default=_CREDIT_DEFAULTS.gate_floor, metadata={"help": "g_min in (0, 1]."})
    entropy_ref: str = field(
        default=str(_CREDIT_DEFAULTS.entropy_ref),
        metadata={"help": f"H_ref: one of {ENTROPY_REFS} or a positive number of nats."},
    )
    entropy_ref_quantile: float = field(
        default=_CREDIT_DEFAULTS.entropy_ref_quantile, metadata={"help": "Quantile for entropy_ref='quantile'."}
    )
    lookahead_window: int = field(
        default=_CREDIT_DEFAULTS.lookahead_window, metadata={"help": "k of the causal lookahead (cl_egrsd)."}
    )
    lookahead_decay: float = field(
        default=_CREDIT_DEFAULTS.lookahead_decay, metadata={"help": "Weight decay^(j-1) of the j-th next position."}
    )
    credit_normalization: str = field(
        default=_CREDIT_DEFAULTS.credit_normalization, metadata={"help": "'none' or 'sequence_mean'."}
    )
    opsd_clip: float = field(default=_CREDIT_DEFAULTS.opsd_clip, metadata={"help": "d of OPSD's clip(Delta, -d, d)."})
    rlsd_lambda: float = field(
        default=_CREDIT_DEFAULTS.rlsd_lambda, metadata={"help": "lambda in [0, 1] of RLSD's mixing (its peak)."}
    )
    rlsd_lambda_warmup_steps: int = field(default=0, metadata={"help": "Steps of lambda's linear rise from 0."})
    rlsd_lambda_decay_steps: int = field(default=0, metadata={"help": "Steps of lambda's linear fall to 0 (0: none)."})
    rlsd_negative_only: bool = field(
        default=_CREDIT_DEFAULTS.rlsd_negative_only, metadata={"help": "The teacher weights only rollouts with A < 0."}
    )
    teacher_model_kind: str = field(default="live", metadata={"help": f"One of {TEACHER_MODEL_KINDS}."})
    teacher_update_rate: float = field(default=0.05, metadata={"help": "EMA teacher: rate in (0, 1]."})
    teacher_sync_steps: int = field(default=1, metadata={"help": "EMA teacher: update every this many steps."})
    teacher_model: str | None = field(
        default=None, metadata={"help": "Replaced by teacher_model_kind (live | base | ema)."}
    )
    teacher_context: str = field(default="solution", metadata={"help": f"One of {tuple(TEACHER_CONTEXTS)}."})
    success_reward_threshold: float = field(
        default=1.0, metadata={"help": "successful_rollout: the reward a demonstration needs."}
    )
    remove_thinking_from_demonstration: bool = field(
        default=False, metadata={"help": "successful_rollout: drop the demonstration's thinking block."}
    )
    teacher_chat_template_kwargs: dict | str | None = field(
        default=None, metadata={"help": "Chat template kwargs of the teacher's prompt (default: the student's)."}
    )
    teacher_template: str | None = field(
        default=None,
        metadata={
            "help": "Template of the teacher's last user message: {problem}, {solution}, {answer} (default: the "
            "template of teacher_context)."
        },
    )
    solution_column: str = field(default="solution", metadata={"help": "Column with the reference solution."})
    max_teacher_prompt_length: int | None = field(
        default=None,
        metadata={
            "help": "Longest teacher prompt in tokens; a longer one has its reference solution truncated, never the "
            "problem (default: the model's context minus max_completion_length)."
        },
    )
    teacher_chunk_size: int | None = field(
        default=None, metadata={"help": "Positions per LM-head chunk in teacher scoring (default: by memory)."}
    )
    teacher_prompt_cache: bool = field(
        default=False,
        metadata={
            "help": "Score each distinct teacher prompt once and its rollouts on its key/value cache: for short "
            "rollouts after long teacher prompts; off for long thinking rollouts (dense attention mask)."
        },
    )
    num_credit_rollouts: int = field(
        default=4,
        metadata={
            "help": "With log_completions, how many rollouts per logged step have their per-token credit saved under "
            "<output_dir>/credit (the best and worst of each group, group by group)."
        },
    )
    teacher_skip_zero_advantage: bool = field(
        default=True,
        metadata={
            "help": "rlsd/egrsd/cl_egrsd: score only rollouts with A != 0 (their credit is zero anyway); opsd always "
            "scores every rollout."
        },
    )

    teacher_backend: str = field(
        default="trainer",
        metadata={
            "help": f"One of {TEACHER_BACKENDS}: the training model's no-grad forward, or the colocated vLLM engine's "
            "prompt log-probs (live teacher, use_vllm, vllm_mode colocate)."
        },
    )
    teacher_logprobs_topk: int = field(
        default=20,
        metadata={"help": "teacher_backend vllm: top-k log-probs per position behind the teacher's entropy."},
    )

    def __post_init__(self):
        problems = []
        if self.credit_method not in CREDIT_METHODS:
            problems.append(f"credit_method must be one of {CREDIT_METHODS}, got {self.credit_method!r}")
        if self.teacher_model is not None:
            kind = {"frozen": "base"}.get(self.teacher_model, self.teacher_model)
            problems.append(
                f"teacher_model was renamed teacher_model_kind (live | base | ema; 'frozen' is now 'base'): write "
                f"teacher_model_kind: {kind} instead of teacher_model: {self.teacher_model}"
            )
        if self.teacher_model_kind not in TEACHER_MODEL_KINDS:
            problems.append(
                f"teacher_model_kind must be one of {TEACHER_MODEL_KINDS}, got {self.teacher_model_kind!r}"
            )
        if not 0.0 < self.teacher_update_rate <= 1.0:
            problems.append(f"teacher_update_rate must be in (0, 1], got {self.teacher_update_rate}")
        if self.teacher_sync_steps < 1:
            problems.append(f"teacher_sync_steps must be an integer >= 1, got {self.teacher_sync_steps}")
        for key in ("rlsd_lambda_warmup_steps", "rlsd_lambda_decay_steps"):
            if getattr(self, key) < 0:
                problems.append(f"{key} must be an integer >= 0, got {getattr(self, key)}")
        if self.teacher_context not in TEACHER_CONTEXTS:
            problems.append(f"teacher_context must be one of {tuple(TEACHER_CONTEXTS)}, got {self.teacher_context!r}")
        elif self.teacher_template is None:
            self.teacher_template = TEACHER_CONTEXTS[self.teacher_context]
        if isinstance(self.teacher_chat_template_kwargs, str):
            self.teacher_chat_template_kwargs = _json_dict(
                "teacher_chat_template_kwargs", self.teacher_chat_template_kwargs, problems
            )
        if self.teacher_template is not None:
            try:
                problems += template_context_problems(self.teacher_template, self.teacher_context)
            except ValueError as error:
                problems.append(str(error))
        if self.max_completion_length is not None and self.max_completion_length < 1:
            problems.append(
                f"max_completion_length must be a positive number of tokens, got {self.max_completion_length}"
            )
        if self.num_credit_rollouts < 0:
            problems.append(f"num_credit_rollouts must be >= 0, got {self.num_credit_rollouts}")
        if self.max_teacher_prompt_length is not None and self.max_teacher_prompt_length < 1:
            problems.append(
                f"max_teacher_prompt_length must be a positive integer, got {self.max_teacher_prompt_length}"
            )
        if self.teacher_chunk_size is not None and self.teacher_chunk_size < 1:
            problems.append(f"teacher_chunk_size must be a positive integer, got {self.teacher_chunk_size}")
        problems += self._teacher_backend_problems()
        try:
            self.credit_config  # noqa: B018 - validates the credit fields
        except ValueError as error:
            problems.append(str(error))
        if problems:
            raise ValueError("Invalid EGRSDConfig: " + "; ".join(problems))
        super().__post_init__()
        if self.teacher_prompt_cache and self.needs_teacher and self.max_completion_length:
            mask_gib = self.per_device_train_batch_size * self.max_completion_length**2 / 2**30
            if mask_gib > 0.25:
                logger.warning(
                    f"teacher_prompt_cache with max_completion_length={self.max_completion_length}: the teacher's "
                    f"completion pass builds attention masks of about {mask_gib:.1f} GiB per row batch (and keeps "
                    "every layer's keys and values). Set teacher_prompt_cache: false for long rollouts."
                )

    def _teacher_backend_problems(self) -> list[str]:
        """teacher_backend vllm scores with the live weights the colocated engine holds: what that needs."""
        if self.teacher_backend not in TEACHER_BACKENDS:
            return [f"teacher_backend must be one of {TEACHER_BACKENDS}, got {self.teacher_backend!r}"]
        if self.teacher_logprobs_topk < 1:
            return [f"teacher_logprobs_topk must be a positive integer, got {self.teacher_logprobs_topk}"]
        if self.teacher_backend != "vllm" or not self.needs_teacher:
            return []
        if not self.use_vllm:
            return [
                "teacher_backend=vllm scores the teacher in the vLLM rollout engine, but use_vllm is false: set "
                "use_vllm: true with vllm_mode: colocate, or use teacher_backend: trainer"
            ]
        if self.vllm_mode != "colocate":
            return [
                f"teacher_backend=vllm supports vllm_mode=colocate only, got {self.vllm_mode!r} (scoring through a "
                "server's prompt log-probs is not built: server-mode training needs CUDA, so it could not be tested "
                "here): use vllm_mode: colocate, or teacher_backend: trainer"
            ]
        if self.teacher_model_kind != "live":
            return [
                f"teacher_backend=vllm scores with the weights the rollout engine holds (the live policy), not a "
                f"{self.teacher_model_kind} teacher: use teacher_model_kind: live, or teacher_backend: trainer"
            ]
        if self.vllm_enable_sleep_mode:
            return [
                "teacher_backend=vllm with vllm_enable_sleep_mode (the engine drops its weights after generating, "
                "before the teacher scores): turn vllm_enable_sleep_mode off, or use teacher_backend: trainer"
            ]
        if self.vllm_tensor_parallel_size != 1:
            return [
                f"teacher_backend=vllm supports vllm_tensor_parallel_size=1 only (got "
                f"{self.vllm_tensor_parallel_size}): use 1, or teacher_backend: trainer"
            ]
        return []

    @property
    def credit_config(self) -> CreditConfig:
        entropy_ref = self.entropy_ref
        if isinstance(entropy_ref, str) and entropy_ref not in ENTROPY_REFS:
            try:
                entropy_ref = float(entropy_ref)
            except ValueError:
                pass  # CreditConfig reports it
        return CreditConfig(
            ratio_clip_low=self.ratio_clip_low,
            ratio_clip_high=self.ratio_clip_high,
            gate_floor=self.gate_floor,
            entropy_ref=entropy_ref,
            entropy_ref_quantile=self.entropy_ref_quantile,
            lookahead_window=self.lookahead_window,
            lookahead_decay=self.lookahead_decay,
            credit_normalization=self.credit_normalization,
            opsd_clip=self.opsd_clip,
            rlsd_lambda=self.rlsd_lambda,
            rlsd_negative_only=self.rlsd_negative_only,
        )

    def rlsd_lambda_at(self, step: int) -> float:
        """lambda at optimizer step `step` (0 before the first): a linear rise from 0 over the warm-up steps, then
        a linear fall to 0 over the decay steps, both relative to the peak `rlsd_lambda`."""
        warmup, decay = self.rlsd_lambda_warmup_steps, self.rlsd_lambda_decay_steps
        if step < warmup:
            return self.rlsd_lambda * step / warmup
        if decay > 0:
            return self.rlsd_lambda * max(0.0, 1.0 - (step - warmup) / decay)
        return self.rlsd_lambda

    @property
    def needs_teacher(self) -> bool:
        return self.credit_method != "grpo"


def _json_dict(key: str, text: str, problems: list[str]) -> dict | None:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        problems.append(f"{key} must be a mapping, e.g. '{{\"enable_thinking\": true}}', got {text!r}")
        return None
    return value


@dataclass
class EGRSDScriptArguments(ScriptArguments):
    """Script arguments: TRL's dataset keys plus how to map the data and which rewards to use.

    Args:
        dataset_name: a registered math set ("dapo-math-17k", "deepscaler", "openr1-math-220k", "math"), a Hub id,
            or a local .json/.jsonl/.parquet file.
        dataset_column_mapping: {role: your column} for the roles problem / solution / answer.
        dataset_layout: the registered set whose layout a local copy or another Hub id follows.
        dataset_max_samples: keep at most this many training rows (after shuffling with the seed).
        dataset_test_max_samples: with `eval_strategy` on, evaluate on at most this many rows of
            `dataset_test_split` (the same rows whatever the training seed: the first ones of a generated set).
        dataset_max_empty_solution_frac: a teacher method whose template shows `{solution}` refuses data in which a
            larger share of rows has an empty solution (their answer would be the teacher's reference solution);
            1.0 accepts any share, and `dataset_column_mapping: {solution: null}` trains on the bare answers.
        reward_funcs: reward names from `egrsd.rewards` or import strings `package.module:function`.
        check: validate the recipe and print the resolved configuration, then exit (no model or data download).
    """

    dataset_column_mapping: dict | str | None = field(
        default=None,
        metadata={"help": "JSON {role: column}: which of your columns holds the problem, solution and answer."},
    )
    dataset_layout: str | None = field(
        default=None,
        metadata={"help": "A registered set whose column layout a local copy follows, e.g. 'deepscaler'."},
    )
    dataset_max_samples: int | None = field(default=None, metadata={"help": "Use at most this many training rows."})
    dataset_test_max_samples: int | None = field(
        default=None, metadata={"help": "Evaluate on at most this many rows of dataset_test_split (fixed rows)."}
    )
    dataset_max_empty_solution_frac: float = field(
        default=0.5,
        metadata={
            "help": "Teacher methods: the largest share of rows whose solution may be empty (the answer stands in); "
            "1.0 accepts any."
        },
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: ["accuracy", "format"],
        metadata={"help": "Reward names (see `egrsd.rewards`) or import strings 'package.module:function'."},
    )
    check: bool = field(default=False, metadata={"help": "Validate the recipe, print it resolved, and exit."})


class RecipeParser(TrlParser):
    """TrlParser whose command-line errors are one `UserError` line instead of the whole usage text."""

    def error(self, message: str):
        raise UserError(message, "`egrsd-train --help` lists every key and the values it takes")


def make_parser() -> TrlParser:
    return RecipeParser((EGRSDScriptArguments, EGRSDConfig, ModelConfig))
