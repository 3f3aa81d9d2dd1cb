"""The credit page: one logging step's rollouts as a standalone HTML page, each token coloured by its credit.

Views for the gate, the ratio, the teacher entropies and Delta, the numbers on hover. The page's style and script
are the package's `page.css` and `page.js`, inlined so the page fetches nothing.
"""

import html
import json
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from .records import display_order, normalize_record


# (field, view name, data attribute) for every per-token quantity the page can colour by. The attributes are the
# method's one-letter symbols (Ahat, m, g, H, L, Delta): a 16k-token rollout has 16k spans, so every byte counts.
VIEWS = (
    ("ahat", "credit", "a"),
    ("gate", "gate", "g"),
    ("ratio", "ratio", "m"),
    ("entropy", "entropy", "h"),
    ("lookahead_entropy", "lookahead", "l"),
    ("delta", "delta", "d"),
)
# Colour ends (RGB) of the scales; white is the neutral end of every one. Diverging scales use (negative, positive).
POSITIVE_CREDIT = (33, 102, 172)  # blue: the update raises the token's probability
NEGATIVE_CREDIT = (178, 24, 43)  # red: the update lowers it
# Past this intensity the background is dark enough that black text stops being legible.
LIGHT_TEXT_FROM = 0.6

# Colour scale of each view, for the page's script (page.js, which also holds the colour arithmetic of every view but
# the default one, painted here). Credit, ratio and delta diverge around a neutral value and are scaled by the page's
# (or the rollout's) largest magnitude; gate and the entropies are sequential on a fixed range (1 - g; H / H_ref as
# the gate sees it).
VIEW_SCALES = {
    "credit": dict(
        kind="diverging",
        negative=NEGATIVE_CREDIT,
        positive=POSITIVE_CREDIT,
        low="lowered",
        high="raised",
        text="Credit Ahat_t: blue raises the token's probability, red lowers it.",
    ),
    "gate": dict(
        kind="suppression",
        end=(84, 39, 143),
        low="g = 1",
        high="g = 0",
        text="Gate g_t: white keeps the full weight, purple is down-weighted by the teacher's uncertainty.",
    ),
    "ratio": dict(
        kind="diverging",
        log=True,
        negative=(140, 81, 10),
        positive=(1, 102, 94),
        low="m < 1",
        high="m > 1",
        text="Ratio m_t on a log scale around 1: teal amplifies the token's credit, brown damps it.",
    ),
    "entropy": dict(
        kind="sequential",
        end=(217, 72, 1),
        low="H = 0",
        high="H >= H_ref",
        text="Teacher entropy H_t relative to H_ref (h_t = min(1, H_t / H_ref), as the gate sees it).",
    ),
    "lookahead": dict(
        kind="sequential",
        end=(217, 72, 1),
        low="L = 0",
        high="L >= H_ref",
        text="Lookahead entropy L_t (mean teacher entropy of the next tokens) relative to H_ref.",
    ),
    "delta": dict(
        kind="diverging",
        negative=(140, 81, 10),
        positive=(1, 102, 94),
        low="teacher less likely",
        high="teacher more likely",
        text="Delta_t = teacher - student log-prob of the sampled token.",
    ),
}


def _hex(rgb: Sequence[float]) -> str:
    return "#" + "".join(f"{round(channel):02x}" for channel in rgb)


def _blend(end: Sequence[int], amount: float) -> str:
    """White mixed with `end` by `amount` in [0, 1]."""
    amount = min(1.0, max(0.0, amount))
    return _hex([255 + (channel - 255) * amount for channel in end])


def credit_colour(ahat: float, scale: float) -> tuple[str, float]:
    """A token's background: blue when the update raises the token, red when it lowers it; intensity |Ahat|/scale."""
    amount = min(1.0, abs(ahat) / scale) if scale > 0 else 0.0
    return _blend(POSITIVE_CREDIT if ahat >= 0 else NEGATIVE_CREDIT, amount), amount


def _number(value: float | None) -> str:
    return "" if value is None else format(value, ".4g")


def _mean(values: Sequence[float | None] | None) -> float | None:
    present = [value for value in values or () if value is not None]
    return sum(present) / len(present) if present else None


def _token_html(text: str) -> str:
    # An empty marker before the first line break gives a newline token a visible, coloured glyph (CSS ::before)
    # without changing the token's text.
    cut = text.find("\n")
    if cut < 0:
        return html.escape(text)
    return html.escape(text[:cut]) + '<i class="nl"></i>' + html.escape(text[cut:])


