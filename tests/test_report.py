"""HTML reports: numbers and failure kinds on known maps, and the real page in headless Chromium (DOM after its
scripts ran via --dump-dom, a screenshot), for the score stage, `wish evaluate` and `wish predict`."""
from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import predict as pp
from pipeline.browser import NOT_FOUND, dump_dom, find_chromium, screenshot
from pipeline.report import frame_numbers, metrics_table
from stages.cli import main
from test_metrics import _map as label_map
from test_predict import MISMATCH, PERFECT, FakeModels, _params, _write_evalset

needs_chromium = pytest.mark.skipif(find_chromium() is None, reason=NOT_FOUND)


class Dom(HTMLParser):
    """The bits of a dumped DOM the tests look at: data-key cells, tag counts, attributes and text by id."""

    def __init__(self, text: str):
        super().__init__()
        self.cells, self.frame_cells, self.counts, self.attrs, self.text_of = {}, {}, {}, {}, {}
        self._key = self._id = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.counts[tag] = self.counts.get(tag, 0) + 1
        self.attrs.setdefault(tag, []).append(a)
        self._key = None
        if tag == "td" and ("data-key" in a or "data-frame-key" in a):
            self._key = ("cells", a["data-key"]) if "data-key" in a else ("frame_cells", a["data-frame-key"])
        self._id = a.get("id") or self._id if tag in ("span", "td") else self._id

    def handle_data(self, data):
        if self._key is not None:
            getattr(self, self._key[0]).setdefault(self._key[1], []).append(data.strip())
            self._key = None
        if self._id is not None and data.strip():
            self.text_of[self._id] = data.strip()
            self._id = None


def _load(path: Path) -> Dom:
    return Dom(dump_dom(path))


def _value(text: str):
    return None if text == "–" else float(text)


# ------------------------------------------------------------------------------------------ numbers


def _map(**rects) -> np.ndarray:
    return label_map(20, 30, **rects)


def test_failure_kinds_on_known_maps():
    gt = _map(lh=(1, 10, 20, 0, 8), lo=(3, 12, 16, 8, 12), rh=(2, 10, 20, 22, 30))
    assert frame_numbers(gt, gt, 1)["failures"] == [] and frame_numbers(gt, gt, 1)["boundary_iou"] == 1.0
    swapped = _map(lh=(2, 10, 20, 0, 8), lo=(4, 12, 16, 8, 12), rh=(1, 10, 20, 22, 30))
    kinds = frame_numbers(swapped, gt, 1)["failures"]
    assert ("wrong_side", "left") in kinds and ("wrong_side", "right") in kinds and ("wrong_contact", "left") in kinds
    missed = _map(lo=(3, 12, 16, 8, 12), rh=(2, 10, 20, 22, 30))
    assert frame_numbers(missed, gt, 1)["failures"] == [("missed_hand", "left")]
    elsewhere = _map(lh=(1, 10, 20, 0, 8), lo=(3, 0, 4, 12, 20), rh=(2, 10, 20, 22, 30))
    n = frame_numbers(elsewhere, gt, 1)
    assert n["failures"] == [("wrong_region", "left")] and n["iou"]["left_object"] == 0.0
    assert n["iou"]["both_object"] is None and n["object_iou"] == 0.0 and n["boundary_iou"] == 0.0


def test_metrics_table_renders_whatever_rows_it_is_given():
    m = {"wish.object_miou": 0.059, "oracle_selection.object_miou": 0.31, "oracle_selection.recall.left_object": 0.5,
         "evalset.n_frames": 12, "wish.contact_boundary_iou": None}
    dom = Dom(metrics_table(m))
    assert {a["data-row"] for a in dom.attrs["tr"] if "data-row" in a} == {"wish", "oracle_selection", "evalset"}
    assert dom.cells["oracle_selection.recall.left_object"] == ["0.5000"] and dom.cells["evalset.n_frames"] == ["12"]
    assert dom.cells["wish.contact_boundary_iou"] == ["–"]


# ------------------------------------------------------------------------------------------ in a browser


