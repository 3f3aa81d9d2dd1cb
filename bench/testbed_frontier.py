"""The testbed's accuracy-length frontier: the five methods, several seeds, equal budgets, one table and one plot.

Every run trains the shipped verbose base with `recipes/tiny/<method>/config.yaml` (identical except the method keys)
through `egrsd-train`, then `egrsd-eval` samples the 200 held-out problems. Also reported, per method, the symptom
of privileged-information leakage: the share of correct answers whose thinking holds no valid derivation (the
problem's step lines, in order).

    python bench/testbed_frontier.py --seeds 0 1 2 --output-dir outputs/testbed-frontier
"""

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
METHODS = ("grpo", "opsd", "rlsd", "egrsd", "cl_egrsd")
COLOURS = dict(zip(METHODS, ("tab:gray", "tab:orange", "tab:green", "tab:blue", "tab:purple")))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output-dir", default="outputs/testbed-frontier")
    parser.add_argument("--num-samples", type=int, default=2, help="samples per held-out problem (K)")
    parser.add_argument("--max-new-tokens", type=int, default=320)
    parser.add_argument("--max-problems", type=int, default=None)
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time (one torch thread each)")
    parser.add_argument("--train-args", nargs=argparse.REMAINDER, default=[], help="extra egrsd-train overrides")
    return parser.parse_args(argv)


def run(command: list[str], log_path: Path, threads: int) -> None:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    with open(log_path, "w") as log:
        result = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed (exit {result.returncode}); see {log_path}")


