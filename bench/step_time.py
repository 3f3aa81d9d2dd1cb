"""Median train-step time of grpo, rlsd, egrsd, cl_egrsd (EGRSDTrainer) and TRL's SDPOTrainer, interleaved.

One trainer per method is built once on the same tiny Qwen3, prompts, batch and seed. Each `trainer.train()` call
runs one optimizer step (`max_steps=1`, constant learning rate; the optimizer and model carry over between calls),
and the methods take turns step by step, in a rotating order, so machine-load drift hits every method alike. A
callback times each step from `on_step_begin` to `on_step_end` (generation, teacher, loss, backward, optimizer).

The breakdown comes from the trainers' own timers: TRL's `step_time` (the `training_step` call) and EGRSDTrainer's
`timing/rollout_s` and `timing/teacher_scoring_s`; the SDPOTrainer has none of these, so the bench times the same
stretches of it from the outside (its rollout batch, and its no-grad teacher forward inside the loss).

    python bench/step_time.py --repeats 15 --json step_time.json
    .venv-vllm/bin/python bench/step_time.py --vllm --repeats 15   # rollouts through colocated vLLM (CPU build)

With `--vllm` (EGRSDTrainer's methods; by default grpo, egrsd, cl_egrsd) each trainer generates through its own
colocated vLLM engine, loaded from the same model saved to disk, and every step first syncs the trainer's weights
into it, as a training step does.

With `--vllm --teacher-backend trainer vllm` every teacher method also runs as `<method>_vllm_teacher`
(`teacher_backend: vllm`: its own colocated engine scores the teacher), in the same rotation as the others.

    .venv-vllm/bin/python bench/step_time.py --vllm --teacher-backend trainer vllm --methods grpo egrsd --repeats 8

With `--flat-share F` the toy reward is constant inside a share F of each batch's groups (so their rollouts have
A = 0), and every reward-grounded method also runs as `<method>_noskip` (`teacher_skip_zero_advantage: false`): the
table then shows the teacher time and the step ratio to grpo with and without skipping the rollouts of flat groups.

    python bench/step_time.py --methods grpo egrsd cl_egrsd --flat-share 0.5 --repeats 8 --json flat.json

With `--ema RATE` every teacher method also runs as `<method>_ema`: an EMA teacher (`teacher_model_kind: ema`,
`teacher_update_rate` RATE, synced every step), a second copy of the weights updated after each optimizer step.

    python bench/step_time.py --methods grpo egrsd --ema 0.05 --repeats 15
"""

import argparse
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import zlib
from contextlib import contextmanager


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from transformers import PrinterCallback, TrainerCallback  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402


METHODS = ("grpo", "rlsd", "egrsd", "cl_egrsd", "trl_sdpo")
VLLM_METHODS = ("grpo", "egrsd", "cl_egrsd")  # the default with --vllm; SDPOTrainer has no vLLM path here
# The EGRSDTrainer methods that skip the teacher on rollouts with A = 0; with --flat-share each also runs unskipped.
SKIPPING_METHODS = ("rlsd", "egrsd", "cl_egrsd")
NOSKIP_SUFFIX = "_noskip"
EMA_SUFFIX = "_ema"
VLLM_TEACHER_SUFFIX = "_vllm_teacher"  # teacher_backend: vllm (the rollout engine scores the teacher)
# The SDPO teacher reads the reference solution in the same words as EGRSD's default teacher template, so both
# teachers score prompts of about the same length.
SDPO_FEEDBACK_TEMPLATE = (
    "\n\nHere is a reference solution to this problem:\n{feedback_raw}\n\n"
    "After understanding the reference solution, solve the problem yourself."
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed steps per method")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per method before the timed ones")
    parser.add_argument("--max-completion-length", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8, help="prompts per step")
    parser.add_argument("--num-generations", type=int, default=4, help="rollouts per prompt")
    parser.add_argument(
        "--free-length",
        action="store_true",
        help="let rollouts stop at EOS (default: every rollout runs to --max-completion-length, so work is fixed)",
    )
    parser.add_argument(
        "--teacher-prompt-cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="EGRSDTrainer scores each distinct teacher prompt once per group, as the tiny recipes do",
    )
    parser.add_argument(
        "--methods", nargs="+", default=None, choices=METHODS, help="default: all (--vllm: grpo egrsd cl_egrsd)"
    )
    parser.add_argument(
        "--flat-share",
        type=flat_share,
        default=None,
        metavar="F",
        help="make the toy reward constant inside this share of each batch's groups (0-1), and run every "
        f"{'/'.join(SKIPPING_METHODS)} method with and without skipping their rollouts",
    )
    parser.add_argument(
        "--ema", type=float, default=None, metavar="RATE", help="also run each teacher method with an EMA teacher"
    )
    parser.add_argument(
        "--teacher-backend",
        nargs="+",
        choices=("trainer", "vllm"),
        default=["trainer"],
        help="with --vllm: which teacher backends each teacher method runs with (`vllm`: as <method>"
        f"{VLLM_TEACHER_SUFFIX}); both in one run for a comparison on the same load",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: shared CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="the 2-layer, 32-wide test model (smoke runs)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--vllm", action="store_true", help="rollouts through colocated vLLM (make install-vllm)")
    args = parser.parse_args(argv)
    if args.methods is None:
        args.methods = list(VLLM_METHODS if args.vllm else METHODS)
    if args.vllm and "trl_sdpo" in args.methods:
        parser.error("--vllm times EGRSDTrainer's methods only: drop trl_sdpo from --methods")
    if "vllm" in args.teacher_backend and not args.vllm:
        parser.error("--teacher-backend vllm scores the teacher in the colocated vLLM engine: add --vllm")
    return args


