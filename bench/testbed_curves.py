"""The testbed over training time: held-out accuracy and length every N steps, from the base (step 0) on.

Every run trains the shipped verbose base with `recipes/tiny/<method>/config.yaml` through `egrsd-train`, with TRL's
own evaluation loop on: the first `--max-problems` held-out problems (`testbed-arithmetic`, split `test`) as the
eval dataset, `--num-samples` (K) samples per problem, at step 0 (`eval_on_start`) and every `--eval-steps` steps.
The points are read back from each run's `trainer_state.json` (TRL's logged eval metrics): accuracy is the mean
accuracy reward (avg@K), tokens the mean completion length. Writes `<output-dir>/curves.json` (one record per method,
seed and step), `curves.png` (accuracy and tokens against step, and each method's path in the accuracy-tokens
plane; seeds as mean ± sd bands) and `curves.md` (the table, also printed).

    python bench/testbed_curves.py --seeds 0 1 2 --max-steps 120 --output-dir outputs/testbed-curves

`--methods` takes the five tiny recipes and the named variants below (a recipe plus key overrides: the published
RLSD, the mixing schedule, the EMA teacher, the successful-rollout context), e.g.

    python bench/testbed_curves.py --methods rlsd rlsd_published egrsd egrsd_lambda_decay --max-steps 60
"""

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling testbed_frontier module, however run
from testbed_frontier import COLOURS, METHODS, run  # noqa: E402


# The eval metrics TRL logs (prefixed "eval_" in the log history) that make a curve point.
ACCURACY_KEY = "eval_rewards/accuracy_reward/mean"
TOKENS_KEY = "eval_completions/mean_length"
EXTRA_KEYS = {"clipped_ratio": "eval_completions/clipped_ratio", "eval_seconds": "eval_runtime"}
# Longest runs first, so the last ones to finish are short: a step costs about its rollouts' length, and after 30
# steps grpo kept 0.90x of the base's tokens, egrsd 0.77x, rlsd 0.69x, cl_egrsd 0.53x, opsd 0.30x (the frontier).
LONGEST_FIRST = ("grpo", "egrsd", "rlsd", "cl_egrsd", "opsd")
# Named variants: a tiny recipe and the egrsd-train overrides that make the configuration (docs/teachers.md).
RLSD_PUBLISHED = ["--ratio_clip_low", "0.8", "--ratio_clip_high", "1.2", "--rlsd_lambda", "0.5"]
RLSD_PUBLISHED += ["--rlsd_lambda_decay_steps", "50"]
VARIANTS = {
    "rlsd_published": ("rlsd", [*RLSD_PUBLISHED, "--teacher_model_kind", "ema", "--teacher_update_rate", "1.0",
                                "--teacher_sync_steps", "10"]),
    "egrsd_lambda_decay": ("egrsd", ["--rlsd_lambda", "0.5", "--rlsd_lambda_decay_steps", "50"]),
    "egrsd_ema": ("egrsd", ["--teacher_model_kind", "ema", "--teacher_update_rate", "0.05"]),
    "egrsd_successful_rollout": ("egrsd", ["--teacher_context", "successful_rollout",
                                           "--dataset_column_mapping", '{"solution": null}']),
}  # fmt: skip
CHOICES = (*METHODS, *VARIANTS)
VARIANT_COLOURS = dict(zip(VARIANTS, ("tab:olive", "tab:cyan", "tab:brown", "tab:pink")))


def recipe_and_overrides(name: str) -> tuple[str, list[str]]:
    """The tiny recipe a method or variant trains with, and its overrides."""
    return VARIANTS.get(name, (name, []))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=CHOICES, help="recipes and variants")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-steps", type=int, default=120)
    parser.add_argument("--eval-steps", type=int, default=20, help="evaluate every N steps (and at step 0)")
    parser.add_argument("--max-problems", type=int, default=50, help="held-out problems per evaluation")
    parser.add_argument("--num-samples", type=int, default=2, help="samples per held-out problem (K >= 2)")
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time (one torch thread each)")
    parser.add_argument("--output-dir", default="outputs/testbed-curves")
    parser.add_argument("--model", default=None, help="train this model instead of the recipes' testbed:base")
    parser.add_argument("--token-target", type=float, default=0.4, help="the table's length goal, x base tokens")
    parser.add_argument("--accuracy-slack", type=float, default=0.02, help="the table's accuracy floor, base - this")
    parser.add_argument("--train-args", nargs=argparse.REMAINDER, default=[], help="extra egrsd-train overrides")
    args = parser.parse_args(argv)
    if args.num_samples < 2:
        parser.error("--num-samples must be at least 2 (avg@K over K >= 2 samples per problem)")
    if args.max_steps % args.eval_steps:
        parser.error(f"--max-steps {args.max_steps} must be a multiple of --eval-steps {args.eval_steps} (last point)")
    return args


