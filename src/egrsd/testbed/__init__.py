"""The embedded default: a tiny Qwen3-architecture model and a synthetic reasoning task that run on a CPU."""
