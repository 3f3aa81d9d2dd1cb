"""The credit curves: per rollout, the token weights (|Ahat|/|A|, gate, ratio) and the teacher entropy as a PNG."""

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .records import display_order, normalize_record


def render_png(records: Sequence[dict[str, Any]], path: str | os.PathLike) -> str:
    """Per rollout: the token-weight curves (|Ahat|/|A|, gate, ratio) and the teacher entropy over positions."""
    # The object API (no pyplot) leaves the training process's global matplotlib state alone.
    from matplotlib.figure import Figure

    records = sorted((normalize_record(record) for record in records), key=display_order)
    with_entropy = any(record["entropy"] is not None for record in records)
    rows_per_rollout = 2 if with_entropy else 1
    panels = max(1, len(records))
    height = 0.5 + (3.9 if with_entropy else 2.4) * panels
    figure = Figure(figsize=(12, height))
    # Fixed margins in inches: a layout engine would draw the figure twice, the slow part of a training log step.
    outer = figure.add_gridspec(
        panels, 1, left=0.06, right=0.99, top=1 - 0.3 / height, bottom=0.45 / height, hspace=0.3
    )
    if not records:
        empty = figure.add_subplot(outer[0])
        empty.text(0.5, 0.5, "no rollouts in this step", ha="center", va="center")
        empty.set_axis_off()
    for index, record in enumerate(records):
        # Weights above entropy, sharing the position axis; the rollouts spaced apart.
        pair = outer[index].subgridspec(rows_per_rollout, 1, hspace=0.08)
        weight_axis = figure.add_subplot(pair[0])
        positions = range(len(record["tokens"]))
        advantage = record["advantage"]
        ahat = [value or 0.0 for value in record["ahat"]]
        # opsd has no reward direction, and A = 0 gives no scale: plot Ahat itself there.
        if record["method"] != "opsd" and advantage:
            weight_axis.plot(positions, [abs(value / advantage) for value in ahat], label="|Ahat|/|A|", color="k")
        else:
            weight_axis.plot(positions, ahat, label="Ahat", color="k")
        if record["gate"] is not None:
            weight_axis.plot(positions, record["gate"], label="gate g", color="#54278f")
        if record["ratio"] is not None:
            weight_axis.plot(positions, record["ratio"], label="ratio m", color="#01665e")
        if record["delta"] is not None and record["ratio"] is None:
            weight_axis.plot(positions, record["delta"], label="Delta", color="#8c510a", alpha=0.7)
        reward = "n/a" if record["reward"] is None else f"{record['reward']:.3g}"
        weight_axis.set_title(
            f"step {record['step']} · {record['method']} · rollout {record['rollout']} · group {record['group']} · "
            f"{record['pick']} · reward {reward} · A = {advantage:+.3g}",
            fontsize=9,
            loc="left",
        )
        weight_axis.set_ylabel("token weight", fontsize=8)
        if record["method"] != "opsd":
            # Every weight is >= 0: from zero, the floor and the dips read at their true size.
            weight_axis.set_ylim(bottom=0)
        weight_axis.legend(fontsize=7, loc="upper right", ncol=4)
        weight_axis.grid(alpha=0.3)
        if with_entropy:
            entropy_axis = figure.add_subplot(pair[1], sharex=weight_axis)
            weight_axis.tick_params(labelbottom=False)
            if record["entropy"] is not None:
                entropy_axis.plot(positions, record["entropy"], label="teacher entropy H", color="#d94801")
            if record["lookahead_entropy"] is not None:
                entropy_axis.plot(
                    positions, record["lookahead_entropy"], label="lookahead L", color="#7f2704", linestyle="--"
                )
            if record["entropy_ref"] is not None:
                entropy_axis.axhline(record["entropy_ref"], color="grey", linewidth=0.8, linestyle=":", label="H_ref")
            entropy_axis.set_ylabel("nats", fontsize=8)
            entropy_axis.set_xlabel("completion token position", fontsize=8)
            entropy_axis.grid(alpha=0.3)
            if entropy_axis.lines:
                entropy_axis.legend(fontsize=7, loc="upper right", ncol=3)
        else:
            weight_axis.set_xlabel("completion token position", fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return str(path)