def train_args_for(method: str, seed: int, args, run_dir: Path) -> list[str]:
    """egrsd-train arguments of one run: the method's tiny recipe plus TRL's eval loop on the held-out split."""
    recipe, overrides = recipe_and_overrides(method)
    command = ["--config", f"recipes/tiny/{recipe}/config.yaml", "--output_dir", str(run_dir), "--seed", str(seed)]
    command += ["--max_steps", str(args.max_steps), "--disable_tqdm", "true"]
    command += ["--eval_strategy", "steps", "--eval_steps", str(args.eval_steps), "--eval_on_start", "true"]
    command += ["--dataset_test_split", "test", "--dataset_test_max_samples", str(args.max_problems)]
    # One eval batch holds every held-out rollout, so TRL's per-batch means are the means over all of them.
    command += ["--num_generations_eval", str(args.num_samples)]
    command += ["--per_device_eval_batch_size", str(args.max_problems * args.num_samples)]
    if args.model:
        command += ["--model_name_or_path", args.model]
    return command + overrides + list(args.train_args)


def read_points(state_path: Path, method: str, seed: int) -> list[dict]:
    """One record per evaluation in a run's log history."""
    history = json.loads(state_path.read_text())["log_history"]
    points = []
    for entry in history:
        if ACCURACY_KEY not in entry:
            continue
        point = {"method": method, "seed": seed, "step": entry["step"], "accuracy": entry[ACCURACY_KEY]}
        point["mean_tokens"] = entry[TOKENS_KEY]
        point.update({name: entry[key] for name, key in EXTRA_KEYS.items() if key in entry})
        points.append(point)
    if not points:
        raise RuntimeError(f"{state_path} logged no {ACCURACY_KEY!r}: was the eval loop on, with the accuracy reward?")
    return points


def train_with_curve(method: str, seed: int, args, output_dir: Path) -> tuple[list[dict], dict]:
    """The run's curve points and its timing (reusing a finished run with the same settings)."""
    run_dir = output_dir / f"{method}-seed{seed}"
    state_path = run_dir / "trainer_state.json"
    command = train_args_for(method, seed, args, run_dir)
    settings_path = run_dir / "curve_settings.json"
    # A finished run with the same settings is reused: an interrupted bench picks up where it stopped.
    if not (state_path.exists() and settings_path.exists() and json.loads(settings_path.read_text()) == command):
        started = time.time()
        run([sys.executable, "-m", "egrsd.train", *command], output_dir / f"{method}-seed{seed}-train.log", threads=1)
        settings_path.write_text(json.dumps(command))
        print(f"[{time.strftime('%H:%M:%S')}] {method} seed {seed}: {time.time() - started:.0f} s", flush=True)
    history = json.loads(state_path.read_text())["log_history"]
    train_runtime = next((entry["train_runtime"] for entry in history if "train_runtime" in entry), None)
    return read_points(state_path, method, seed), {"method": method, "seed": seed, "train_runtime_s": train_runtime}


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def method_curves(records: list[dict], methods) -> dict:
    """{method: [{step, accuracy_mean, accuracy_sd, tokens_mean, tokens_sd, seeds}]} over the steps every seed has."""
    curves = {}
    for method in methods:
        mine = [r for r in records if r["method"] == method]
        seeds = {r["seed"] for r in mine}
        points = []
        for step in sorted({r["step"] for r in mine}):
            at_step = [r for r in mine if r["step"] == step]
            if {r["seed"] for r in at_step} != seeds:
                continue
            accuracy, accuracy_sd = mean_sd([r["accuracy"] for r in at_step])
            tokens, tokens_sd = mean_sd([r["mean_tokens"] for r in at_step])
            points.append(
                {"step": step, "accuracy_mean": accuracy, "accuracy_sd": accuracy_sd, "tokens_mean": tokens,
                 "tokens_sd": tokens_sd, "seeds": len(at_step)}
            )  # fmt: skip
        curves[method] = points
    return curves


def summarize(records: list[dict], methods, token_target: float = 0.4, accuracy_slack: float = 0.02):
    """The table: the base (every run's step 0, pooled) and, per method, over its mean-over-seeds curve: the first
    step at <= token_target x the base's tokens with accuracy >= base - accuracy_slack, the lowest accuracy along
    the way, and the final point."""
    start = [r for r in records if r["step"] == 0]
    base = {"accuracy": statistics.mean(r["accuracy"] for r in start)}
    base["mean_tokens"] = statistics.mean(r["mean_tokens"] for r in start)
    curves = method_curves(records, methods)
    goal = f"<= {token_target:g}x tokens at >= base - {100 * accuracy_slack:g} pts"
    rows = [
        f"| method | steps to {goal} | lowest accuracy (step) | final step | final accuracy (mean ± sd) | "
        "final tokens | final vs base |",
        "|---|---|---|---|---|---|---|",
        f"| base (step 0) | | {100 * base['accuracy']:.1f} | 0 | {100 * base['accuracy']:.1f} | "
        f"{base['mean_tokens']:.0f} | 1.00 |",
    ]
    table = {"base": base}
    for method in methods:
        points = curves[method]
        reached = next(
            (
                p["step"]
                for p in points
                if p["tokens_mean"] <= token_target * base["mean_tokens"]
                and p["accuracy_mean"] >= base["accuracy"] - accuracy_slack
            ),
            None,
        )
        lowest = min(points, key=lambda p: p["accuracy_mean"])
        final = points[-1]
        table[method] = {
            "steps_to_target": reached,
            "lowest_accuracy": lowest["accuracy_mean"],
            "lowest_accuracy_step": lowest["step"],
            "final_step": final["step"],
            "final_accuracy_mean": final["accuracy_mean"],
            "final_accuracy_sd": final["accuracy_sd"],
            "final_tokens": final["tokens_mean"],
            "final_relative_tokens": final["tokens_mean"] / base["mean_tokens"],
            "seeds": final["seeds"],
        }
        rows.append(
            f"| {method} | {reached if reached is not None else 'not reached'} | "
            f"{100 * lowest['accuracy_mean']:.1f} ({lowest['step']}) | {final['step']} | "
            f"{100 * final['accuracy_mean']:.1f} ± {100 * final['accuracy_sd']:.1f} | {final['tokens_mean']:.0f} | "
            f"{table[method]['final_relative_tokens']:.2f} |"
        )
    return "\n".join(rows), table, curves


