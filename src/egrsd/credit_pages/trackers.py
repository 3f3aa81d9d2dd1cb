"""A saved step rendered and sent to the run's trackers (trackio, wandb) beside the scalar metrics."""

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from .render import render_step


def report_step(output_dir: str | os.PathLike, step: int, report_to: Sequence[str] | str | None) -> None:
    """Render the step and, for "trackio" and "wandb" in `report_to`, log the page and the curves to the active run.

    Both go under "credit/page" (HTML) and "credit/curves" (image) together with "train/global_step", the way the
    transformers callbacks tie every entry to the global step (wandb plots against it; trackio stores it).
    """
    html_path, png_path = render_step(output_dir, step)
    backends = {report_to} if isinstance(report_to, str) else set(report_to or ())
    if "wandb" in backends:
        _log_to_wandb(step, html_path, png_path)
    if "trackio" in backends:
        _log_to_trackio(step, html_path, png_path)


def _log_to_wandb(step: int, html_path: str, png_path: str) -> None:
    try:
        import wandb
    except ImportError:
        warnings.warn(
            f"report_to has wandb but it is not installed; the credit page stays at {html_path}", stacklevel=3
        )
        return
    if wandb.run is None:
        warnings.warn(f"no active wandb run; the credit page stays at {html_path}", stacklevel=3)
        return
    page = Path(html_path).read_text(encoding="utf-8")
    # inject=False: the page is a whole document with its own style.
    wandb.log(
        {
            "credit/page": wandb.Html(page, inject=False),
            "credit/curves": wandb.Image(png_path),
            "train/global_step": step,
        }
    )


def _log_to_trackio(step: int, html_path: str, png_path: str) -> None:
    try:
        import trackio
    except ImportError:
        warnings.warn(
            f"report_to has trackio but it is not installed; the credit page stays at {html_path}", stacklevel=3
        )
        return
    entry = {"credit/curves": trackio.Image(png_path), "train/global_step": step}
    if hasattr(trackio, "Html"):
        entry["credit/page"] = trackio.Html(Path(html_path))
    else:
        warnings.warn(
            f"this trackio has no Html media: only the curves are logged; the credit page stays at {html_path}",
            stacklevel=3,
        )
    try:
        trackio.log(entry)
    except RuntimeError as error:  # no trackio.init() in this process
        warnings.warn(f"credit not sent to trackio ({error}); the credit page stays at {html_path}", stacklevel=3)
