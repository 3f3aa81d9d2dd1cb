"""See the credit: per-token heatmaps of the advantage, gate, ratio and teacher entropy of logged rollouts.

    egrsd-inspect outputs/run --step 10

With `log_completions: true` the trainer saves, at every logging step, a few rollouts (the best and worst of a group)
with their per-token credit to `<output_dir>/credit/step_XXXXX.jsonl`. This module renders such a step as a
standalone HTML page (each token coloured by its credit, views for gate, ratio and entropy, the numbers on hover) and
a PNG of the per-token curves, beside the JSONL, and sends both to trackio or wandb when the run reports there.
"""

import argparse
import html
import json
import math
import os
import re
import sys
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .cli import ArgumentParser, UserError, one_line, run_cli


CREDIT_DIR = "credit"
STEP_FILE = re.compile(r"^step_(\d+)\.jsonl$")
METHODS = ("grpo", "opsd", "rlsd", "egrsd", "cl_egrsd")
PICKS = ("best", "worst", "other")
# Every record carries these scalars and per-token arrays (the arrays all of one length).
REQUIRED_FIELDS = ("step", "method", "rollout", "group", "pick", "prompt", "completion", "advantage")
REQUIRED_TOKEN_FIELDS = ("tokens", "token_ids", "ahat")
# Per-token arrays that are null (or absent) for methods that lack them: grpo has none, opsd only delta, rlsd no gate
# or entropy. reward and entropy_ref may be null too.
NULLABLE_TOKEN_FIELDS = ("ratio", "gate", "entropy", "delta", "lookahead_entropy")
# The whole schema, in the order written.
RECORD_FIELDS = (
    "step", "method", "rollout", "group", "pick", "prompt", "completion", "reward", "advantage", "entropy_ref",
    "tokens", "token_ids", "ahat", "ratio", "gate", "entropy", "delta", "lookahead_entropy",
)  # fmt: skip
ENABLE_HINT = (
    "the trainer saves per-token credit at each logging step only when completions are logged: set "
    "`log_completions: true` in the recipe (with `logging_steps` and `num_credit_rollouts` > 0)"
)

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

# Colour scale of each view, for the page's script (which also holds the colour arithmetic of every view but the
# default one, painted here).
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


class NoCreditRecordsError(FileNotFoundError):
    """The run directory has no saved credit records (or not the step asked for)."""


# ---------------------------------------------------------------------------------------------------- records


def _plain_scalar(value: Any) -> Any:
    if isinstance(value, float):
        # A float32 printed as a double takes some 19 characters; 6 digits halve the file and lose nothing visible.
        return float(format(value, ".6g")) if math.isfinite(value) else None
    return value


