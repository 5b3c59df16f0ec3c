"""Run a proposer over a FRAMES table with its HANDS rows -> MASKS rows (what stage `masks` writes).

Per frame the object proposals come first (mask_id 0.. in rank order), then one hand mask per detected hand
(kind="hand"). Backends that return no hand masks get the shared superpixel hand masks. With `workers` > 1
frames are spread over worker processes (one OpenCV thread each); results come back in frame order, so the
table does not depend on the number of workers.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.io import read_image
from pipeline.masks.common import proposals_to_rows
from pipeline.masks.handmask import hand_masks
from pipeline.schemas import MASKS
from pipeline.types import Hand, Proposal

_WORKER: dict = {}  # per worker process: its proposer, built once


def frame_proposals(proposer, image: np.ndarray, hands: list[Hand], masks_params) -> list[Proposal]:
    """The one proposal path of training (stage `masks`) and scoring (pipeline.predict): the backend's ranked
    object proposals, then one hand mask per hand (the backend's, else drawn as masks_params.hand_mask says)."""
    proposals = proposer(image, hands)
    objects = [p for p in proposals if p.kind != "hand"]
    found = [p for p in proposals if p.kind == "hand"]
    return objects + (found if found or not hands else hand_masks(image, hands, masks_params))


def _init_worker(backend: str, masks_params, common_params, parent: int) -> None:
    import cv2

    from pipeline.masks import build_proposer
    from pipeline.procs import die_with_parent

    die_with_parent(parent)  # a killed stage must not leave its workers running

    _WORKER["backend"], _WORKER["proposer"] = backend, build_proposer(masks_params, common_params)
    _WORKER["params"] = masks_params
    cv2.setNumThreads(1)  # the processes are the parallelism


def one_frame(job: tuple[str, Path, pd.DataFrame | None], proposer=None,
              masks_params=None) -> tuple[list[dict], float, float]:
    """MASKS rows of one frame, its wall seconds and its CPU seconds (this process only)."""
    from pipeline.hands import rows_to_hands

    fid, path, hand_rows = job
    image = read_image(path)
    hands = rows_to_hands(hand_rows) if hand_rows is not None else []
    t, c = time.perf_counter(), time.process_time()
    proposals = frame_proposals(proposer or _WORKER["proposer"], image, hands, masks_params or _WORKER["params"])
    rows = proposals_to_rows(fid, proposals, _WORKER.get("backend", ""))
    return rows, time.perf_counter() - t, time.process_time() - c


def propose_frames(frames: pd.DataFrame, frames_dir: Path, hands: pd.DataFrame, proposer, backend: str,
                   workers: int = 1, build_args: tuple | None = None) -> tuple[pd.DataFrame, dict]:
    """MASKS table for every frame, plus timing stats (s/frame: wall-clock of the whole run per frame;
    cpu_s/frame: process time spent proposing, summed over workers). `build_args` = (masks_params,
    common_params) lets each worker build its own proposer; without it everything runs in this process."""
    by_frame = {fid: rows for fid, rows in hands.groupby("frame_id", sort=False)}
    jobs = [(str(fid), Path(frames_dir) / rel, by_frame.get(fid))
            for fid, rel in zip(frames["frame_id"], frames["image_path"])]
    _WORKER["backend"] = backend
    if build_args is not None:
        _WORKER["params"] = build_args[0]
    else:
        from pipeline.params import MasksParams

        _WORKER["params"] = MasksParams()
    start = time.perf_counter()
    if workers > 1 and build_args is not None and len(jobs) > 1:
        ctx = mp.get_context("spawn")  # no inherited OpenCV/torch thread state
        with ProcessPoolExecutor(workers, ctx, initializer=_init_worker, initargs=(backend, *build_args, os.getpid())) as ex:
            results = list(tqdm(ex.map(one_frame, jobs), total=len(jobs), desc="masks", unit="frame"))
    else:
        results = [one_frame(j, proposer) for j in tqdm(jobs, desc="masks", unit="frame")]
    wall = time.perf_counter() - start
    df = pd.DataFrame([r for rows, _, _ in results for r in rows], columns=MASKS.columns)
    n = max(len(frames), 1)
    objects = int((df["kind"] == "object").sum()) if len(df) else 0
    return df, dict(frames=len(frames), proposals_per_frame=round(objects / n, 2), hand_masks=int(len(df) - objects),
                    workers=workers, s_per_frame=round(wall / n, 3),
                    cpu_s_per_frame=round(sum(c for _, _, c in results) / n, 3))

