"""SAM / MobileSAM / hand-guided SAM / Grounded SAM backends with tiny random models (no weights offline)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from pipeline import rle
from pipeline.errors import WishError
from pipeline.masks import build_proposer
from pipeline.masks.gsam import (Detection, GsamProposer, LabelledProposal, chunk_prompts, load_taxonomy, map_phrase,
                                 to_phrase)
from pipeline.masks.mobile_sam import build_mobile_sam
from pipeline.masks.sam import (CachedPredictor, SamGridProposer, SamHandsProposer, build_sam, ring_points,
                                select_masks)
from pipeline.params import CommonParams, GsamParams, MasksParams, SamParams
from pipeline.types import Hand

NOUNS = Path("../shared/data/epic/annotations/EPIC_100_noun_classes_v2.csv")
KEYS = Path(__file__).parent / "data" / "mobile_sam_image_encoder_keys.txt"
CPU = CommonParams(device="cpu")
LOOSE = SamParams(pred_iou_thresh=-100.0, stability_score_thresh=0.0, points_per_side=4, points_per_batch=8,
                  hand_rings=[0.6, 1.0], hand_points_per_ring=4)


def tiny_sam(img_size: int = 256, dim: int = 32) -> Sam:
    """SAM's own modules at toy size: 16x16 embedding grid, one windowed encoder block."""
    torch.manual_seed(0)
    grid = img_size // 16
    enc = ImageEncoderViT(img_size=img_size, patch_size=16, embed_dim=dim, depth=1, num_heads=2, mlp_ratio=2,
                          out_chans=dim, qkv_bias=True, use_rel_pos=True, window_size=4, global_attn_indexes=())
    return Sam(image_encoder=enc,
               prompt_encoder=PromptEncoder(embed_dim=dim, image_embedding_size=(grid, grid),
                                            input_image_size=(img_size, img_size), mask_in_chans=4),
               mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer_dim=dim, iou_head_depth=2,
                                        iou_head_hidden_dim=dim,
                                        transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64,
                                                                      num_heads=2)),
               pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375]).eval()


def count_encodings(model: Sam) -> list[int]:
    calls = [0]
    model.image_encoder.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.fixture
def image() -> np.ndarray:
    img = np.full((96, 128, 3), 90, np.uint8)
    img[20:60, 30:70] = (200, 40, 40)
    img[50:90, 80:120] = (40, 200, 60)
    return img


def hand(hid: int, side: str, x0: float, y0: float) -> Hand:
    lm = np.stack(np.meshgrid(np.linspace(x0 + 2, x0 + 18, 7), np.linspace(y0 + 2, y0 + 18, 3)), -1).reshape(-1, 2)
    return Hand(hand_id=hid, side=side, score=0.9, box=(x0, y0, x0 + 20, y0 + 20), landmarks=lm.astype(np.float32))


# --- hand-guided prompts -----------------------------------------------------------------------------------

def test_ring_points_geometry():
    h = Hand(hand_id=0, side="left", score=1, box=(40, 40, 60, 50))  # centre (50, 45), longer side 20
    pts = ring_points(h, [0.6, 1.0], 8, height=200, width=200)
    assert pts.shape == (16, 2)
    r = np.hypot(pts[:, 0] - 50, pts[:, 1] - 45)
    np.testing.assert_allclose(r[:8], 12, atol=1e-4)
    np.testing.assert_allclose(r[8:], 20, atol=1e-4)
    edge = ring_points(Hand(hand_id=0, side="left", score=1, box=(0, 0, 10, 10)), [1.5], 6, 30, 40)
    assert (edge >= 0).all() and (edge[:, 0] <= 39).all() and (edge[:, 1] <= 29).all()


def test_select_masks_filters_ranks_and_suppresses():
    logits = torch.full((4, 20, 20), -10.0)
    logits[0, 2:10, 2:10] = 10   # good
    logits[1, 2:10, 2:11] = 10   # near-duplicate of 0 with lower IoU: suppressed by NMS
    logits[2, 12:18, 12:18] = 10  # separate
    logits[3, 0:5, 15:20] = 10    # predicted IoU below threshold
    iou = torch.tensor([0.95, 0.9, 0.8, 0.1])
    p = SamParams(pred_iou_thresh=0.5, stability_score_thresh=0.9, box_nms_thresh=0.7)
    out = select_masks(logits, iou, p, 0.0, max_n=10)
    assert [int(o.mask.sum()) for o in out] == [64, 36]
    assert out[0].score == pytest.approx(0.95) and out[1].score == pytest.approx(0.8)
    assert len(select_masks(logits, iou, p, 0.0, max_n=1)) == 1


