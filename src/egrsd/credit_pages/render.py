"""A saved step rendered beside its records: the page (HTML) and the curves (PNG)."""

import os

from .page import render_html
from .plot import render_png
from .records import load_step_records, step_path


def render_step(output_dir: str | os.PathLike, step: int | None = None) -> tuple[str, str]:
    """Render a saved step (default: latest) to `step_XXXXX.html` and `.png` beside its JSONL; returns both paths."""
    step, records = load_step_records(output_dir, step)
    html_path = render_html(records, step_path(output_dir, step, ".html"))
    png_path = render_png(records, step_path(output_dir, step, ".png"))
    return html_path, png_path