def _training_artifacts(root: Path, n_clips: int = 2, n_frames: int = 3) -> None:
    """ROOT/{frames,masks,pseudolabel} for tiny training clips: the left hand holds region 0 ("cup")."""
    from PIL import Image

    from pipeline import rle
    from pipeline.io import write_table
    from pipeline.schemas import FRAMES, MASKS, PSEUDOLABELS

    h, w = 30, 40
    obj, hand = np.zeros((h, w), bool), np.zeros((h, w), bool)
    obj[10:20, 12:20], hand[10:25, 0:12] = True, True
    frames, masks, labels = [], [], []
    (root / "frames" / "images").mkdir(parents=True)
    for c in range(n_clips):
        for i in range(n_frames):
            fid = f"P01_0{c}_clip_{i:06d}"
            Image.fromarray(np.full((h, w, 3), (40 * i + 60) % 256, np.uint8)).save(root / "frames" / "images" / f"{fid}.jpg")
            frames.append(dict(frame_id=fid, video_id=f"P01_0{c}", source=f"clips/clip{c}.mp4", clip_index=i,
                               epic_frame=i, time_s=0.0, image_path=f"images/{fid}.jpg", width=w, height=h,
                               narration_ids=[], split="train"))
            for k, (kind, side, m) in enumerate((("object", "", obj), ("hand", "left", hand))):
                masks.append(dict(frame_id=fid, mask_id=k, kind=kind, side=side, hand_id=k - 1, height=h, width=w,
                                  rle=rle.encode(m), x0=0.0, y0=0.0, x1=1.0, y1=1.0, area=int(m.sum()), score=1.0,
                                  backend="test"))
            for side, mid in (("left", 0), ("right", -1)):
                labels.append(dict(frame_id=fid, side=side, mask_id=mid, contact_score=0.9, match_score=0.75,
                                   label=mid >= 0, narration_id="n", phrase="cup" if mid >= 0 else "",
                                   motion_score=float("nan"), source="narration",
                                   candidate_ids=[0] if mid >= 0 else [], candidate_scores=[0.0] if mid >= 0 else []))
    write_table(pd.DataFrame(frames), FRAMES, root / "frames" / "frames.parquet")
    write_table(pd.DataFrame(masks), MASKS, root / "masks" / "masks.parquet")
    write_table(pd.DataFrame(labels), PSEUDOLABELS, root / "pseudolabel" / "pseudolabels.parquet")


def test_pseudolabel_sheet_per_clip(tmp_path):
    from pipeline.params import ScoreParams
    from pipeline.report_sheets import SHEET_FRAMES_PER_CLIP, pseudolabel_sheet

    _training_artifacts(tmp_path, n_clips=2, n_frames=SHEET_FRAMES_PER_CLIP + 6)
    dom = Dom(pseudolabel_sheet(tmp_path, ScoreParams()))
    clips = [a for a in dom.attrs["section"] if a.get("class") == "clip"]
    assert len(clips) == 2 and dom.counts["img"] == 2 * SHEET_FRAMES_PER_CLIP  # evenly sampled per clip
    html_text = pseudolabel_sheet(tmp_path, ScoreParams())
    assert "L: cup 0.7500 | R: none" in html_text and "clip0.mp4" in html_text
    assert "missing" in pseudolabel_sheet(tmp_path / "nothing", ScoreParams())


@pytest.fixture
def scored(monkeypatch, tmp_path):
    """The score stage on the synthetic eval set (test doubles for the learned parts), with training clips."""
    evalset = _write_evalset(tmp_path / "evalset")
    monkeypatch.setattr(pp, "build_models", lambda params, root: FakeModels(MISMATCH))
    params = tmp_path / "score.yaml"
    params.write_text(f"score:\n  evalset: {evalset}\n  methods: [wish, baseline_nearest]\n")
    root, metrics = tmp_path / "art", tmp_path / "metrics"
    _training_artifacts(root)
    assert main(["score", "--params", str(params), "--root", str(root), "--metrics-dir", str(metrics)]) == 0
    return root, metrics