def _evaluate_logged(config, log_path: str, threads: int) -> None:
    """In a fresh process: `threads` torch threads, everything it prints to `log_path`, then egrsd's evaluate."""
    os.environ.update(OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")
    with open(log_path, "w") as log:
        os.dup2(log.fileno(), sys.stdout.fileno())
        os.dup2(log.fileno(), sys.stderr.fileno())
    from egrsd.eval import evaluate

    evaluate(config)


def evaluate(model: str, output_dir: Path, args, threads: int) -> dict:
    from egrsd.eval import EvalConfig

    if not (output_dir / "results.json").exists():
        output_dir.mkdir(parents=True, exist_ok=True)
        config = EvalConfig(
            model=model,
            benchmarks=["testbed-arithmetic"],
            backend="transformers",
            num_samples=args.num_samples,
            max_new_tokens=args.max_new_tokens,
            temperature=1.0,
            top_p=1.0,
            top_k=0,
            batch_size=200,
            seed=0,
            output_dir=str(output_dir),
            max_problems=args.max_problems or None,
        )
        # A spawned process, as each training run is one: parallel runs do not share torch's threads.
        log_path = output_dir.parent / f"{output_dir.name}-eval.log"
        process = multiprocessing.get_context("spawn").Process(
            target=_evaluate_logged, args=(config, str(log_path), threads)
        )
        process.start()
        process.join()
        if process.exitcode != 0:
            raise RuntimeError(f"evaluating {model} failed (exit {process.exitcode}); see {log_path}")
    results = json.loads((output_dir / "results.json").read_text())
    results["samples_path"] = str(output_dir / Path(results["samples_file"]).name)
    return results


def leakage(samples_path: Path) -> float | None:
    """Share of correct answers whose thinking does not derive them."""
    from egrsd.data import load_math_dataset
    from egrsd.testbed.arithmetic import has_valid_derivation, parse_problem

    questions = load_math_dataset("testbed-arithmetic", split="test")["problem"]
    correct = underived = 0
    for line in samples_path.read_text().splitlines():
        sample = json.loads(line)
        if sample["correct"]:
            correct += 1
            problem = parse_problem(questions[int(sample["prompt_id"])])
            underived += not has_valid_derivation(problem, sample["completion"])
    return underived / correct if correct else None


def train_and_evaluate(method: str, seed: int, args, output_dir: Path) -> dict:
    run_dir = output_dir / f"{method}-seed{seed}"
    if not (run_dir / "model.safetensors").exists():
        command = [sys.executable, "-m", "egrsd.train", "--config", f"recipes/tiny/{method}/config.yaml"]
        command += ["--output_dir", str(run_dir), "--seed", str(seed), "--disable_tqdm", "true", *args.train_args]
        started = time.time()
        run(command, output_dir / f"{method}-seed{seed}-train.log", threads=1)
        print(
            f"[{time.strftime('%H:%M:%S')}] trained {method} seed {seed} in {time.time() - started:.0f} s", flush=True
        )
    results = evaluate(str(run_dir), output_dir / f"eval-{method}-seed{seed}", args, threads=1)
    metrics = results["benchmarks"]["testbed-arithmetic"]
    return {
        "method": method,
        "seed": seed,
        "accuracy": metrics["accuracy"],
        "mean_tokens": metrics["mean_completion_tokens"],
        "leakage": leakage(Path(results["samples_path"])),
        "results": str(output_dir / f"eval-{method}-seed{seed}" / "results.json"),
    }


def summarize(base: dict, runs: list[dict], methods) -> tuple[str, dict]:
    base_metrics = base["benchmarks"]["testbed-arithmetic"]
    rows = [
        "| method | accuracy (mean ± sd over seeds) | mean tokens | tokens vs base | correct without a derivation |",
        "|---|---|---|---|---|",
        f"| base | {100 * base_metrics['accuracy']:.1f} | {base_metrics['mean_completion_tokens']:.0f} | 1.00 | "
        f"{100 * (base['leakage'] or 0):.1f}% |",
    ]
    table = {"base": {"accuracy": base_metrics["accuracy"], "mean_tokens": base_metrics["mean_completion_tokens"]}}
    for method in methods:
        mine = [r for r in runs if r["method"] == method]
        accuracies = [r["accuracy"] for r in mine]
        tokens = [r["mean_tokens"] for r in mine]
        leaks = [r["leakage"] for r in mine if r["leakage"] is not None]
        spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        table[method] = {
            "accuracy_mean": statistics.mean(accuracies),
            "accuracy_sd": spread,
            "mean_tokens": statistics.mean(tokens),
            "relative_tokens": statistics.mean(tokens) / base_metrics["mean_completion_tokens"],
            "leakage": statistics.mean(leaks) if leaks else None,
            "seeds": [r["seed"] for r in mine],
        }
        rows.append(
            f"| {method} | {100 * statistics.mean(accuracies):.1f} ± {100 * spread:.1f} | "
            f"{statistics.mean(tokens):.0f} | {table[method]['relative_tokens']:.2f} | "
            f"{100 * statistics.mean(leaks):.1f}% |"
        )
    return "\n".join(rows), table


def plot(table: dict, runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 4.5))
    axis.scatter([table["base"]["mean_tokens"]], [100 * table["base"]["accuracy"]], marker="s", color="black")
    axis.annotate("base", (table["base"]["mean_tokens"], 100 * table["base"]["accuracy"]), xytext=(5, 5),
                  textcoords="offset points")  # fmt: skip
    for method, entry in table.items():
        if method == "base":
            continue
        seeds = [r for r in runs if r["method"] == method]
        axis.scatter([r["mean_tokens"] for r in seeds], [100 * r["accuracy"] for r in seeds], color=COLOURS[method],
                     alpha=0.35, s=18)  # fmt: skip
        axis.errorbar(entry["mean_tokens"], 100 * entry["accuracy_mean"], yerr=100 * entry["accuracy_sd"], fmt="o",
                      color=COLOURS[method], label=method, capsize=3)  # fmt: skip
    axis.set_xlabel("mean completion tokens (held-out)")
    axis.set_ylabel("accuracy, avg@K (%)")
    axis.set_title("Testbed frontier: up and to the left is better")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv=None):
    args = parse_args(argv)
    output_dir = Path(args.output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    from egrsd.testbed.base import shipped_base_path

    base = evaluate(str(shipped_base_path()), output_dir / "eval-base", args, threads=args.parallel)
    base["leakage"] = leakage(Path(base["samples_path"]))
    jobs = [(method, seed) for seed in args.seeds for method in args.methods]
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        runs = list(pool.map(lambda job: train_and_evaluate(*job, args, output_dir), jobs))
    markdown, table = summarize(base, runs, args.methods)
    plot(table, runs, output_dir / "frontier.png")
    summary = {"table": table, "runs": runs, "settings": vars(args) | {"command": " ".join(sys.argv)}}
    (output_dir / "frontier.json").write_text(json.dumps(summary, indent=2))
    (output_dir / "frontier.md").write_text(markdown + "\n")
    print(markdown)
    print(f"table: {output_dir / 'frontier.md'}\nplot: {output_dir / 'frontier.png'}")


if __name__ == "__main__":
    main()
