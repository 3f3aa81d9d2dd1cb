"""`make demo`: watch self-distillation shorten a verbose reasoner on a CPU.

Evaluates the shipped verbose base on the held-out chain-arithmetic problems, trains it with a tiny recipe
(CL-EGRSD by default) through the same `egrsd-train` entry point as the Qwen3 recipes, evaluates the result the same
way, and prints base vs trained accuracy and length, with the frontier plot.

    python -m egrsd.testbed.demo --recipe recipes/tiny/cl_egrsd/config.yaml
    python -m egrsd.testbed.demo --backend vllm   # rollouts and evaluation through vLLM (make install-vllm)
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from egrsd.testbed.base import shipped_base_path


# Held-out sampling as in training (temperature 1, no top-k/top-p), with room for the longest verbose trace.
EVAL_SAMPLING = dict(temperature=1.0, top_p=1.0, top_k=0, seed=0)
# `--backend vllm`: the recipe's rollouts through a colocated vLLM engine (the recipe itself stays as it is).
VLLM_TRAIN_ARGS = ["--use_vllm", "true", "--vllm_mode", "colocate"]
# The trainer saves the per-token credit of 4 rollouts (best and worst of two groups) at every logging step, and
# renders each step as a page (egrsd-inspect): what the gate and the lookahead did on real rollouts.
CREDIT_OVERRIDES = ["--log_completions", "true", "--num_credit_rollouts", "4"]
# Per-step training metrics worth a column: (log key, header, format).
STEP_COLUMNS = (
    ("reward", "reward", "{:.2f}"),
    ("completions/mean_length", "tokens", "{:.0f}"),
    ("credit/entropy_mean", "teacher H", "{:.3f}"),
    ("credit/gate_mean", "gate", "{:.3f}"),
    ("credit/ratio_mean", "ratio", "{:.3f}"),
    ("credit/delta_abs_mean", "|Delta|", "{:.3f}"),
    ("step_time", "s/step", "{:.1f}"),
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="recipes/tiny/cl_egrsd/config.yaml", help="a tiny recipe")
    parser.add_argument("--output-dir", default="outputs/demo")
    parser.add_argument("--num-samples", type=int, default=2, help="samples per held-out problem (K)")
    parser.add_argument("--max-problems", type=int, default=200, help="held-out problems evaluated")
    parser.add_argument("--max-new-tokens", type=int, default=320)
    parser.add_argument(
        "--backend", choices=("transformers", "vllm"), default="transformers", help="rollouts and evaluation"
    )
    parser.add_argument("train_overrides", nargs="*", help="extra egrsd-train arguments, e.g. --max_steps 10")
    return parser.parse_args(argv)


def evaluate_model(model: str, output_dir: Path, args) -> dict:
    from egrsd.eval import EvalConfig, evaluate
    from egrsd.eval.run import RESULTS_FILE, format_outputs, format_summary

    results_path = output_dir / RESULTS_FILE
    if not results_path.exists():  # the base's evaluation is reused by later demos
        config = EvalConfig(
            model=model,
            benchmarks=["testbed-arithmetic"],
            num_samples=args.num_samples,
            max_problems=args.max_problems,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.max_problems,
            output_dir=str(output_dir),
            backend=args.backend,
            **EVAL_SAMPLING,
        )
        results = evaluate(config)
        print(format_summary(results))
        print(format_outputs(results))
    return json.loads(results_path.read_text())


def step_table(log_history: list[dict]) -> str:
    entries = [entry for entry in log_history if "loss" in entry]
    columns = [(key, header, fmt) for key, header, fmt in STEP_COLUMNS if any(key in e for e in entries)]
    lines = ["| step | " + " | ".join(header for _, header, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for entry in entries:
        cells = [fmt.format(entry[key]) if key in entry else "" for key, _, fmt in columns]
        lines.append(f"| {entry['step']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison(base: dict, trained: dict, method: str) -> str:
    before, after = base["benchmarks"]["testbed-arithmetic"], trained["benchmarks"]["testbed-arithmetic"]
    lines = [
        "| model | accuracy (avg@K) | mean tokens | mean thinking tokens | tokens vs base |",
        "|---|---|---|---|---|",
    ]
    for label, metrics in (("verbose base", before), (f"+ {method}", after)):
        relative = metrics["mean_completion_tokens"] / before["mean_completion_tokens"]
        lines.append(
            f"| {label} | {100 * metrics['accuracy']:.1f}% | {metrics['mean_completion_tokens']:.1f} | "
            f"{metrics['mean_thinking_tokens']:.1f} | {relative:.2f} |"
        )
    return "\n".join(lines)


def credit_pages(run_dir: Path) -> str:
    """Where the training run's credit pages are, and the last step's page."""
    from egrsd.credit_pages.records import available_steps, step_path

    steps = available_steps(run_dir)
    if not steps:
        return f"no credit pages under {run_dir / 'credit'} (num_credit_rollouts 0 or log_completions off)"
    return (
        f"credit pages: steps {steps[0]}-{steps[-1]} under {run_dir / 'credit'} (egrsd-inspect {run_dir} --step N)\n"
        f"credit page of the last step: {step_path(run_dir, steps[-1], '.html')}"
    )


def main(argv=None):
    from egrsd.eval.frontier import write_frontier
    from egrsd.train import main as train_main

    args = parse_args(argv)
    started = time.time()
    output_dir = Path(args.output_dir)
    import yaml

    method = yaml.safe_load(Path(args.recipe).read_text())["credit_method"]
    print(f"[demo] 1/4 evaluating the shipped verbose base on {args.max_problems} held-out problems", flush=True)
    base = evaluate_model(str(shipped_base_path()), output_dir / "eval-base", args)

    print(f"[demo] 2/4 training it with {method} ({args.recipe})", flush=True)
    run_dir = output_dir / method
    for stale in ("credit", "completions"):  # pages of an earlier demo would outlive a shorter run
        shutil.rmtree(run_dir / stale, ignore_errors=True)
    overrides = [*(VLLM_TRAIN_ARGS if args.backend == "vllm" else []), *CREDIT_OVERRIDES, *args.train_overrides]
    train_main(["--config", args.recipe, "--output_dir", str(run_dir), *overrides])
    log_history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]

    print("[demo] 3/4 evaluating the trained model on the same problems", flush=True)
    eval_dir = output_dir / f"eval-{method}"
    for stale in eval_dir.glob("*"):  # a new training run: evaluate it afresh
        stale.unlink()
    trained = evaluate_model(str(run_dir), eval_dir, args)

    print("[demo] 4/4 the frontier plot", flush=True)
    runs = [output_dir / "eval-base" / "results.json", eval_dir / "results.json"]
    frontier = write_frontier(runs, output_dir / "frontier", labels=["base", method])
    print(frontier["table"])
    print(f"\ntable: {frontier['table_path']}\nplot: {frontier['plot_path']}")

    print(f"\nTraining, step by step ({method}):\n{step_table(log_history)}\n")
    print(f"Held-out chain arithmetic, base vs trained:\n{comparison(base, trained, method)}\n")
    print(f"frontier plot: {output_dir / 'frontier' / 'frontier.png'}")
    print(credit_pages(run_dir))
    print(f"demo finished in {time.time() - started:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