def test_cached_predictor_embeds_each_frame_once(image):
    sam = tiny_sam()
    calls, pred = count_encodings(sam), CachedPredictor(sam)
    with torch.inference_mode():
        pred.set_image(image)
        first = pred.features.clone()
        pred.reset_image()
        pred.set_image(image.copy())
        assert calls[0] == 1 and torch.equal(pred.features, first)
        pred.set_image(image[::-1].copy())
    assert calls[0] == 2


def test_sam_hands_proposer(image):
    sam = tiny_sam()
    calls = count_encodings(sam)
    hands = [hand(0, "left", 10, 60), hand(1, "right", 95, 10)]
    props = SamHandsProposer(sam, MasksParams(backend="sam_hands", max_proposals=5, sam=LOOSE))(image, hands)
    hand_props = [p for p in props if p.kind == "hand"]
    objects = [p for p in props if p.kind == "object"]
    assert [(p.side, p.hand_id) for p in hand_props] == [("left", 0), ("right", 1)]
    assert 1 <= len(objects) <= 5 and calls[0] == 1
    assert all(p.mask.shape == image.shape[:2] and p.mask.dtype == bool for p in props)
    assert [p.score for p in objects] == sorted([p.score for p in objects], reverse=True)
    boxes = [rle.box(p.mask) for p in objects]
    for i in range(len(boxes)):
        for j in range(i):
            assert box_iou(boxes[i], boxes[j]) <= LOOSE.box_nms_thresh + 1e-6
    assert SamHandsProposer(sam, MasksParams(sam=LOOSE))(image, []) == []


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_sam_grid_proposer_shares_the_embedding(image):
    sam = tiny_sam()
    calls = count_encodings(sam)
    proposer = SamGridProposer(sam, MasksParams(backend="sam", max_proposals=3, sam=LOOSE))
    props = proposer(image, [hand(0, "left", 10, 60)])
    assert props[0].kind == "hand" and 1 <= len(props) - 1 <= 3 and calls[0] == 1
    scores = [p.score for p in props[1:]]
    assert scores == sorted(scores, reverse=True)


# --- MobileSAM -------------------------------------------------------------------------------------------

def test_mobile_sam_matches_official_key_names():
    expected = [k for k in KEYS.read_text().splitlines() if k and not k.startswith("#")]
    got = [k for k in build_mobile_sam(256).state_dict() if k.startswith("image_encoder.")]
    assert got == expected


def test_mobile_sam_encoder_shape_and_checkpoint_roundtrip(tmp_path):
    small = build_mobile_sam(128)
    with torch.inference_mode():  # stride 4, 2, 2, then 1: a 1/16 grid, 256 channels, as SAM's decoder expects
        assert small.image_encoder(torch.zeros(1, 3, 128, 128)).shape == (1, 256, 8, 8)
    ckpt = tmp_path / "mobile_sam.pt"
    torch.save(small.state_dict(), ckpt)  # weights do not depend on the input size
    loaded = build_sam(SamParams(model_type="mobile_sam", checkpoint=str(ckpt)), CPU)
    assert loaded.image_encoder.img_size == 1024
    ref, got = small.state_dict(), loaded.state_dict()
    assert set(ref) == set(got) and all(torch.equal(ref[k], got[k]) for k in ref)
    # identical weights -> identical masks: run both decoders on the same (small) embedding and prompt
    emb = torch.randn(1, 256, 8, 8)
    with torch.inference_mode():
        sparse, dense = small.prompt_encoder(None, torch.tensor([[10.0, 20.0, 100.0, 90.0]]), None)
        outs = [m.mask_decoder(emb, small.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output=True)
                for m in (small, loaded)]
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


# --- clear errors without weights ------------------------------------------------------------------------

