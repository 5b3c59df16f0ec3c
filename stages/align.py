"""Stage `align` (WISH Stage 1): InfoNCE-train hand-aware adapters on frames and their narrations' phrases."""
from __future__ import annotations

from pathlib import Path

import typer

from stages.common import ParamsOpt, RootOpt, setup


def run(params: Path = ParamsOpt, root: Path = RootOpt) -> None:
    """Train ROOT/align/{adapters.pt,curve.csv,summary.json} from frames, nouns, hands, masks and embed."""
    from pipeline.align import narration_texts, save_adapters, train_adapters, training_narrations
    from pipeline.data.evalset import eval_video_ids
    from pipeline.device import resolve_device
    from pipeline.embed.cache import lookup_texts
    from pipeline.errors import WishError
    from pipeline.io import atomic_dir, atomic_path, read_table, write_csv, write_json
    from pipeline.regions import load_frame_regions
    from pipeline.schemas import FRAMES, PHRASES

    p = setup(params)
    frames_path = root / "frames" / "frames.parquet"
    frames = read_table(frames_path, FRAMES)
    phrases = read_table(root / "nouns" / "phrases.parquet", PHRASES)
    narrs = training_narrations(frames, phrases, eval_video_ids(p.common.eval_dirs), frames_path)
    if not narrs:
        raise WishError(frames_path, "no training frame is covered by a narration with noun phrases")
    regions = load_frame_regions(root, sorted(narrs))
    ids = [f for f in sorted(narrs) if f in regions and regions[f].n_regions]
    if not ids:
        raise WishError(root / "masks" / "masks.parquet", "no training frame has object proposals")
    used = phrases[phrases["narration_id"].isin({n for f in ids for n in narrs[f]})]
    texts = narration_texts(used, lambda t: lookup_texts(root / "embed" / "texts.h5", t))
    video_of = dict(zip(frames["frame_id"].astype(str), frames["video_id"].astype(str)))
    model, curve = train_adapters([regions[f] for f in ids], [narrs[f] for f in ids], texts, p.align,
                                  p.common.seed, resolve_device(p.common.device), progress=True,
                                  cand_params=p.pseudolabel, videos=[video_of[f] for f in ids])
    with atomic_dir(root / "align") as out:
        with atomic_path(out / "adapters.pt", ".pt") as tmp:
            save_adapters(model, tmp)
        write_csv(curve, out / "curve.csv")
        last = curve.iloc[-1]
        summary = dict(frames=len(ids), narrations=len(texts), final_loss=float(last["loss"]),
                       final_retrieval_acc=float(last["retrieval_acc"]), temperature=float(last["temperature"]))
        write_json(summary, out / "summary.json")
    typer.echo(f"align: {len(ids)} frames, {len(texts)} narrations; final loss {summary['final_loss']:.3f}, "
               f"batch retrieval acc {summary['final_retrieval_acc']:.2f}")
