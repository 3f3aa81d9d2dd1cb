"""Reward functions for math reasoning, selectable by name from a recipe (filled in by the rewards issue)."""