def _plain(value: Any) -> Any:
    """Tensors and arrays to flat lists, non-finite floats to None (strict JSON any tool reads), floats to 6 digits."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain_scalar(item) for item in value]
    return _plain_scalar(value)


def normalize_record(record: dict[str, Any]) -> dict[str, Any]:
    """The record with every field of the schema, in schema order, absent nullable ones as None; raises if invalid."""
    unknown = sorted(set(record) - set(RECORD_FIELDS))
    missing = [name for name in REQUIRED_FIELDS + REQUIRED_TOKEN_FIELDS if record.get(name) is None]
    if unknown or missing:
        raise ValueError(f"credit record: unknown fields {unknown}, missing fields {missing}")
    normalized = {name: _plain(record.get(name)) for name in RECORD_FIELDS}
    if normalized["method"] not in METHODS:
        raise ValueError(f"credit record: method must be one of {METHODS}, got {normalized['method']!r}")
    if normalized["pick"] not in PICKS:
        raise ValueError(f"credit record: pick must be one of {PICKS}, got {normalized['pick']!r}")
    length = len(normalized["tokens"])
    lengths = {
        name: len(normalized[name])
        for name in REQUIRED_TOKEN_FIELDS + NULLABLE_TOKEN_FIELDS
        if normalized[name] is not None
    }
    if any(size != length for size in lengths.values()):
        raise ValueError(
            f"credit record (rollout {normalized['rollout']}): per-token arrays differ in length {lengths}"
        )
    return normalized


def credit_dir(output_dir: str | os.PathLike) -> Path:
    """Where a run keeps its credit records; the credit folder itself is accepted too."""
    output_dir = Path(output_dir)
    if not (output_dir / CREDIT_DIR).is_dir() and _step_files(output_dir):
        return output_dir
    return output_dir / CREDIT_DIR


def step_path(output_dir: str | os.PathLike, step: int, suffix: str = ".jsonl") -> Path:
    return credit_dir(output_dir) / f"step_{step:05d}{suffix}"


def _step_files(directory: Path) -> dict[int, Path]:
    if not directory.is_dir():
        return {}
    found = {}
    for path in directory.iterdir():
        match = STEP_FILE.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return found


def available_steps(output_dir: str | os.PathLike) -> list[int]:
    """The logging steps with saved credit records, ascending."""
    return sorted(_step_files(credit_dir(output_dir)))


def write_step_records(output_dir: str | os.PathLike, step: int, records: Iterable[dict[str, Any]]) -> str:
    """Save one step's credit records, one a line, to `<output_dir>/credit/step_XXXXX.jsonl`; returns the path."""
    lines = []
    for record in records:
        normalized = normalize_record(record)
        if normalized["step"] != step:
            raise ValueError(f"credit record of step {normalized['step']} written as step {step}")
        lines.append(json.dumps(normalized, ensure_ascii=False, allow_nan=False))
    path = Path(output_dir) / CREDIT_DIR / f"step_{step:05d}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside then renamed, so a page rendered while training runs never reads half a file.
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(partial, path)
    return str(path)