@needs_chromium
def test_score_report_in_chromium_shows_score_json_and_every_frame(scored, tmp_path):
    root, metrics = scored
    page = metrics / "report.html"
    assert page.is_file() and page.stat().st_size < 20e6
    dom = _load(page)
    score = json.loads((metrics / "score.json").read_text())
    assert set(dom.cells) == set(score)  # the page's dataset numbers are exactly those of score.json ...
    assert all(v == [dom.cells[k][0]] and _value(v[0]) == score[k] for k, v in dom.cells.items())  # ... equal to it
    frames = [a for a in dom.attrs["section"] if "frame" in a.get("class", "")]
    assert len(frames) == 2  # image, GT and both methods per eval frame, plus the 2 x 3 training frames
    assert dom.counts["img"] == 2 * (2 + 2) + 2 * 3 and sum(a.get("class") == "clip" for a in dom.attrs["section"]) == 2
    assert dom.text_of.get("shown") == "2 of 2 frames shown"  # the page's script ran
    assert int(dom.attrs["body"][0]["data-load-ms"]) < 2000  # the page stamps performance.now() at load
    # per-frame numbers agree with evaluate's per_frame.csv
    pf = pd.read_csv(root / "score" / "per_frame.csv")
    row = pf[(pf.image_id == "vid_a_frame_1") & (pf.method == "wish") & (pf["class"] == "left_object")].iloc[0]
    per_frame = dom.frame_cells["wish.iou.left_object"]  # per-frame tables, frames sorted by wish's object IoU
    assert len(per_frame) == 2 and min(map(_value, per_frame)) == pytest.approx(row.intersection / row.union, abs=5e-5)
    # failure filter attributes: frame A's left hand picked the distractor
    a = next(f for f in frames if f["data-id"] == "vid_a_frame_1")
    assert "wrong_region" in a["data-fail-wish"] and a["data-fail-baseline_nearest"] == ""
    shot = screenshot(page, tmp_path / "shot.png")
    from PIL import Image

    img = np.array(Image.open(shot).convert("RGB"))
    assert img.shape[:2] == (1600, 1280) and shot.stat().st_size > 20_000 and img.std() > 10  # not a blank page


@needs_chromium
def test_predict_report_in_chromium_has_a_timeline(monkeypatch, tmp_path):
    evalset = _write_evalset(tmp_path / "evalset")
    monkeypatch.setattr(pp, "build_models", lambda params, root: FakeModels(PERFECT))
    out = tmp_path / "pred"
    assert main(["predict", str(evalset / "images"), "--out", str(out), "--params", str(_params(tmp_path))]) == 0
    dom = _load(out / "report.html")
    states = [a["data-state"] for a in dom.attrs["rect"]]
    # ids <stem>_frame_N group by video: vid_a (left holds its object, right free), vid_b (both hold their own)
    assert dom.counts["svg"] == 2 and states == ["left", "free", "left", "right"]
    assert dom.counts["img"] == 2 and int(dom.attrs["body"][0]["data-load-ms"]) < 2000


def test_wish_report_rebuilds_the_score_and_predict_pages(scored, monkeypatch, tmp_path):
    root, metrics = scored
    params = tmp_path / "score.yaml"
    again = tmp_path / "again.html"
    assert main(["report", str(root / "score"), "--metrics", str(metrics / "score.json"), "--sheet", "--root",
                 str(root), "--out", str(again), "--params", str(params)]) == 0
    assert again.read_bytes() == (metrics / "report.html").read_bytes()
    evalset = tmp_path / "evalset"
    out = tmp_path / "pred"
    monkeypatch.setattr(pp, "build_models", lambda params, root: FakeModels(PERFECT))
    assert main(["predict", str(evalset / "images"), "--out", str(out), "--params", str(_params(tmp_path))]) == 0
    assert main(["report", str(out), "--input", str(evalset / "images"), "--out", str(again)]) == 0
    assert again.read_bytes() == (out / "report.html").read_bytes()
    assert main(["report", str(out), "--out", str(again)]) == 2  # a predict dir needs its input


def test_large_eval_sets_show_an_even_sample():
    from pipeline.report import shown_frames

    assert shown_frames(list(range(5)), 10) == [0, 1, 2, 3, 4]
    assert shown_frames(list(range(1000)), 4) == [0, 333, 666, 999]
