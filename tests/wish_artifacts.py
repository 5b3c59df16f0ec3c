"""A tiny synthetic artifact set (frames, nouns, hands, masks, embed) written with the real schemas and writers,
from the synthetic WISH world (pipeline.synth_wish), for end-to-end runs of align -> pseudolabel -> heads."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.embed.cache import Cache, region_key, text_key, write_cache
from pipeline.io import write_image, write_table
from pipeline.schemas import FRAMES, HANDS, MASKS, PHRASES, REGION_EMBEDDINGS, TEXT_EMBEDDINGS
from pipeline.synth_wish import SIZE, TEMPLATES, Encoders, World, make_world
from pipeline.types import SIDES

WEIGHTS = "synthetic-test"


def write_evalset(root: Path, video: str = "EVAL_01") -> Path:
    """The smallest eval-format directory: a manifest naming one eval video."""
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([dict(image_id=f"{video}_frame_1", image_path="images/x.png", mask_path="", label="left_hand",
                       video_id=video)]).to_csv(root / "manifest.csv", index=False)
    return root


def write_artifacts(root: Path, n: int = 60, noise: float = 0.0, seed: int = 1, video: str = "P99_01") -> World:
    enc = Encoders()
    world = make_world(n, noise, seed, enc=enc)
    frames, masks, hands, texts, feats, keys = [], [], [], {}, [], []
    for i, (fid, fr) in enumerate(sorted(world.frames.items())):
        nt = world.texts[fid][0]
        write_image(np.full((SIZE, SIZE, 3), 90, np.uint8), root / "frames" / "images" / f"{fid}.jpg")
        frames.append(dict(frame_id=fid, video_id=video, source="synthetic", clip_index=i, epic_frame=i, time_s=i / 5,
                           image_path=f"images/{fid}.jpg", width=SIZE, height=SIZE, narration_ids=[nt.narration_id],
                           split="train"))
        noun = int(nt.phrases[0].removeprefix("noun"))
        for s in SIDES:
            texts[TEMPLATES[s].format(nt.phrases[0])] = enc.text(noun, s)
        rows = _mask_rows(fid, fr)
        masks += rows
        keys += [region_key(fid, r["rle"], WEIGHTS) for r in rows]
        feats += [fr.features[j] for j in range(fr.n_regions)] + [fr.hands[s].feature for s in SIDES if fr.hands[s].present]
        hands += [_hand_row(fid, k, s, fr.hands[s].box) for k, s in enumerate(SIDES) if fr.hands[s].present]
    phrases = _phrases(world)
    write_table(pd.DataFrame(frames), FRAMES, root / "frames" / "frames.parquet")
    write_table(phrases, PHRASES, root / "nouns" / "phrases.parquet")
    write_table(pd.DataFrame(hands), HANDS, root / "hands" / "hands.parquet")
    write_table(pd.DataFrame(masks), MASKS, root / "masks" / "masks.parquet")
    attrs = {"weights_id": WEIGHTS, "backend": "synthetic"}
    write_cache(root / "embed" / "regions.h5", Cache(keys, np.stack(feats), attrs), REGION_EMBEDDINGS)
    tk = list(texts)
    write_cache(root / "embed" / "texts.h5", Cache([text_key(t, WEIGHTS) for t in tk], np.stack([texts[t] for t in tk]),
                                                   attrs, tk), TEXT_EMBEDDINGS)
    return world


def _mask_rows(fid: str, fr) -> list[dict]:
    rows = []
    for j in range(fr.n_regions):
        rows.append(_mask_row(fid, int(fr.mask_ids[j]), "object", "", -1, fr.rles[j], fr.boxes[j], int(fr.areas[j])))
    for k, s in enumerate(SIDES):
        h = fr.hands[s]
        if h.present:
            rows.append(_mask_row(fid, 100 + k, "hand", s, k, h.rle, h.box, int((h.box[2] - h.box[0]) * (h.box[3] - h.box[1]))))
    return rows


def _mask_row(fid, mask_id, kind, side, hand_id, rle, box, area) -> dict:
    return dict(frame_id=fid, mask_id=mask_id, kind=kind, side=side, hand_id=hand_id, height=SIZE, width=SIZE, rle=rle,
                x0=float(box[0]), y0=float(box[1]), x1=float(box[2]), y1=float(box[3]), area=area, score=1.0,
                backend="synthetic")


def _hand_row(fid: str, hand_id: int, side: str, box) -> dict:
    return dict(frame_id=fid, hand_id=hand_id, side=side, side_model=side, side_model_score=0.9, side_position=side,
                score=0.9, x0=float(box[0]), y0=float(box[1]), x1=float(box[2]), y1=float(box[3]),
                landmarks=[0.0] * 42, backend="synthetic")


def _phrases(world: World) -> pd.DataFrame:
    rows = []
    for _fid, texts in sorted(world.texts.items()):
        nt = texts[0]
        p = nt.phrases[0]
        rows.append(dict(narration_id=nt.narration_id, video_id="P99_01", narration=f"take {p}", phrase_idx=0, phrase=p,
                         head_lemma=p, noun_class=int(p.removeprefix("noun")), noun_key=p, hand=nt.hands[0],
                         source="synthetic", text_left=TEMPLATES["left"].format(p),
                         text_right=TEMPLATES["right"].format(p), text_none=p))
    return pd.DataFrame(rows)