def _rollout_html(record: dict[str, Any], page_scale: float) -> str:
    facts = [
        f"reward {_number(record['reward']) or 'n/a'}",
        f"A = {record['advantage']:+.4g}",
        f"{len(record['tokens'])} tokens",
    ]
    for field, label in (
        ("gate", "mean g"),
        ("ratio", "mean m"),
        ("entropy", "mean H"),
        ("lookahead_entropy", "mean L"),
    ):
        if record[field] is not None:
            facts.append(f"{label} {_number(_mean(record[field]))}")
    columns = [(attribute, record[field]) for field, _, attribute in VIEWS if record[field] is not None]
    spans = []
    for index, (token, token_id) in enumerate(zip(record["tokens"], record["token_ids"], strict=True)):
        ahat = record["ahat"][index] or 0.0
        background, amount = credit_colour(ahat, page_scale)
        style = f"background:{background}" + (";color:#fff" if amount > LIGHT_TEXT_FROM else "")
        data = "".join(f' data-{attribute}="{_number(values[index])}"' for attribute, values in columns)
        spans.append(f'<span class="tok" data-id="{token_id}"{data} style="{style}">{_token_html(str(token))}</span>')
    entropy_ref = "" if record["entropy_ref"] is None else f' data-entropy-ref="{_number(record["entropy_ref"])}"'
    pick = html.escape(record["pick"])
    return (
        f'<section class="rollout" data-rollout="{record["rollout"]}"{entropy_ref}>\n'
        f"<h2>rollout {record['rollout']} &middot; group {record['group']} &middot; "
        f'<span class="pick {pick}">{pick}</span></h2>\n'
        f'<div class="facts">{html.escape(" · ".join(facts))}</div>\n'
        f'<details><summary>prompt</summary><pre class="prompt">{html.escape(record["prompt"])}</pre></details>\n'
        f'<div class="completion">{"".join(spans)}</div>\n</section>'
    )


def _package_text(name: str) -> str:
    """A file shipped beside this module (package data): the page's style sheet or script."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _view_specs(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The colour scale of every view some record of the page has, for the page's script."""
    return {
        name: {"attribute": attribute, **VIEW_SCALES[name]}
        for field, name, attribute in VIEWS
        if any(record[field] is not None for record in records)
    }


def render_html(records: Sequence[dict[str, Any]], path: str | os.PathLike) -> str:
    """Write one step's rollouts as a standalone page (inline CSS and script, nothing fetched); returns the path.

    Default view: each token's background is its credit Ahat_t, blue for positive and red for negative, intensity
    |Ahat_t| divided by the largest |Ahat| on the page, so the best and worst rollouts of a group compare honestly
    (a small advantage stays pale); a button rescales each rollout to its own largest |Ahat| to show the shape of the
    credit inside a pale one.
    """
    records = sorted((normalize_record(record) for record in records), key=display_order)
    page_scale = max((abs(value or 0.0) for record in records for value in record["ahat"]), default=0.0)
    steps = sorted({record["step"] for record in records})
    methods = sorted({record["method"] for record in records})
    references = sorted({record["entropy_ref"] for record in records if record["entropy_ref"] is not None})
    specs = _view_specs(records)
    title = f"credit · step {', '.join(map(str, steps)) or '?'} · {', '.join(methods) or 'no rollouts'}"
    summary = [f"step {', '.join(map(str, steps)) or '?'}", f"method {', '.join(methods) or '?'}"]
    summary.append("H_ref " + (", ".join(f"{value:.4g}" for value in references) + " nats" if references else "n/a"))
    summary.append(f"{len(records)} rollouts")
    summary.append(f"largest |Ahat| {page_scale:.4g}")
    view_buttons = "".join(
        f'<button type="button" data-view="{name}"{" class=active" if name == "credit" else ""}>{name}</button>'
        for name in specs
    )
    credit_spec = specs["credit"]
    negative, positive = _hex(NEGATIVE_CREDIT), _hex(POSITIVE_CREDIT)
    # Script text is not HTML-decoded; escaping "<" keeps a "</script>" in the data from closing the element.
    script_config = json.dumps({"views": specs, "lightTextFrom": LIGHT_TEXT_FROM}).replace("<", "\\u003c")
    body = "\n".join(_rollout_html(record, page_scale) for record in records) or "<p>No rollouts in this step.</p>"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
{_package_text("page.css")}</style></head>
<body>
<header class="page">
<h1>{html.escape(title)}</h1>
<div class="note">{html.escape(" · ".join(summary))}</div>
<div class="controls">
<span>colour by: {view_buttons}</span>
<span>scale: <button type="button" data-scale="page" class="active">page</button><button type="button"
 data-scale="rollout">rollout</button></span>
<span class="legend"><span id="legend-low">{html.escape(credit_spec["low"])}</span><span id="legend-bar" class="bar"
 style="background:linear-gradient(to right,{negative},#fff,{positive})"></span><span
 id="legend-high">{html.escape(credit_spec["high"])}</span></span>
</div>
<div class="note" id="legend-text">{html.escape(credit_spec["text"])} Intensity relative to the largest magnitude of
the page.</div>
</header>
<main>
{body}
</main>
<div id="info"></div>
<script type="application/json" id="credit-config">{script_config}</script>
<script>
{_package_text("page.js")}</script>
</body></html>
"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return str(path)
