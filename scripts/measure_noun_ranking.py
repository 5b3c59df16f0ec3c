"""How well do region embeddings rank the right noun for a ground-truth object crop?

For every object mask of an eval set (manifest rows *_object with an epic_noun_key) the candidate nouns are
ranked by cosine similarity between the crop's embedding and each noun's text embedding, against two
vocabularies: the eval set's own distinct noun keys, and the 305 EPIC-100 v2 noun classes.
(a) ConSE bridge: EfficientNet ImageNet probabilities mixed over MiniLM class-name embeddings (no training).
(b) Stage 1: pooled region features and MiniLM texts mapped through trained adapters (--adapters).

    python scripts/measure_noun_ranking.py [--adapters artifacts/align/adapters.pt] [--out metrics/x.json]
        [--regions crop|dense] [--dense-side 854] [--min-crop-size 96]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.data.evalset import load_evalset  # noqa: E402
from pipeline.params import Params, load_params  # noqa: E402


def key_phrase(key: str) -> str:
    """EPIC noun key to words: "liquid:washing" -> "washing liquid"."""
    parts = str(key).split(":")
    return " ".join(parts[1:][::-1] + parts[:1])


def object_crops(evalset_dir: str) -> tuple[list[np.ndarray], list[list[np.ndarray]], list[int], list[str]]:
    """Images, their object masks and, per mask, (image index, noun key)."""
    from PIL import Image

    es = load_evalset(evalset_dir)
    m = es.manifest
    rows = m[m["label"].astype(str).str.endswith("_object") & m["epic_noun_key"].notna()]
    images, masks, owner, nouns = [], [], [], []
    for i, (image_id, group) in enumerate(rows.groupby("image_id", sort=True)):
        frame = next(f for f in es.frames if f.image_id == image_id)
        images.append(es.image(frame))
        masks.append([np.array(Image.open(es.root / p)) > 0 for p in group["mask_path"]])
        owner += [i] * len(group)
        nouns += [str(k) for k in group["epic_noun_key"]]
    return images, masks, owner, nouns


def rank_scores(regions: np.ndarray, texts: np.ndarray, truth: list[int]) -> dict[str, float]:
    """top-1 / top-3 accuracy of cosine ranking, and what chance would give."""
    r = regions / np.linalg.norm(regions, axis=1, keepdims=True).clip(1e-12)
    t = texts / np.linalg.norm(texts, axis=1, keepdims=True).clip(1e-12)
    order = np.argsort(-(r @ t.T), axis=1, kind="stable")
    hit = order == np.asarray(truth)[:, None]
    k = texts.shape[0]
    return {"n": len(truth), "candidates": k, "top1": float(hit[:, :1].any(1).mean()),
            "top3": float(hit[:, :3].any(1).mean()), "chance_top1": 1 / k, "chance_top3": min(3 / k, 1.0)}


def vocabularies(nouns: list[str], classes_csv: str) -> dict[str, list[str]]:
    v2 = pd.read_csv(classes_csv)["key"].astype(str).tolist()
    missing = sorted(set(nouns) - set(v2))
    if missing:
        print(f"note: eval nouns not among the v2 classes (counted as misses there): {missing}")
    return {"evalset_nouns": sorted(set(nouns)), "v2_classes": v2}


def measure(method: str, region_feats: np.ndarray, embed_texts, nouns: list[str], vocabs: dict) -> dict:
    out = {}
    for name, vocab in vocabs.items():
        index = {k: i for i, k in enumerate(vocab)}
        keep = [i for i, n in enumerate(nouns) if n in index]
        texts = embed_texts([key_phrase(k) for k in vocab])
        out[name] = rank_scores(region_feats[keep], texts, [index[nouns[i]] for i in keep])
        out[name]["n_total"] = len(nouns)
        s = out[name]
        print(f"{method:8s} {name:14s} K={s['candidates']:3d} n={s['n']:2d}/{len(nouns)}  top1 {s['top1']:.3f} "
              f"(chance {s['chance_top1']:.3f})  top3 {s['top3']:.3f} (chance {s['chance_top3']:.3f})")
    return out


def encode_all(encoder, images, masks) -> np.ndarray:
    return np.concatenate([encoder.encode(img, ms) for img, ms in zip(images, masks)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--adapters", default=None, help="trained Stage 1 adapters (artifacts/align/adapters.pt)")
    ap.add_argument("--out", default=None, help="write the numbers as JSON here")
    ap.add_argument("--regions", choices=["crop", "dense"], default=None, help="override embed.offline.regions")
    ap.add_argument("--dense-side", type=int, default=None, help="override embed.offline.dense_side")
    ap.add_argument("--min-crop-size", type=int, default=None, help="override embed.offline.min_crop_size")
    args = ap.parse_args()

    from pipeline.embed.offline import build

    p = load_params(args.params) if Path(args.params).is_file() else Params()
    p = with_region_mode(p, regions=args.regions, dense_side=args.dense_side, min_crop_size=args.min_crop_size)
    images, masks, _, nouns = object_crops(p.score.evalset)
    vocabs = vocabularies(nouns, p.nouns.noun_classes_csv)
    conse_offline = p.embed.offline.model_copy(update={"region_features": "conse"})
    conse_params = p.embed.model_copy(update={"offline": conse_offline})
    region, text = build(conse_params, p.common)
    results = {"conse": measure("conse", encode_all(region, images, masks), text.encode, nouns, vocabs)}
    results["stage1"] = stage1(args.adapters, p, images, masks, text, nouns, vocabs)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


def with_region_mode(p: Params, **overrides) -> Params:
    """params with embed.offline fields (regions, dense_side, min_crop_size) overridden where not None."""
    update = {k: v for k, v in overrides.items() if v is not None}
    offline = p.embed.offline.model_copy(update=update)
    return p.model_copy(update={"embed": p.embed.model_copy(update={"offline": offline})})


def stage1(adapters: str | None, p, images, masks, text, nouns, vocabs) -> dict | str:
    """Ranking in the adapters' joint space (pooled region features of the configured backend)."""
    if adapters is None:
        print("stage1: pass --adapters artifacts/align/adapters.pt to measure after Stage 1")
        return "not measured (no --adapters)"
    try:
        from pipeline.align import load_adapters
    except ImportError as e:
        print(f"stage1: pending (pipeline.align.load_adapters not available: {e})")
        return "pending"
    import torch

    from pipeline.embed import build_encoders

    model = load_adapters(adapters).eval()
    region, text = build_encoders(p.embed, p.common)
    with torch.inference_mode():
        feats = model.embed_regions(encode_all(region, images, masks)).float().numpy()
        embed = lambda texts: model.embed_texts(text.encode(texts)).float().numpy()  # noqa: E731
        return measure("stage1", feats, embed, nouns, vocabs)


if __name__ == "__main__":
    main()