def flat_share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share — give a number from 0 to 1, e.g. 0.5")
    return value


def machine_info(threads: int) -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), cpu)
    except OSError:
        pass
    import transformers
    import trl

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": threads,
        "loadavg_start": os.getloadavg()[0],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
    }


def hashed_reward(completions, **kwargs):
    """A cheap deterministic toy reward in [0, 1]: a hash of the completion text.

    Grading with math-verify would add the verifier's time to every method alike, and a random-init model would
    earn a flat zero (every advantage 0); a hash gives every group distinct rewards, so no method's work is skipped.
    """
    return [(zlib.crc32(completion[0]["content"].encode()) % 1001) / 1000 for completion in completions]


def with_flat_groups(reward, share: float, group_size: int):
    """`reward` with the first round(share x groups) groups of every call rewarded 0.5 throughout (flat: A = 0).

    TRL hands the reward a generation batch group by group (each prompt's rollouts consecutive), and its sampler
    shuffles the prompts, so which problems are flat changes from step to step, as with a real verifier.
    """

    def flat_group_reward(completions, **kwargs):
        rewards = reward(completions, **kwargs)
        flat_rows = round(share * (len(rewards) // group_size)) * group_size
        return [0.5] * flat_rows + rewards[flat_rows:]

    flat_group_reward.__name__ = reward.__name__
    return flat_group_reward


def trainer_methods(
    methods: list[str], flat: bool, ema: bool = False, teacher_backends: tuple[str, ...] = ("trainer",)
) -> list[str]:
    """The trainers to build: `methods`, and after each skipping method its unskipped twin (with flat groups) and
    its EMA-teacher twin (with `--ema`); with the `vllm` teacher backend each teacher method as <method>_vllm_teacher
    (and without `trainer`, that one alone)."""
    names = []
    for method in methods:
        if method in SKIPPING_METHODS + ("opsd",) and "vllm" in teacher_backends:
            if "trainer" in teacher_backends:
                names.append(method)
            names.append(method + VLLM_TEACHER_SUFFIX)
            continue
        names.append(method)
        if flat and method in SKIPPING_METHODS:
            names.append(method + NOSKIP_SUFFIX)
        if ema and method in SKIPPING_METHODS:
            names.append(method + EMA_SUFFIX)
    return names


def build_dataset(num_prompts: int, seed: int):
    from egrsd.data import load_math_dataset

    dataset = load_math_dataset("testbed-arithmetic", "train", max_samples=num_prompts, seed=seed)
    # SDPO reads privileged context from this column; EGRSD reads `solution`. Both get the reference solution.
    return dataset.add_column("privileged_context", list(dataset["solution"]))


class StepTimer(TrainerCallback):
    """Wall and CPU time of each optimizer step: generation, teacher, loss, backward and the optimizer update.

    The CPU time (this process, all threads) does not count the time other processes hold the shared cores, so it
    is the steadier number on a loaded machine; the wall time is the one a user waits.
    """

    def __init__(self):
        self.durations: list[float] = []
        self.cpu_durations: list[float] = []
        self._start = self._cpu_start = 0.0

    @staticmethod
    def _sync():
        if torch.cuda.is_available():  # GPU kernels are queued asynchronously: time them to completion
            torch.cuda.synchronize()

    def on_step_begin(self, args, state, control, **kwargs):
        self._sync()
        self._start, self._cpu_start = time.perf_counter(), time.process_time()

    def on_step_end(self, args, state, control, **kwargs):
        self._sync()
        self.durations.append(time.perf_counter() - self._start)
        self.cpu_durations.append(time.process_time() - self._cpu_start)


def common_settings(args, output_dir: str) -> dict:
    length = args.max_completion_length
    return dict(
        output_dir=output_dir,
        per_device_train_batch_size=args.batch * args.num_generations,
        gradient_accumulation_steps=1,
        num_generations=args.num_generations,
        max_completion_length=length,
        generation_kwargs=None if args.free_length else {"min_new_tokens": length},
        max_steps=1,
        learning_rate=1e-6,
        lr_scheduler_type="constant",
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        seed=args.seed,
    )


def build_trainer(method: str, args, tokenizer, dataset, output_dir: str):
    from egrsd.testbed.model import SMOKE_TEST_SIZE, build_tiny_qwen3

    overrides = SMOKE_TEST_SIZE if args.tiny else {}
    model = build_tiny_qwen3(tokenizer, seed=args.seed, **overrides)
    settings = common_settings(args, os.path.join(output_dir, method))
    if args.vllm:
        model, settings = vllm_model_and_settings(model, tokenizer, settings, output_dir)
    reward = hashed_reward
    if args.flat_share is not None:
        reward = with_flat_groups(hashed_reward, args.flat_share, args.num_generations)
    if method == "trl_sdpo":
        from trl.experimental.sdpo import SDPOConfig, SDPOTrainer

        config = SDPOConfig(
            **settings,
            distillation_mode="sampled_token",
            distillation_weight=1.0,
            teacher_model_kind="live",  # as EGRSD's default teacher: the current weights, no second copy
            use_successful_as_teacher=False,
            include_environment_feedback=True,  # every rollout's teacher sees the reference solution
            feedback_template=SDPO_FEEDBACK_TEMPLATE,
            diagnostics_warning_interval=0,  # no toy reward reaches its success threshold: silence that warning
        )
        trainer = SDPOTrainer(
            model=model,
            reward_funcs=reward,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
        )
        instrument_sdpo(trainer)
    else:
        from egrsd.configs import EGRSDConfig
        from egrsd.trainer import EGRSDTrainer

        credit_method = method.removesuffix(NOSKIP_SUFFIX).removesuffix(EMA_SUFFIX).removesuffix(VLLM_TEACHER_SUFFIX)
        ema = method.endswith(EMA_SUFFIX)
        teacher_in_vllm = method.endswith(VLLM_TEACHER_SUFFIX)
        trainer = EGRSDTrainer(
            model=model,
            reward_funcs=reward,
            args=EGRSDConfig(
                **settings,
                credit_method=credit_method,
                teacher_model_kind="ema" if ema else "live",
                teacher_update_rate=args.ema if ema else 0.05,
                teacher_prompt_cache=args.teacher_prompt_cache,
                teacher_skip_zero_advantage=not method.endswith(NOSKIP_SUFFIX),
                teacher_backend="vllm" if teacher_in_vllm else "trainer",
            ),
            train_dataset=dataset,
            processing_class=tokenizer,
        )
    trainer.remove_callback(PrinterCallback)  # the per-step log dicts would drown the table
    timer = StepTimer()
    trainer.add_callback(timer)
    return trainer, timer


def vllm_model_and_settings(model, tokenizer, settings: dict, output_dir: str):
    """--vllm: the model as a saved folder (vLLM loads it by path) and the trainer settings for colocated vLLM."""
    if model.config.head_dim < 32:  # vLLM's CPU attention starts at head size 32 (the --tiny model has 16)
        from egrsd.testbed.model import SMOKE_TEST_SIZE, build_tiny_qwen3

        model = build_tiny_qwen3(tokenizer, seed=settings["seed"], **dict(SMOKE_TEST_SIZE, head_dim=32))
    path = os.path.join(output_dir, "vllm-model")
    if not os.path.exists(os.path.join(path, "config.json")):
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    min_tokens = settings["generation_kwargs"]
    settings = dict(settings, use_vllm=True, vllm_mode="colocate")
    # vLLM's SamplingParams names transformers' min_new_tokens `min_tokens`.
    settings["generation_kwargs"] = {"min_tokens": min_tokens["min_new_tokens"]} if min_tokens else None
    return path, settings


def instrument_sdpo(trainer) -> None:
    """Time the SDPOTrainer's rollout batch, its no-grad teacher forward and its `training_step`, from outside.

    Instance attributes shadow the class's methods; the library code is not changed.
    """
    trainer.bench_timings = {"rollout": 0.0, "teacher": 0.0, "step": 0.0}
    in_rollout = {"active": False}
    prepare_batch, forward_logits, training_step = (
        trainer._prepare_training_batch,
        trainer._forward_logits,
        trainer.training_step,
    )

    @contextmanager
    def timed(name):
        start = time.perf_counter()
        try:
            yield
        finally:
            trainer.bench_timings[name] += time.perf_counter() - start

    def timed_prepare_batch(*a, **kw):
        in_rollout["active"] = True
        try:
            with timed("rollout"):
                return prepare_batch(*a, **kw)
        finally:
            in_rollout["active"] = False

    def timed_forward_logits(*a, **kw):
        if torch.is_grad_enabled() or in_rollout["active"]:
            return forward_logits(*a, **kw)
        with timed("teacher"):  # the teacher pass inside the loss runs under no_grad; the student's has grad
            return forward_logits(*a, **kw)

    def timed_training_step(*a, **kw):
        with timed("step"):
            return training_step(*a, **kw)

    trainer._prepare_training_batch = timed_prepare_batch
    trainer._forward_logits = timed_forward_logits
    trainer.training_step = timed_training_step


def run_step(trainer, timer: StepTimer) -> dict:
    """Run one optimizer step; return its wall time and the trainer's own breakdown of it (seconds)."""
    if hasattr(trainer, "bench_timings"):
        trainer.bench_timings.update(rollout=0.0, teacher=0.0, step=0.0)
    if getattr(trainer, "use_vllm", False):
        trainer._last_loaded_step = -1  # each train() call restarts at step 0: sync every step, as training does
    trainer.train()
    wall = timer.durations[-1]
    rows_scored = math.nan  # the share of rollouts the teacher scored (EGRSDTrainer's teacher methods)
    if hasattr(trainer, "bench_timings"):
        timings = dict(trainer.bench_timings)
        step, rollout, teacher = timings["step"], timings["rollout"], timings["teacher"]
    else:
        logged = next(entry for entry in trainer.state.log_history if "step_time" in entry)
        step = logged["step_time"]
        rollout = logged["timing/rollout_s"]
        teacher = logged.get("timing/teacher_scoring_s", 0.0)
        rows_scored = logged.get("teacher/rows_scored_frac", math.nan)
    return {
        "wall": wall,
        "cpu": timer.cpu_durations[-1],
        "step_time": step,
        "rollout": rollout,
        "teacher": teacher,
        "train_fwd_bwd": step - rollout - teacher,
        "optimizer_other": wall - step,
        "rows_scored_frac": rows_scored,
    }


def bootstrap_median_interval(values: list[float], resamples: int = 2000, seed: int = 0) -> list[float]:
    """Percentile bootstrap 95% interval of the median of `values`."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    return [medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]]


def summarize(records: dict[str, list[dict]], methods: list[str]) -> dict:
    median_s = {m: statistics.median(r["wall"] for r in records[m]) for m in methods}
    median_cpu_s = {m: statistics.median(r["cpu"] for r in records[m]) for m in methods}
    result = {"median_s": median_s, "median_cpu_s": median_cpu_s}
    if "grpo" in methods:
        result["ratio_to_grpo"] = {m: median_s[m] / median_s["grpo"] for m in methods}
        result["cpu_ratio_to_grpo"] = {m: median_cpu_s[m] / median_cpu_s["grpo"] for m in methods}
        # Ratio within each round (the methods of a round ran back to back), then the median over rounds, with a
        # bootstrap 95% interval of that median: on a shared machine single steps vary by tens of percent.
        paired = {m: [r["wall"] / g["wall"] for r, g in zip(records[m], records["grpo"])] for m in methods}
        result["paired_ratio_to_grpo"] = {m: statistics.median(paired[m]) for m in methods}
        result["paired_ratio_ci95"] = {m: bootstrap_median_interval(paired[m]) for m in methods}
    parts = ("rollout", "teacher", "train_fwd_bwd", "optimizer_other", "step_time")
    result["breakdown_s"] = {m: {p: statistics.median(r[p] for r in records[m]) for p in parts} for m in methods}
    scored = {m: statistics.mean(r["rows_scored_frac"] for r in records[m]) for m in methods}
    result["rows_scored_frac"] = {m: value if math.isfinite(value) else None for m, value in scored.items()}
    # With flat groups: each skipping method's teacher time and step over its unskipped twin's (same rounds).
    pairs = [(m, m + NOSKIP_SUFFIX) for m in methods if m + NOSKIP_SUFFIX in methods]
    if pairs:
        result["skip_teacher_ratio"] = {
            m: result["breakdown_s"][m]["teacher"] / result["breakdown_s"][twin]["teacher"] for m, twin in pairs
        }
        result["skip_step_ratio"] = {m: median_s[m] / median_s[twin] for m, twin in pairs}
    result["samples_s"] = {m: [round(r["wall"], 4) for r in records[m]] for m in methods}
    return result


def print_table(result: dict, methods: list[str]) -> None:
    nan = float("nan")
    ratios = result.get("ratio_to_grpo", {})
    paired = result.get("paired_ratio_to_grpo", {})
    intervals = result.get("paired_ratio_ci95", {})
    cpu_ratios = result.get("cpu_ratio_to_grpo", {})
    rows_scored = {m: nan if value is None else value for m, value in result["rows_scored_frac"].items()}
    header = (
        f"{'method':<16} {'median s':>9} {'x grpo':>7} {'paired (95% CI)':>21} {'cpu s':>7} {'x grpo':>7}   "
        f"{'rollout':>8} {'teacher':>8} {'fwd+bwd':>8} {'optim.':>8} {'scored':>7}"
    )
    print(header)
    print("-" * len(header))
    for m in methods:
        parts = result["breakdown_s"][m]
        low, high = intervals.get(m, (nan, nan))
        print(
            f"{m:<16} {result['median_s'][m]:>9.3f} {ratios.get(m, nan):>7.3f} "
            f"{paired.get(m, nan):>7.3f} ({low:.3f}-{high:.3f}) {result['median_cpu_s'][m]:>7.3f} "
            f"{cpu_ratios.get(m, nan):>7.3f}   {parts['rollout']:>8.3f} {parts['teacher']:>8.3f} "
            f"{parts['train_fwd_bwd']:>8.3f} {parts['optimizer_other']:>8.3f} {rows_scored[m]:>7.2f}"
        )
    for m, teacher_ratio in result.get("skip_teacher_ratio", {}).items():
        print(
            f"{m}: skipping flat groups' rollouts takes {teacher_ratio:.2f}x the teacher time and "
            f"{result['skip_step_ratio'][m]:.2f}x the step of {m}{NOSKIP_SUFFIX}"
        )


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    from egrsd.testbed.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    dataset = build_dataset(args.batch, args.seed)
    machine = machine_info(args.threads)
    methods = trainer_methods(
        list(args.methods),
        flat=args.flat_share is not None,
        ema=args.ema is not None,
        teacher_backends=tuple(args.teacher_backend),
    )
    records: dict[str, list[dict]] = {m: [] for m in methods}
    with tempfile.TemporaryDirectory() as output_dir:
        trainers = {m: build_trainer(m, args, tokenizer, dataset, output_dir) for m in methods}
        for round_index in range(args.warmup + args.repeats):
            shift = round_index % len(methods)
            for method in methods[shift:] + methods[:shift]:  # rotate, so no method always follows the same one
                step = run_step(*trainers[method])
                if round_index >= args.warmup:
                    records[method].append(step)
            print(
                f"[{time.strftime('%H:%M:%S')}] round {round_index + 1}/{args.warmup + args.repeats}"
                + (" (warm-up)" if round_index < args.warmup else ""),
                file=sys.stderr,
                flush=True,
            )
    result = summarize(records, methods)
    machine["loadavg_end"] = os.getloadavg()[0]
    result["machine"] = machine
    result["settings"] = {
        "model": "tiny (2x32)" if args.tiny else "testbed (4 layers x 128)",
        "prompts": args.batch,
        "num_generations": args.num_generations,
        "max_completion_length": args.max_completion_length,
        "fixed_length": not args.free_length,
        "teacher_prompt_cache": args.teacher_prompt_cache,
        "flat_share": args.flat_share,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "seed": args.seed,
        "rollouts": "vllm colocate" if args.vllm else "transformers",
        "teacher_backends": list(args.teacher_backend),
        "command": "python bench/step_time.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    print_table(result, methods)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main()
