"""Stage `embed`: region embeddings of every mask and text embeddings of every phrase, as content-keyed caches."""
from __future__ import annotations

from pathlib import Path

import typer

from stages.common import ParamsOpt, RootOpt, setup


def run(params: Path = ParamsOpt, root: Path = RootOpt) -> None:
    """Encode ROOT/masks/masks.parquet regions and ROOT/nouns/phrases.parquet texts into ROOT/embed/{regions,texts}.h5.

    Rows of an existing ROOT/embed cache made by the same encoder are reused (declare the out `persist: true`)."""
    from pipeline.embed import build_encoders
    from pipeline.embed.build import embed_regions, embed_texts, params_hash, phrase_texts
    from pipeline.embed.cache import reusable, write_cache
    from pipeline.io import atomic_dir, read_table, write_json
    from pipeline.schemas import FRAMES, MASKS, PHRASES, REGION_EMBEDDINGS, TEXT_EMBEDDINGS

    p = setup(params)
    frames = read_table(root / "frames" / "frames.parquet", FRAMES)
    masks = read_table(root / "masks" / "masks.parquet", MASKS)
    texts = phrase_texts(read_table(root / "nouns" / "phrases.parquet", PHRASES))
    region_enc, text_enc = build_encoders(p.embed, p.common)
    old = root / "embed"
    prev_r, why_r = reusable(old / "regions.h5", REGION_EMBEDDINGS, region_enc.weights_id)
    prev_t, why_t = reusable(old / "texts.h5", TEXT_EMBEDDINGS, text_enc.weights_id)
    attrs = dict(backend=p.embed.backend, params_hash=params_hash(p.embed))
    n_ray = 0
    if p.common.executor != "local":  # the missing regions are encoded on the executor's workers: `prev_r`
        from pipeline.embed.shards import embed_sharded
        prev_r, n_ray = embed_sharded(frames, masks, root / "frames", prev_r, region_enc.weights_id,
                                     {**attrs, "weights_id": region_enc.weights_id}, p)
    regions, n_r = embed_regions(region_enc, frames, masks, root / "frames", prev_r,
                                 {**attrs, "weights_id": region_enc.weights_id})
    n_r += n_ray
    tcache, n_t = embed_texts(text_enc, texts, prev_t, {**attrs, "weights_id": text_enc.weights_id})
    with atomic_dir(old) as out:
        write_cache(out / "regions.h5", regions, REGION_EMBEDDINGS)
        write_cache(out / "texts.h5", tcache, TEXT_EMBEDDINGS)
        write_json(dict(backend=p.embed.backend, regions=len(regions.keys), region_dim=region_enc.dim,
                        region_weights_id=region_enc.weights_id, texts=len(texts), text_dim=text_enc.dim,
                        text_weights_id=text_enc.weights_id, frames_with_masks=int(masks["frame_id"].nunique())),
                   out / "summary.json")
    typer.echo(f"embed: {len(regions.keys)} regions ({n_r} encoded; {why_r}), "
               f"{len(texts)} texts ({n_t} encoded; {why_t}) with backend {p.embed.backend}")
