"""The credit page: records round-trip, the HTML shows every token once and coloured, the PNG, the CLI, reporting."""

import json
import re
import sys
import types
from html.parser import HTMLParser

import pytest
from helpers import tiny_training_settings

from egrsd.credit_pages.cli import main
from egrsd.credit_pages.page import render_html
from egrsd.credit_pages.plot import render_png
from egrsd.credit_pages.records import (
    RECORD_FIELDS,
    NoCreditRecordsError,
    available_steps,
    load_step_records,
    write_step_records,
)
from egrsd.credit_pages.render import render_step
from egrsd.credit_pages.trackers import report_step


# Tokens that break naive pages: markup, entities, quotes, newlines, an empty token, non-ASCII, a backslash.
TOKENS = ["<think>", "\n", "37", "+", "48", "=", "85", "\n", ' "a<b" & c', "", "é", "\n\n", "\\boxed{", "85", "}"]
SIZE = len(TOKENS)
# Which per-token arrays each method has (the rest are null).
METHOD_FIELDS = {
    "grpo": (),
    "opsd": ("delta",),
    "egrsd": ("ratio", "gate", "entropy", "delta"),
    "cl_egrsd": ("ratio", "gate", "entropy", "delta", "lookahead_entropy"),
}
HEX = re.compile(r"#[0-9a-f]{6}")
FLOAT_ARRAYS = ("ahat", "ratio", "gate", "entropy", "delta", "lookahead_entropy")


def make_record(method, step=3, rollout=0, group=0, pick="best", advantage=0.8, reward=1.0):
    fields = METHOD_FIELDS[method]
    entropy = [0.2 + 2.0 * (5 <= i <= 9) for i in range(SIZE)]
    ratio = [0.5 + i / SIZE for i in range(SIZE)]
    gate = [1.0 - 0.7 * (5 <= i <= 9) for i in range(SIZE)]
    delta = [0.3 * ((-1) ** i) for i in range(SIZE)]
    if method == "grpo":
        ahat = [advantage] * SIZE
    elif method == "opsd":
        ahat = delta
    else:
        ahat = [advantage * m * g for m, g in zip(ratio, gate)]
    record = {
        "step": step,
        "method": method,
        "rollout": rollout,
        "group": group,
        "pick": pick,
        "prompt": "Compute 37 + 48 <b>now</b>",
        "completion": "".join(TOKENS),
        "reward": reward,
        "advantage": advantage,
        "tokens": list(TOKENS),
        "token_ids": list(range(100, 100 + SIZE)),
        "ahat": ahat,
    }
    if method in ("egrsd", "cl_egrsd"):
        record["entropy_ref"] = 2.0
    optional = {
        "ratio": ratio,
        "gate": gate,
        "entropy": entropy,
        "delta": delta,
        "lookahead_entropy": entropy[1:] + [0.2],
    }
    record.update({name: optional[name] for name in fields})
    return record


def step_records(method, step=3):
    """The best and worst rollout of two groups, the way the trainer saves a step."""
    return [
        make_record(method, step, rollout=0, group=0, pick="best", advantage=0.8),
        make_record(method, step, rollout=1, group=0, pick="worst", advantage=-0.8, reward=0.0),
        make_record(method, step, rollout=4, group=1, pick="best", advantage=0.3, reward=None),
        make_record(method, step, rollout=6, group=1, pick="worst", advantage=-0.3, reward=0.0),
    ]


