"""`score` / `wish evaluate` / `wish predict`: the FrameContexts of images, perceived here, on the executor's
actors (`common.executor: ray`; pipeline.perceive.iter_perceptions) or read from stage `perceive`'s output. The
methods that choose among the proposals are cheap and run in the driver either way: same contexts, same
decisions, same metrics.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Iterator

from pipeline.perceive import Item, Perception, iter_perceptions
from pipeline.predict import FrameContext, Models

if TYPE_CHECKING:
    from pipeline.perceive import PerceptionCache


def iter_contexts(items: Iterable[Item], models: Models, params, with_regions: bool,
                  cache: "PerceptionCache | None" = None) -> Iterator[FrameContext]:
    """FrameContexts of `items`, in order: from `cache` (stage `perceive`'s output, already checked to cover every
    item: pipeline.perceive.usable_perception), perceived here (`executor: local`) or on the executor's actors."""
    if cache is not None:
        for image_id, image, narrations in items:
            seen = cache.perception(image_id)
            yield models.assemble(image_id, image, seen if with_regions else Perception(seen.hands, seen.proposals),
                                  narrations)
        return
    if params.common.executor != "ray":
        for image_id, image, narrations in items:
            yield models.context(image_id, image, narrations, with_regions)
        return
    for (image_id, image, narrations), seen in iter_perceptions(items, None, params, with_regions):
        yield models.assemble(image_id, image, seen, narrations)