def plot(curves: dict, base: dict, path: Path, token_target: float = 0.4) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_step, tokens_by_step, plane) = plt.subplots(1, 3, figsize=(16, 4.8))
    for method, points in curves.items():
        colour = COLOURS.get(method) or VARIANT_COLOURS[method]
        steps = [p["step"] for p in points]
        for axis, key, scale in ((by_step, "accuracy", 100), (tokens_by_step, "tokens", 1)):
            mean = [scale * p[f"{key}_mean"] for p in points]
            sd = [scale * p[f"{key}_sd"] for p in points]
            axis.plot(steps, mean, marker="o", markersize=3, color=colour, label=method)
            axis.fill_between(steps, [m - s for m, s in zip(mean, sd)], [m + s for m, s in zip(mean, sd)],
                              color=colour, alpha=0.2, linewidth=0)  # fmt: skip
        tokens = [p["tokens_mean"] for p in points]
        accuracy = [100 * p["accuracy_mean"] for p in points]
        plane.plot(tokens, accuracy, marker="o", markersize=3, color=colour, label=method)
        plane.errorbar(tokens, accuracy, xerr=[p["tokens_sd"] for p in points],
                       yerr=[100 * p["accuracy_sd"] for p in points], fmt="none", color=colour, alpha=0.3)  # fmt: skip
        plane.annotate(str(steps[-1]), (tokens[-1], accuracy[-1]), xytext=(4, 4), textcoords="offset points",
                       color=colour, fontsize=8)  # fmt: skip
    for axis in (by_step, plane):
        axis.axhline(100 * base["accuracy"], color="black", linestyle=":", linewidth=1, label="base (step 0)")
    tokens_by_step.axhline(token_target * base["mean_tokens"], color="black", linestyle=":", linewidth=1,
                           label=f"{token_target:g}x the base's tokens")  # fmt: skip
    plane.axvline(token_target * base["mean_tokens"], color="black", linestyle=":", linewidth=1)
    plane.scatter([base["mean_tokens"]], [100 * base["accuracy"]], marker="s", color="black", zorder=3)
    plane.annotate("base (step 0)", (base["mean_tokens"], 100 * base["accuracy"]), xytext=(-70, 6),
                   textcoords="offset points")  # fmt: skip
    by_step.set(xlabel="training step", ylabel="held-out accuracy, avg@K (%)", title="Accuracy (mean ± sd over seeds)")
    tokens_by_step.set(xlabel="training step", ylabel="mean completion tokens", title="Length")
    plane.set(xlabel="mean completion tokens", ylabel="held-out accuracy, avg@K (%)",
              title="Paths in the accuracy-length plane (label: last step)")  # fmt: skip
    by_step.legend()
    tokens_by_step.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    output_dir = Path(args.output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    jobs = sorted(
        ((m, s) for s in args.seeds for m in args.methods),
        key=lambda job: LONGEST_FIRST.index(recipe_and_overrides(job[0])[0]),
    )
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        runs = list(pool.map(lambda job: train_with_curve(*job, args, output_dir), jobs))
    records = [point for points, _ in runs for point in points]
    markdown, table, curves = summarize(records, args.methods, args.token_target, args.accuracy_slack)
    plot(curves, table["base"], output_dir / "curves.png", args.token_target)
    wall_s = time.time() - started
    settings = vars(args) | {"command": " ".join(sys.argv), "wall_s": wall_s}
    timings = [timing for _, timing in runs]
    summary = {"records": records, "curves": curves, "table": table, "runs": timings, "settings": settings}
    (output_dir / "curves.json").write_text(json.dumps(summary, indent=2))
    (output_dir / "curves.md").write_text(markdown + "\n")
    print(markdown)
    for name, file in (("records", "curves.json"), ("table", "curves.md"), ("plot", "curves.png")):
        print(f"{name}: {output_dir / file}")
    print(f"wall time: {wall_s / 60:.1f} min")
    return summary


if __name__ == "__main__":
    main()