class TokenSpans(HTMLParser):
    """Every `span.tok` of a page: its attributes and its text (nested markers inside carry no text)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.spans = []
        self.depth = 0

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if self.depth:
            self.depth += 1
        elif tag == "span" and "tok" in (attributes.get("class") or "").split():
            self.spans.append({"attrs": attributes, "text": ""})
            self.depth = 1

    def handle_endtag(self, tag):
        if self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.spans[-1]["text"] += data


def token_spans(page):
    parser = TokenSpans()
    parser.feed(page)
    return parser.spans


@pytest.mark.parametrize("method", sorted(METHOD_FIELDS))
def test_records_round_trip(tmp_path, method):
    records = step_records(method)
    path = write_step_records(tmp_path, 3, records)
    assert path == str(tmp_path / "credit" / "step_00003.jsonl")
    step, loaded = load_step_records(tmp_path)
    assert step == 3 and len(loaded) == len(records)
    for written, read in zip(records, loaded):
        # Every schema field is present; the ones the method lacks are null.
        assert set(read) == set(RECORD_FIELDS)
        for key, value in written.items():
            # Floats are kept to 6 significant digits.
            assert read[key] == (pytest.approx(value, rel=1e-5) if key in FLOAT_ARRAYS else value), key
        assert all(read[key] is None for key in set(read) - set(written))
        lengths = {len(read[key]) for key in ("tokens", "token_ids", "ahat", *METHOD_FIELDS[method])}
        assert lengths == {SIZE}
    # Strict JSON, one record a line, readable by any tool.
    lines = (tmp_path / "credit" / "step_00003.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(records) and all(json.loads(line)["method"] == method for line in lines)


def test_write_makes_json_strict_and_rejects_bad_records(tmp_path):
    record = make_record("egrsd")
    record["reward"] = float("nan")
    write_step_records(tmp_path, 3, [record])
    assert load_step_records(tmp_path)[1][0]["reward"] is None

    short_gate = make_record("egrsd")
    short_gate["gate"] = short_gate["gate"][:-1]
    with pytest.raises(ValueError, match="differ in length"):
        write_step_records(tmp_path, 3, [short_gate])
    with pytest.raises(ValueError, match="unknown fields"):
        write_step_records(tmp_path, 3, [{**make_record("grpo"), "gates": [1.0] * SIZE}])
    with pytest.raises(ValueError, match="missing fields"):
        write_step_records(tmp_path, 3, [{k: v for k, v in make_record("grpo").items() if k != "ahat"}])
    with pytest.raises(ValueError, match="written as step 4"):
        write_step_records(tmp_path, 4, [make_record("grpo", step=3)])


def test_load_picks_latest_step_or_the_one_asked(tmp_path):
    for step in (5, 12, 9):
        write_step_records(tmp_path, step, step_records("grpo", step))
    assert load_step_records(tmp_path)[0] == 12
    assert load_step_records(tmp_path, 5)[0] == 5
    # The credit folder itself works as well as the run directory.
    assert load_step_records(tmp_path / "credit")[0] == 12
    with pytest.raises(NoCreditRecordsError, match=r"saved steps: \[5, 9, 12\]"):
        load_step_records(tmp_path, 7)


@pytest.mark.parametrize("method", sorted(METHOD_FIELDS))
def test_html_every_token_in_order_with_one_colour(tmp_path, method):
    records = step_records(method)
    page = open(render_html(records, tmp_path / "page.html"), encoding="utf-8").read()
    spans = token_spans(page)
    # Rollouts appear group by group, best before worst: here the order they were given.
    assert [span["text"] for span in spans] == TOKENS * len(records)
    for span in spans:
        styles = [rule for rule in span["attrs"]["style"].split(";") if rule.startswith("background")]
        assert len(styles) == 1 and HEX.fullmatch(styles[0].split(":")[1])
    # Escaped in the source: the raw markup of a token never reaches the page as markup.
    assert "&lt;think&gt;" in page and "<think>" not in page
    assert " &quot;a&lt;b&quot; &amp; c" in page
    assert "Compute 37 + 48 &lt;b&gt;now&lt;/b&gt;" in page


def channels(span):
    colour = span["attrs"]["style"].split("background:")[1][:7]
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def test_html_credit_colours_follow_sign_and_magnitude(tmp_path):
    records = step_records("egrsd")
    spans = token_spans(open(render_html(records, tmp_path / "page.html"), encoding="utf-8").read())
    best, worst = spans[:SIZE], spans[SIZE : 2 * SIZE]
    red, green, blue = channels(best[-1])
    assert blue > red and blue > green  # A > 0: blue
    red, green, blue = channels(worst[-1])
    assert red > blue and red > green  # A < 0: red
    # Gated tokens (5..9) are paler than ungated ones: further from white.
    assert sum(channels(best[7])) > sum(channels(best[12]))
    # The page scale: the group with |A| = 0.3 is paler than the one with |A| = 0.8 at the same token.
    assert sum(channels(spans[2 * SIZE + 12])) > sum(channels(best[12]))
    # opsd's credit changes sign token by token.
    opsd = token_spans(open(render_html(step_records("opsd"), tmp_path / "opsd.html"), encoding="utf-8").read())
    assert channels(opsd[0])[2] > channels(opsd[0])[0] and channels(opsd[1])[0] > channels(opsd[1])[2]
    # A = 0 everywhere: all white, still one colour per token.
    flat = [make_record("grpo", advantage=0.0)]
    flat_spans = token_spans(open(render_html(flat, tmp_path / "flat.html"), encoding="utf-8").read())
    assert {channels(span) for span in flat_spans} == {(255, 255, 255)}


def test_html_toggle_hover_and_nothing_external(tmp_path):
    page = open(render_html(step_records("cl_egrsd"), tmp_path / "page.html"), encoding="utf-8").read()
    views = re.findall(r'data-view="(\w+)"', page)
    assert views == ["credit", "gate", "ratio", "entropy", "lookahead", "delta"]
    spans = token_spans(page)
    # Hover data: every quantity of the method on every token.
    for attribute in ("data-id", "data-a", "data-m", "data-g", "data-h", "data-l", "data-d"):
        assert all(attribute in span["attrs"] for span in spans)
    assert spans[0]["attrs"]["data-a"] == format(step_records("cl_egrsd")[0]["ahat"][0], ".4g")
    assert 'id="info"' in page and "mouseover" in page
    assert 'data-entropy-ref="2"' in page and "H_ref 2 nats" in page and "step 3" in page
    # Standalone: inline style and script only.
    assert not re.search(r"https?://|<link|@import|\bsrc=", page)

    grpo_page = open(render_html(step_records("grpo"), tmp_path / "grpo.html"), encoding="utf-8").read()
    assert re.findall(r'data-view="(\w+)"', grpo_page) == ["credit"]
    assert "data-g=" not in grpo_page and "H_ref n/a" in grpo_page


@pytest.mark.parametrize("method", ["cl_egrsd", "grpo", "opsd"])
def test_png_is_a_png(tmp_path, method):
    path = render_png(step_records(method), tmp_path / "curves.png")
    with open(path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(path) as image:
        image.verify()


def test_render_step_writes_beside_the_records(tmp_path):
    write_step_records(tmp_path, 3, step_records("cl_egrsd"))
    html_path, png_path = render_step(tmp_path)
    assert html_path == str(tmp_path / "credit" / "step_00003.html")
    assert png_path == str(tmp_path / "credit" / "step_00003.png")


def test_cli_prints_paths_of_the_latest_step(tmp_path, capsys):
    for step in (5, 10):
        write_step_records(tmp_path, step, [make_record("egrsd", step)])
    main([str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"html: {tmp_path}/credit/step_00010.html", f"png: {tmp_path}/credit/step_00010.png"]
    assert (tmp_path / "credit" / "step_00010.html").is_file() and not (
        tmp_path / "credit" / "step_00005.html"
    ).exists()
    main([str(tmp_path), "--step", "5"])
    assert "step_00005.html" in capsys.readouterr().out


def test_cli_explains_how_to_get_records(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main([str(tmp_path)])
    assert exited.value.code == 2
    message = capsys.readouterr().err
    assert message.startswith("error: no credit records") and "— " in message and "log_completions: true" in message


class FakeMedia:
    def __init__(self, data, **options):
        self.data, self.options = data, options


def test_report_step_to_wandb(tmp_path, monkeypatch):
    logged = []
    fake_wandb = types.ModuleType("wandb")
    fake_wandb.run = object()
    fake_wandb.Html, fake_wandb.Image = type("Html", (FakeMedia,), {}), type("Image", (FakeMedia,), {})
    fake_wandb.log = logged.append
    monkeypatch.setitem(sys.modules, "wandb", fake_wandb)
    write_step_records(tmp_path, 3, [make_record("cl_egrsd")])

    report_step(tmp_path, 3, ["wandb"])
    (entry,) = logged
    assert entry["train/global_step"] == 3
    assert entry["credit/page"].data.startswith("<!doctype html>") and entry["credit/page"].options == {
        "inject": False
    }
    assert entry["credit/curves"].data == str(tmp_path / "credit" / "step_00003.png")

    # No active run: a warning, nothing logged, the page still rendered.
    fake_wandb.run = None
    with pytest.warns(UserWarning, match="no active wandb run"):
        report_step(tmp_path, 3, ["wandb"])
    assert len(logged) == 1
    report_step(tmp_path, 3, ["none"])
    assert len(logged) == 1


def test_report_step_to_trackio(tmp_path, monkeypatch):
    trackio = pytest.importorskip("trackio")
    logged = []
    monkeypatch.setattr(trackio, "log", logged.append)
    write_step_records(tmp_path, 3, [make_record("cl_egrsd")])

    report_step(tmp_path, 3, ["trackio"])
    (entry,) = logged
    assert entry["train/global_step"] == 3
    assert isinstance(entry["credit/page"], trackio.Html) and isinstance(entry["credit/curves"], trackio.Image)
    # The real page, not its path.
    assert entry["credit/page"]._html.startswith("<!doctype html>")

    # A trackio without Html media gets the curves only, and says so.
    monkeypatch.delattr(trackio, "Html")
    with pytest.warns(UserWarning, match="no Html media"):
        report_step(tmp_path, 3, "trackio")
    assert set(logged[1]) == {"credit/curves", "train/global_step"}


def test_training_with_cl_egrsd_saves_and_renders_the_credit(tmp_path, make_trainer, tokenizer):
    """Two real training steps with logging on, then the page: every saved token, in order, one colour each."""
    trainer = make_trainer(
        credit_method="cl_egrsd",
        per_device_train_batch_size=8,
        log_completions=True,
        num_completions_to_print=0,
        num_credit_rollouts=3,
    )
    trainer.train()

    assert available_steps(tmp_path) == [1, 2]
    step, records = load_step_records(tmp_path)
    assert step == 2 and len(records) == 3  # best and worst of group 0, best of group 1
    assert [(r["group"], r["pick"]) for r in records] == [(0, "best"), (0, "worst"), (1, "best")]
    for record in records:
        assert record["method"] == "cl_egrsd" and record["step"] == 2
        lengths = {len(record[name]) for name in ("tokens", "token_ids", "ahat", "ratio", "gate", "entropy", "delta")}
        assert lengths == {len(record["lookahead_entropy"])} and lengths.pop() > 0
        assert "".join(record["tokens"]) == record["completion"]
        assert record["tokens"] == [tokenizer.decode([i]) for i in record["token_ids"]]

    html_path, png_path = render_step(tmp_path)
    spans = token_spans(open(html_path).read())
    assert [span["text"] for span in spans] == [token for record in records for token in record["tokens"]]
    assert all(len(HEX.findall(span["attrs"]["style"])) == 1 for span in spans)
    with open(png_path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_grpo_records_trls_advantages_and_only_when_asked(tmp_path, tiny_model_dir, tokenizer, arith_dataset):
    """grpo has no teacher: the recorder saves TRL's sequence-level advantage as every token's credit. With
    `num_credit_rollouts: 0` no recorder is added."""
    from egrsd.configs import EGRSDConfig
    from egrsd.credit_pages.callback import CreditRecordCallback
    from egrsd.trainer import EGRSDTrainer

    def rollout_number(completions, **kwargs):  # distinct rewards: row 3 is its group's best, row 0 its worst
        return [float(i) for i in range(len(completions))]

    def trainer_with(output_dir, **overrides):
        settings = tiny_training_settings(output_dir, credit_method="grpo", per_device_train_batch_size=8)
        return EGRSDTrainer(
            model=tiny_model_dir,
            reward_funcs=rollout_number,
            args=EGRSDConfig(
                **settings | dict(max_steps=1, log_completions=True, num_completions_to_print=0) | overrides
            ),  # fmt: skip
            train_dataset=arith_dataset,
            processing_class=tokenizer,
        )

    trainer = trainer_with(tmp_path / "on", num_credit_rollouts=2)
    recorders = [c for c in trainer.callback_handler.callbacks if isinstance(c, CreditRecordCallback)]
    assert recorders == [trainer.credit_recorder]
    trainer.train()
    step, records = load_step_records(tmp_path / "on")
    assert step == 1 and [(r["rollout"], r["pick"], r["reward"]) for r in records] == [
        (3, "best", 3.0),
        (0, "worst", 0.0),
    ]
    best, worst = records
    assert best["advantage"] > 0 > worst["advantage"]
    for record in records:
        assert record["ahat"] == [record["advantage"]] * len(record["tokens"])
        assert all(record[name] is None for name in ("ratio", "gate", "entropy", "delta", "lookahead_entropy"))

    quiet = trainer_with(tmp_path / "off", num_credit_rollouts=0)
    assert quiet.credit_recorder is None
    assert not any(isinstance(c, CreditRecordCallback) for c in quiet.callback_handler.callbacks)
    quiet.train()
    assert available_steps(tmp_path / "off") == []
