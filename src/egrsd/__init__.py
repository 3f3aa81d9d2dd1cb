"""EGRSD: entropy-guided reinforced self-distillation on TRL."""

__version__ = "0.1.0"
