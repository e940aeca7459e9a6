"""The generated demo dataset: deterministic, small, and consistent between its COCO and ADE-style layouts."""
import filecmp
import json
import os

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from vssm.data import DemoShapesSpec, generate_demo_shapes


@pytest.fixture
def spec() -> DemoShapesSpec:
    return DemoShapesSpec(num_train=6, num_val=3, seed=int(np.random.randint(0, 2**31)))


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path, spec):
    a = generate_demo_shapes(str(tmp_path / "a"), spec)
    generate_demo_shapes(str(tmp_path / "b"), spec)
    other = DemoShapesSpec(num_train=6, num_val=3, seed=spec.seed + 1)
    generate_demo_shapes(str(tmp_path / "c"), other)
    names = _files(tmp_path / "a")
    assert names == _files(tmp_path / "b")
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", names, shallow=False)
    assert not mismatch and not errors
    _, mismatch_c, _ = filecmp.cmpfiles(tmp_path / "a", tmp_path / "c", names, shallow=False)
    assert mismatch_c
    assert a == {"coco": str(tmp_path / "a" / "coco"), "ade": str(tmp_path / "a" / "ade")}


def test_default_dataset_is_under_5_mb(tmp_path):
    generate_demo_shapes(str(tmp_path), DemoShapesSpec())
    total = sum(os.path.getsize(tmp_path / name) for name in _files(tmp_path))
    assert total < 5 * 2**20


def test_coco_masks_match_semantic_maps(tmp_path, spec):
    check_coco_matches_semantic(tmp_path, spec)


@pytest.mark.parametrize("seed", [55, 76])
def test_holes_and_slivers_are_annotated_exactly(tmp_path, seed):
    """Seed 55 has a shape cut into slivers too thin for a polygon, seed 76 one with a hole cut by a later shape:
    their masks come as RLE and still agree with the semantic map."""
    check_coco_matches_semantic(tmp_path, DemoShapesSpec(num_train=6, num_val=3, seed=seed))


def check_coco_matches_semantic(tmp_path, spec):
    roots = generate_demo_shapes(str(tmp_path), spec)
    for split, ade_split, count in (("train", "training", spec.num_train), ("val", "validation", spec.num_val)):
        with open(os.path.join(roots["coco"], "annotations", f"instances_{split}.json")) as f:
            coco = json.load(f)
        assert len(coco["images"]) == count
        assert {c["name"] for c in coco["categories"]} == {"circle", "square", "triangle"}
        for info in coco["images"]:
            size = spec.image_size
            semantic = cv2.imread(
                os.path.join(roots["ade"], "annotations", ade_split, info["file_name"].replace(".jpg", ".png")),
                cv2.IMREAD_GRAYSCALE,
            )
            image = cv2.imread(os.path.join(roots["coco"], split, info["file_name"]))
            assert image.shape == (size, size, 3) and semantic.shape == (size, size)
            anns = [a for a in coco["annotations"] if a["image_id"] == info["id"]]
            assert anns, "every image has at least one annotated object"
            for ann in anns:
                seg = ann["segmentation"]
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, size, size)) if isinstance(seg, list) else seg
                mask = mask_utils.decode(rle).astype(bool)
                # polygon rasterisation may differ from the painted mask on the outline only: every pixel
                # at least one pixel inside the polygon must carry the annotation's class
                interior = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
                assert (semantic[interior] == ann["category_id"]).all()
                x, y, w, h = ann["bbox"]
                assert 0 <= x and 0 <= y and x + w <= size and y + h <= size and w > 0 and h > 0


@pytest.mark.parametrize(
    "kwargs, name",
    [(dict(image_size=50), "image_size"), (dict(min_object_size=60), "min_object_size"), (dict(num_val=0), "num_val")],
)
def test_bad_spec_raises_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DemoShapesSpec(**kwargs)
