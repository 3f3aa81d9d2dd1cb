"""See the credit: per-token heatmaps of the advantage, gate, ratio and teacher entropy of logged rollouts.

    egrsd-inspect outputs/run --step 10

With `log_completions: true` the trainer saves, at every logging step, a few rollouts (the best and worst of a group)
with their per-token credit to `<output_dir>/credit/step_XXXXX.jsonl`. This package renders such a step as a
standalone HTML page (each token coloured by its credit, views for gate, ratio and entropy, the numbers on hover) and
a PNG of the per-token curves, beside the JSONL, and sends both to trackio or wandb when the run reports there.
"""