@pytest.mark.parametrize("backend,model_type", [("sam", "vit_b"), ("sam_hands", "vit_h"), ("sam", "mobile_sam")])
def test_sam_backends_fail_clearly_offline(backend, model_type, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    mp = MasksParams(backend=backend, sam=SamParams(model_type=model_type))
    with pytest.raises(WishError, match="masks.sam.checkpoint") as e:
        build_proposer(mp, CommonParams(device="cpu", allow_download=False))
    assert ("mobile_sam.pt" if model_type == "mobile_sam" else f"sam_{model_type}") in str(e.value)


def test_gsam_fails_clearly_without_detector(tmp_path, monkeypatch):
    pytest.importorskip("pipeline.masks.gsam")
    try:
        import groundingdino  # noqa: F401
        pytest.skip("groundingdino installed: the missing-weights path is covered by resolve_checkpoint")
    except ImportError:
        pass
    with pytest.raises(WishError, match="masks.gsam.detector_checkpoint") as e:
        build_proposer(MasksParams(backend="gsam"), CPU)
    assert "pip install groundingdino-py" in str(e.value)


# --- Grounded SAM: taxonomy and plumbing -----------------------------------------------------------------

def test_taxonomy_from_epic_noun_classes():
    tax = load_taxonomy(NOUNS)
    assert len(tax.ids) == 305 and tax.key_of(0) == "tap"
    assert to_phrase("board:chopping") == "chopping board" and tax.vocab["chopping board"] == tax.keys.index(
        "board:chopping")
    full = load_taxonomy(NOUNS, use_instances=True)
    assert full.vocab["water tap"] == 0 and full.vocab["teaspoon"] == 1 and len(full.vocab) > 2 * len(tax.vocab)
    assert map_phrase("chopping board", tax.vocab) == tax.vocab["chopping board"]
    assert map_phrase("a wooden spoon .", tax.vocab) == 1  # longest vocabulary phrase inside the detection
    assert map_phrase("spaceship", tax.vocab) is None
    with pytest.raises(WishError, match="noun_classes_csv"):
        load_taxonomy(Path("/nonexistent.csv"))


def test_prompt_chunks_respect_token_limit():
    tax = load_taxonomy(NOUNS)
    chunks = chunk_prompts(list(tax.vocab), max_tokens=64)
    assert chunks[0].startswith("tap . spoon . plate .") and all(c.endswith(" .") for c in chunks)
    assert all(2 + sum(len(p.split()) + 1 for p in c[:-2].split(" . ")) <= 64 for c in chunks)
    assert [p for c in chunks for p in c[:-2].split(" . ")] == list(tax.vocab)
    assert len(chunk_prompts(["a", "b"], 256)) == 1


def test_gsam_boxes_to_masks_to_labels(image):
    tax = load_taxonomy(NOUNS)
    captions = []

    def detector(img: np.ndarray, caption: str) -> list[Detection]:
        captions.append(caption)
        if "knife" not in caption.split(" . "):
            return []
        return [Detection((30, 20, 70, 60), 0.9, "knife"), Detection((31, 21, 70, 60), 0.5, "knife"),
                Detection((80, 50, 120, 90), 0.7, "chopping board"), Detection((0, 0, 10, 10), 0.99, "gizmo")]

    sam = tiny_sam()
    calls = count_encodings(sam)
    gp = GsamParams(noun_classes_csv=str(NOUNS), max_text_tokens=128)
    proposer = GsamProposer(sam, detector, tax, MasksParams(backend="gsam", gsam=gp, max_proposals=10))
    props = proposer(image, [hand(0, "left", 10, 60)])
    assert captions == proposer.captions and len(captions) > 1 and calls[0] == 1
    assert props[0].kind == "hand"
    objects = props[1:]
    assert all(isinstance(p, LabelledProposal) for p in objects)
    assert sorted((p.class_key, p.class_id) for p in objects) == [("board:chopping", tax.vocab["chopping board"]),
                                                                  ("knife", 4)]  # duplicate knife suppressed
    assert all(p.mask.shape == image.shape[:2] for p in objects)
    assert [p.score for p in objects] == sorted([p.score for p in objects], reverse=True)