def load_step_records(output_dir: str | os.PathLike, step: int | None = None) -> tuple[int, list[dict[str, Any]]]:
    """One step's records (default: the latest step saved) as (step, records)."""
    directory = credit_dir(output_dir)
    files = _step_files(directory)
    if not files:
        raise NoCreditRecordsError(f"no credit records in {directory} — {ENABLE_HINT}")
    if step is None:
        step = max(files)
    elif step not in files:
        raise NoCreditRecordsError(
            f"no credit records for step {step} in {directory} — pass one of the saved steps: {sorted(files)}"
        )
    records = []
    for number, line in enumerate(files[step].read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                records.append(normalize_record(json.loads(line)))
            except ValueError as error:  # JSONDecodeError is a ValueError too
                raise UserError(
                    f"not a credit record ({one_line(error)})",
                    "these files are written by the trainer; re-run the step or delete the file",
                    path=str(files[step]),
                    line=number,
                ) from None
    return step, records


def _pick_order(record: dict[str, Any]) -> tuple[int, int, int]:
    # Best and worst of a group side by side, groups in order.
    return record["group"], PICKS.index(record["pick"]), record["rollout"]


# ---------------------------------------------------------------------------------------------------- HTML


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


PAGE_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}
header.page{position:sticky;top:0;z-index:2;background:#fff;border-bottom:1px solid #ddd;padding:10px 18px}
header.page h1{font-size:18px;margin:0 0 4px}
.controls{display:flex;flex-wrap:wrap;gap:14px;align-items:center;margin:6px 0}
.controls button{font:inherit;padding:3px 10px;border:1px solid #999;border-radius:4px;background:#fff;cursor:pointer}
.controls button.active{background:#1b1b1b;color:#fff;border-color:#1b1b1b}
.controls button:disabled{opacity:.35;cursor:default}
.legend{display:flex;align-items:center;gap:8px;font-size:12px}
.legend .bar{width:220px;height:12px;border:1px solid #bbb;border-radius:2px}
.note{font-size:12px;color:#555;max-width:1100px}
main{padding:6px 18px 60px}
section.rollout{background:#fff;border:1px solid #ddd;border-radius:6px;margin:14px 0;padding:10px 14px}
section.rollout h2{font-size:15px;margin:0}
.facts{font-size:12px;color:#444;margin:2px 0 4px}
.pick{padding:0 6px;border-radius:3px;color:#fff}
.pick.best{background:#2166ac}.pick.worst{background:#b2182b}.pick.other{background:#777}
pre.prompt{white-space:pre-wrap;font-size:12px;background:#f3f3f3;padding:6px;max-height:240px;overflow:auto}
.completion{font:13px/1.7 ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;white-space:pre-wrap;
  word-break:break-word;margin-top:6px}
.tok{border-radius:2px}
.tok:hover{outline:1px solid #000}
.tok:empty::before{content:"\\2205";color:#999}
.nl::before{content:"\\21b5";opacity:.45}
#info{position:fixed;right:12px;bottom:12px;z-index:3;background:#1b1b1b;color:#fff;font:12px/1.5 ui-monospace,
  monospace;padding:8px 10px;border-radius:6px;white-space:pre;display:none;max-width:60vw;overflow:hidden}
"""

# Views: credit, ratio and delta diverge around a neutral value and are scaled by the page's (or the rollout's)
# largest magnitude; gate and the entropies are sequential on a fixed range (1 - g; H / H_ref as the gate sees it).
PAGE_SCRIPT = """
(function(){
const config = JSON.parse(document.getElementById('credit-config').textContent);
const views = config.views;
const sections = Array.from(document.querySelectorAll('section.rollout'));
const tokens = sections.map(s => Array.from(s.querySelectorAll('.tok')));
tokens.forEach(list => list.forEach((el, i) => { el._pos = i; }));
const original = tokens.map(list => list.map(el => el.getAttribute('style')));
let view = 'credit', scaleMode = 'page';
// A link can open another view: page.html#view=gate&scale=rollout
const linked = new URLSearchParams(location.hash.slice(1));
if (views[linked.get('view')]) view = linked.get('view');
if (['page', 'rollout'].includes(linked.get('scale'))) scaleMode = linked.get('scale');
function blend(end, t){
  t = Math.max(0, Math.min(1, t));
  const c = end.map(x => Math.round(255 + (x - 255) * t));
  return ['rgb(' + c.join(',') + ')', t];
}
function value(el, attribute){
  const raw = el.dataset[attribute];
  return raw === undefined || raw === '' ? null : parseFloat(raw);
}
function magnitude(el, spec){
  const v = value(el, spec.attribute);
  if (v === null) return null;
  return spec.log ? Math.abs(Math.log(Math.max(v, 1e-12))) : Math.abs(v);
}
function maxMagnitude(list, spec){
  let m = 0;
  list.forEach(el => { const x = magnitude(el, spec); if (x !== null && x > m) m = x; });
  return m;
}
function paint(){
  const spec = views[view];
  if (view === 'credit' && scaleMode === 'page'){
    tokens.forEach((list, s) => list.forEach((el, i) => el.setAttribute('style', original[s][i])));
  } else {
    const pageMax = Math.max(0, ...tokens.map(list => maxMagnitude(list, spec)));
    tokens.forEach((list, s) => {
      const scale = scaleMode === 'rollout' ? maxMagnitude(list, spec) : pageMax;
      const refAttr = sections[s].dataset.entropyRef;
      const ref = refAttr ? parseFloat(refAttr) : pageMax;
      list.forEach(el => {
        const v = value(el, spec.attribute);
        let colour = ['transparent', 0];
        if (v !== null){
          if (spec.kind === 'diverging'){
            const x = spec.log ? Math.log(Math.max(v, 1e-12)) : v;
            colour = blend(x >= 0 ? spec.positive : spec.negative, scale > 0 ? Math.abs(x) / scale : 0);
          } else if (spec.kind === 'suppression'){
            colour = blend(spec.end, 1 - v);
          } else {
            colour = blend(spec.end, ref > 0 ? v / ref : 0);
          }
        }
        el.style.background = colour[0];
        el.style.color = colour[1] > config.lightTextFrom ? '#fff' : '';
      });
    });
  }
  const bar = document.getElementById('legend-bar');
  const end = spec.kind === 'diverging' ? spec.positive : spec.end;
  const start = spec.kind === 'diverging' ? 'rgb(' + spec.negative.join(',') + '),#fff,' : '#fff,';
  bar.style.background = 'linear-gradient(to right,' + start + 'rgb(' + end.join(',') + '))';
  document.getElementById('legend-low').textContent = spec.low;
  document.getElementById('legend-high').textContent = spec.high;
  document.getElementById('legend-text').textContent = spec.text + (spec.kind === 'diverging'
    ? ' Intensity relative to the largest magnitude of the ' + scaleMode + '.' : '');
  document.querySelectorAll('[data-view]').forEach(b => b.classList.toggle('active', b.dataset.view === view));
  document.querySelectorAll('[data-scale]').forEach(b => {
    b.classList.toggle('active', b.dataset.scale === scaleMode);
    b.disabled = spec.kind !== 'diverging';  // gate and entropies use a fixed range
  });
}
document.querySelectorAll('[data-view]').forEach(b => b.addEventListener('click', () => {
  view = b.dataset.view; paint(); }));
document.querySelectorAll('[data-scale]').forEach(b => b.addEventListener('click', () => {
  scaleMode = b.dataset.scale; paint(); }));
const info = document.getElementById('info');
const labels = [['a', 'Ahat'], ['m', 'm'], ['g', 'g'], ['h', 'H'], ['d', 'Delta'], ['l', 'L']];
document.addEventListener('mouseover', event => {
  const el = event.target.closest ? event.target.closest('.tok') : null;
  if (!el) return;
  const lines = [JSON.stringify(el.textContent) + '  #' + el._pos + '  id ' + el.dataset.id];
  labels.forEach(([attribute, label]) => {
    if (el.dataset[attribute] !== undefined) lines.push(label.padEnd(6) + el.dataset[attribute]);
  });
  el.title = lines.join('\\n');
  info.textContent = lines.join('\\n');
  info.style.display = 'block';
});
paint();
})();
"""


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
    records = sorted((normalize_record(record) for record in records), key=_pick_order)
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
<style>{PAGE_STYLE}</style></head>
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
<script>{PAGE_SCRIPT}</script>
</body></html>
"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------------------------------------------- PNG


def render_png(records: Sequence[dict[str, Any]], path: str | os.PathLike) -> str:
    """Per rollout: the token-weight curves (|Ahat|/|A|, gate, ratio) and the teacher entropy over positions."""
    # The object API (no pyplot) leaves the training process's global matplotlib state alone.
    from matplotlib.figure import Figure

    records = sorted((normalize_record(record) for record in records), key=_pick_order)
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


# ---------------------------------------------------------------------------------------------------- steps


def render_step(output_dir: str | os.PathLike, step: int | None = None) -> tuple[str, str]:
    """Render a saved step (default: latest) to `step_XXXXX.html` and `.png` beside its JSONL; returns both paths."""
    step, records = load_step_records(output_dir, step)
    html_path = render_html(records, step_path(output_dir, step, ".html"))
    png_path = render_png(records, step_path(output_dir, step, ".png"))
    return html_path, png_path


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


# ---------------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="egrsd-inspect", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a training output_dir (or its credit/ folder)")
    parser.add_argument("--step", type=int, default=None, help="the logging step to render (default: latest saved)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)


def _main(argv: Sequence[str] | None) -> None:
    args = build_parser().parse_args(argv)
    if not Path(args.run_dir).is_dir():
        raise UserError(f"no such folder {args.run_dir}", "pass a training output_dir (or its credit/ folder)")
    try:
        html_path, png_path = render_step(args.run_dir, args.step)
    except NoCreditRecordsError as error:
        what, _, fix = str(error).partition(" — ")
        raise UserError(what, fix or None) from None
    print(f"html: {html_path}\npng: {png_path}")


if __name__ == "__main__":
    sys.exit(main())
