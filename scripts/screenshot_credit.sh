#!/usr/bin/env bash
# Look at the credit page the way a person would: build a sample step, render it with egrsd-inspect, screenshot it in
# headless Chromium and check the pixels, so a page that parses but shows nothing (or no colour) fails loudly.
#
#   scripts/screenshot_credit.sh [OUT_DIR] [--update-docs] [--run=RUN_DIR [--step=N]]
#
# --run=RUN_DIR screenshots a real run's saved page instead (the latest step, or --step=N), e.g. the demo's:
#   scripts/screenshot_credit.sh /tmp/shot --run=outputs/demo/cl_egrsd --step=5 --update-docs
# The pixel floors below were set on the sample; a real step can miss them honestly (e.g. groups that all scored
# alike have A = 0, hence pale credit): pick another step.
# The sample is one cl_egrsd logging step of the arithmetic testbed, tokenized per character: two prompt groups, the
# best and worst rollout of each. Log-probs and entropies are hand-made (a verification span where the teacher stays
# uncertain, forks that resolve at once, a wrong digit the teacher rejects); Ahat, m, g and L come from
# egrsd.credit.compute_credit, so the page shows what the trainer would compute. Checks:
#   1. credit view: at least 4000 saturated blue pixels (raised tokens) and 4000 saturated red ones (lowered tokens);
#   2. gate view (page.html#view=gate, repainted by the page's script): at least 2000 purple pixels (down-weighted
#      tokens), and under half the credit view's blue (the toggle really repainted the tokens).
# --update-docs copies the credit screenshot to docs/credit_page.png (palette PNG, kept small), shown in
# docs/credit-pages.md.
# Needs Debian's chromium (apt-get install -y chromium). Not part of `make test`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
OUT=""
UPDATE_DOCS=0
RUN_DIR=""
STEP=""
for arg in "$@"; do
  case "$arg" in
    --update-docs) UPDATE_DOCS=1 ;;
    --run=*) RUN_DIR="${arg#--run=}" ;;
    --step=*) STEP="${arg#--step=}" ;;
    *) OUT="$arg" ;;
  esac
done
OUT="${OUT:-$(mktemp -d)}"
RUN="${RUN_DIR:-$OUT/run}"
mkdir -p "$OUT" "$RUN"
RUN="$(cd "$RUN" && pwd)"  # chromium needs an absolute file:// URL
command -v chromium >/dev/null || { echo "chromium not found: apt-get install -y chromium" >&2; exit 1; }

if [ -z "$RUN_DIR" ]; then  # the hand-made sample step
"$PY" - "$RUN" <<'PYTHON'
import sys

import torch

from egrsd.credit import CreditConfig, compute_credit
from egrsd.credit_pages.records import write_step_records


run_dir = sys.argv[1]
prompt = "<|im_start|>user\nCompute 37 + 48 - 15. Put the final answer in \\boxed{}.<|im_end|>\n<|im_start|>assistant\n"
# (group, pick, reward, completion, spans): each span is (substring, entropy, delta) overriding the defaults on the
# first occurrence after the previous span; everything else is confident (H ~ 0.2) with a small Delta.
rollouts = [
    (0, "best", 1.0, "<think>\n37+48=85\nLet me verify: 37+48=85. Correct.\n85-15=70\n</think>\n\n\\boxed{70}",
     [("85", 1.8, 0.4), ("Let me verify: 37+48=85. Correct.", 2.6, -0.6), ("70", 0.4, 0.5), ("\\boxed{70}", 0.1, 0.3)]),
    (0, "worst", 0.0, "<think>\n37+48=75\n75-15=60\nHmm, maybe 37+48=85? Not sure.\n</think>\n\n\\boxed{60}",
     [("7", 0.3, -2.5), ("75-15=60", 0.5, -0.9), ("Hmm, maybe 37+48=85? Not sure.", 2.4, 0.2), ("60", 0.2, -1.6)]),
    (1, "best", 1.0, "<think>\n12*7=84\n84/4=21\n</think>\n\n\\boxed{21}",
     [("84", 1.5, 0.3), ("21", 0.3, 0.6)]),
    (1, "worst", 0.0, "<think>\n12*7=74\nWait, 12*7 is 84 or 74?\n74/4=18.5\n</think>\n\n\\boxed{18.5}",
     [("74", 0.4, -2.2), ("Wait, 12*7 is 84 or 74?", 2.2, 0.1), ("18.5", 0.6, -1.4)]),
]
prompts = {0: prompt, 1: prompt.replace("37 + 48 - 15", "12 * 7 / 4")}
generator = torch.Generator().manual_seed(0)
length = max(len(completion) for _, _, _, completion, _ in rollouts)
entropy = torch.zeros(len(rollouts), length)
delta = torch.zeros(len(rollouts), length)
mask = torch.zeros(len(rollouts), length)
for row, (_, _, _, completion, spans) in enumerate(rollouts):
    size = len(completion)
    mask[row, :size] = 1
    entropy[row, :size] = 0.15 + 0.1 * torch.rand(size, generator=generator)
    delta[row, :size] = 0.1 * torch.randn(size, generator=generator)
    cursor = 0
    for text, span_entropy, span_delta in spans:
        start = completion.index(text, cursor)
        stop = start + len(text)
        entropy[row, start:stop] = span_entropy * (0.8 + 0.4 * torch.rand(stop - start, generator=generator))
        delta[row, start:stop] = span_delta + 0.1 * torch.randn(stop - start, generator=generator)
        # A fork resolved at once: one spike, then the teacher is sure again.
        if len(text) <= 2:
            entropy[row, start + 1 : stop] = 0.2
        cursor = stop
