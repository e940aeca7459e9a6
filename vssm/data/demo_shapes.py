"""A tiny deterministic "shapes" dataset for the OpenMMLab demo and tests.

Each image is a noisy low-frequency grey background with 1-4 filled shapes (circle, square, triangle) drawn on top;
every class has its own hue band (with jitter), so a small model can learn it in minutes on a CPU. The same
images are written in two layouts:

* COCO instance format: ``coco/{train,val}/*.jpg`` + ``coco/annotations/instances_{train,val}.json``
  (polygon masks, or RLE where a later shape cut a hole or slivers; xywh boxes, 1-based category ids).
* ADE20K-style semantic format: ``ade/images/{training,validation}/*.jpg`` +
  ``ade/annotations/{training,validation}/*.png`` (uint8 label maps: 0 background, 1 circle, 2 square,
  3 triangle; 255 is not used).

The data is generated (not shipped): it is a pure function of ``seed`` and the sizes, takes well under a second,
and keeps binary files out of git. Total size is about 1 MB at the default sizes.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple, Union

import cv2
import numpy as np

CLASSES: Tuple[str, ...] = ("circle", "square", "triangle")
SEG_CLASSES: Tuple[str, ...] = ("background",) + CLASSES
SEG_PALETTE: Tuple[Tuple[int, int, int], ...] = ((0, 0, 0), (60, 90, 230), (60, 200, 60), (220, 60, 60))
# Centre hue per class on OpenCV's 0..179 scale: blue circles, green squares, red triangles. (With blue
# triangles and red circles, the small demo models learned no triangle pixels within the demo's budget.)
_CLASS_HUES: Tuple[int, ...] = (120, 60, 0)
SPLITS: Dict[str, str] = {"train": "training", "val": "validation"}


@dataclass(frozen=True)
class DemoShapesSpec:
    """Sizes of the generated dataset; the defaults are what the demo and tests use."""

    image_size: int = 128
    num_train: int = 64
    num_val: int = 16
    max_objects: int = 4
    min_object_size: int = 20
    max_object_size: int = 48
    seed: int = 0

    def __post_init__(self) -> None:
        if self.image_size < 2 * self.max_object_size:
            raise ValueError(
                f"image_size: got {self.image_size}, expected at least 2 * max_object_size = {2 * self.max_object_size}"
            )
        if not 0 < self.min_object_size <= self.max_object_size:
            raise ValueError(
                f"min_object_size: got {self.min_object_size}, expected 0 < min_object_size <= "
                f"max_object_size ({self.max_object_size})"
            )
        for name in ("num_train", "num_val", "max_objects"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: got {getattr(self, name)}, expected >= 1")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A (size, size, 3) uint8 BGR image: a smooth neutral-grey gradient plus per-channel pixel noise."""
    coarse = rng.uniform(70, 170, size=(4, 4)).astype(np.float32)
    smooth = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)[..., None].repeat(3, axis=2)
    noisy = smooth + rng.normal(0, 12, size=smooth.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _class_colour(rng: np.random.Generator, label: int) -> Tuple[int, int, int]:
    """A saturated BGR colour near the hue of ``label`` (0-based class index)."""
    hue = int((_CLASS_HUES[label] + rng.integers(-8, 9)) % 180)
    hsv = np.array([[[hue, rng.integers(150, 256), rng.integers(150, 256)]]], dtype=np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def _shape_mask(rng: np.random.Generator, label: int, size: int, extent: int) -> np.ndarray:
    """A (size, size) uint8 {0, 1} mask of one shape of class ``label`` with bounding extent ``extent``."""
    mask = np.zeros((size, size), dtype=np.uint8)
    x0, y0 = (int(v) for v in rng.integers(0, size - extent, size=2))
    if CLASSES[label] == "circle":
        cv2.circle(mask, (x0 + extent // 2, y0 + extent // 2), extent // 2, 1, thickness=-1)
    elif CLASSES[label] == "square":
        cv2.rectangle(mask, (x0, y0), (x0 + extent - 1, y0 + extent - 1), 1, thickness=-1)
    else:
        apex = (x0 + int(rng.integers(0, extent)), y0)
        pts = np.array([apex, (x0, y0 + extent - 1), (x0 + extent - 1, y0 + extent - 1)], dtype=np.int32)
        cv2.fillPoly(mask, [pts], 1)
    return mask


def _segmentation(mask: np.ndarray) -> Union[List[List[float]], Dict[str, Any]]:
    """COCO segmentation of a binary mask's visible pixels: polygons (flat x, y lists) when the filled outer
    contours reproduce the mask exactly; otherwise (a hole left by a later shape, slivers too thin for a
    polygon) compressed RLE, so the annotation never disagrees with the semantic map."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contours = [c for c in contours if len(c) >= 3]
    filled = cv2.drawContours(np.zeros_like(mask), contours, -1, 1, thickness=-1)
    if contours and np.array_equal(filled, mask):
        return [c.reshape(-1).astype(float).tolist() for c in contours]
    from pycocotools import mask as mask_utils  # installed with mmdet (the demo's extra), imported only here

    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _render(rng: np.random.Generator, spec: DemoShapesSpec) -> Tuple[np.ndarray, np.ndarray, List[dict]]:
    """One sample: BGR image (S, S, 3), semantic map (S, S) and per-instance dicts (label, visible mask)."""
    size = spec.image_size
    image = _background(rng, size)
    semantic = np.zeros((size, size), dtype=np.uint8)
    instance_ids = np.zeros((size, size), dtype=np.int32)
    labels: List[int] = []
    for obj in range(int(rng.integers(1, spec.max_objects + 1))):
        label = int(rng.integers(0, len(CLASSES)))
        extent = int(rng.integers(spec.min_object_size, spec.max_object_size + 1))
        mask = _shape_mask(rng, label, size, extent).astype(bool)
        image[mask] = _class_colour(rng, label)
        semantic[mask] = label + 1
        instance_ids[mask] = obj + 1
        labels.append(label)
    instances = []
    for obj, label in enumerate(labels):
        visible = (instance_ids == obj + 1).astype(np.uint8)
        if visible.sum() >= 16:  # an object mostly hidden by later ones is not annotated
            instances.append({"label": label, "mask": visible})
    return image, semantic, instances


def _coco_annotations(instances: List[dict], image_id: int, first_ann_id: int) -> List[dict]:
    """COCO annotation dicts (polygons, xywh box, area) for the instances of one image."""
    annotations = []
    for offset, inst in enumerate(instances):
        ys, xs = np.nonzero(inst["mask"])
        x, y = int(xs.min()), int(ys.min())
        w, h = int(xs.max()) - x + 1, int(ys.max()) - y + 1
        annotations.append(
            {
                "id": first_ann_id + offset,
                "image_id": image_id,
                "category_id": inst["label"] + 1,
                "segmentation": _segmentation(inst["mask"]),
                "area": float(inst["mask"].sum()),
                "bbox": [float(x), float(y), float(w), float(h)],
                "iscrowd": 0,
            }
        )
    return annotations


def generate_demo_shapes(root: str, spec: DemoShapesSpec = DemoShapesSpec()) -> Dict[str, str]:
    """Write the dataset under ``root`` (overwriting it) and return the two dataset roots.

    Returns ``{"coco": <root>/coco, "ade": <root>/ade}``. Same ``spec`` -> byte-identical files.
    """
    rng = np.random.default_rng(spec.seed)
    coco_root, ade_root = os.path.join(root, "coco"), os.path.join(root, "ade")
    os.makedirs(os.path.join(coco_root, "annotations"), exist_ok=True)
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(CLASSES)]
    for split, count in (("train", spec.num_train), ("val", spec.num_val)):
        ade_split = SPLITS[split]
        for folder in (os.path.join(coco_root, split), os.path.join(ade_root, "images", ade_split),
                       os.path.join(ade_root, "annotations", ade_split)):
            os.makedirs(folder, exist_ok=True)
        images, annotations = [], []
        for index in range(count):
            image, semantic, instances = _render(rng, spec)
            name = f"{split}_{index:04d}"
            encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])[1]
            for folder in (os.path.join(coco_root, split), os.path.join(ade_root, "images", ade_split)):
                encoded.tofile(os.path.join(folder, name + ".jpg"))
            cv2.imwrite(os.path.join(ade_root, "annotations", ade_split, name + ".png"), semantic)
            images.append({"id": index + 1, "file_name": name + ".jpg", "height": spec.image_size,
                           "width": spec.image_size})
            annotations += _coco_annotations(instances, index + 1, len(annotations) + 1)
        with open(os.path.join(coco_root, "annotations", f"instances_{split}.json"), "w") as f:
            json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    return {"coco": coco_root, "ade": ade_root}
