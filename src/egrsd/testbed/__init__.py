"""The embedded default: a tiny Qwen3-architecture model and a synthetic reasoning task that run on a CPU."""

# `model_name_or_path` values that name the embedded default instead of a Hub id or a folder.
TESTBED_MODELS = ("testbed:random", "testbed:base")