rewards = torch.tensor([r[2] for r in rollouts])
advantages = torch.empty_like(rewards)
for group in {r[0] for r in rollouts}:
    members = [i for i, r in enumerate(rollouts) if r[0] == group]
    group_rewards = rewards[members]
    advantages[members] = (group_rewards - group_rewards.mean()) / (group_rewards.std() + 1e-4)
student = -0.5 * torch.ones(len(rollouts), length) * mask
credit = compute_credit("cl_egrsd", advantages, student, student + delta, entropy, mask, CreditConfig())


def row_values(tensor, row, size):
    return [round(float(value), 5) for value in tensor[row, :size]]


records = []
for row, (group, pick, reward, completion, _) in enumerate(rollouts):
    size = len(completion)
    records.append(
        {
            "step": 10, "method": "cl_egrsd", "rollout": row, "group": group, "pick": pick,
            "prompt": prompts[group], "completion": completion, "reward": reward,
            "advantage": float(advantages[row]), "entropy_ref": credit.entropy_ref,
            "tokens": list(completion), "token_ids": [ord(char) for char in completion],
            "ahat": row_values(credit.advantages, row, size), "ratio": row_values(credit.ratio, row, size),
            "gate": row_values(credit.gate, row, size), "entropy": row_values(credit.entropy, row, size),
            "delta": row_values(credit.delta, row, size),
            "lookahead_entropy": row_values(credit.lookahead_entropy, row, size),
        }
    )  # fmt: skip
print(write_step_records(run_dir, 10, records))
PYTHON
fi

"$PY" -m egrsd.credit_pages "$RUN" ${STEP:+--step "$STEP"} | tee "$OUT/inspect.txt"
HTML="$(sed -n 's/^html: //p' "$OUT/inspect.txt")"

screenshot() {  # screenshot URL PNG
  local profile
  profile="$(mktemp -d)"
  timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
    --disable-sync --no-first-run --hide-scrollbars --user-data-dir="$profile" --screenshot="$2" \
    --window-size=1200,1600 "$1" >/dev/null 2>&1 || true
  rm -rf "$profile"
  test -s "$2" || { echo "chromium wrote no screenshot for $1" >&2; exit 1; }
}
screenshot "file://$HTML" "$OUT/credit.png"
screenshot "file://$HTML#view=gate" "$OUT/gate.png"

"$PY" - "$OUT/credit.png" "$OUT/gate.png" "${RUN_DIR:+real}" <<'PYTHON'
import sys

import numpy as np
from PIL import Image


def counts(path):
    """Pixels that are saturated blue, red and purple (channel dominance by a margin of 30 to 60 out of 255)."""
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return {
        "blue": int(((blue - red > 60) & (blue - green > 30)).sum()),
        "red": int(((red - green > 60) & (red - blue > 60)).sum()),
        "purple": int(((blue - green > 60) & (red - green > 30) & (blue > red)).sum()),
    }


credit, gate = counts(sys.argv[1]), counts(sys.argv[2])
print(f"credit view: {credit['blue']} blue px, {credit['red']} red px, {credit['purple']} purple px")
print(f"gate view: {gate['blue']} blue px, {gate['red']} red px, {gate['purple']} purple px")
# Measured on this sample: the page chrome alone (pick badges, legend) gives about 2100 blue, 2300 red and 0 purple
# px (tokens stripped of colour, script broken); the coloured page about 9300 blue and 8900 red px in the credit view
# and 3700 purple px in the gate view. These floors sit between the two.
problems = []
if credit["blue"] < 4000:
    problems.append("too few blue (raised) token pixels in the credit view")
if credit["red"] < 4000:
    problems.append("too few red (lowered) token pixels in the credit view")
# A real run's gate is mostly near 1 (a few gated tokens per rollout), so its floor is only "some purple at all"
# (the chrome alone has none); the repaint check below still applies.
purple_floor = 200 if len(sys.argv) > 3 and sys.argv[3] == "real" else 2000
if gate["purple"] < purple_floor:
    problems.append("too few purple (down-weighted) pixels in the gate view: did the page's script run?")
if gate["blue"] > credit["blue"] / 2:
    problems.append("the gate view kept the credit colours: the view toggle did not repaint")
if problems:
    sys.exit("screenshot check failed: " + "; ".join(problems))
print("screenshot check passed")
PYTHON

if [ "$UPDATE_DOCS" = 1 ]; then
  "$PY" - "$OUT/credit.png" "$ROOT/docs/credit_page.png" <<'PYTHON'
import sys
from pathlib import Path

from PIL import Image


source, target = sys.argv[1], Path(sys.argv[2])
target.parent.mkdir(parents=True, exist_ok=True)
image = Image.open(source).convert("RGB")
# Crop the empty page bottom, then a 256-colour palette: the page is flat colours, so this stays sharp and small.
background = image.getpixel((image.width - 5, image.height - 5))
rows = [y for y in range(image.height) if any(image.getpixel((x, y)) != background for x in range(0, image.width, 4))]
image = image.crop((0, 0, image.width, min(image.height, rows[-1] + 20))) if rows else image
image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
print(f"docs screenshot: {target} ({target.stat().st_size // 1024} KiB)")
PYTHON
fi
echo "screenshots: $OUT/credit.png $OUT/gate.png"
