"""tools/train.py and tools/test.py on the generated demo data: one training iteration, one validation pass, and
a checkpoint -> tools/test.py round trip that reproduces the validation metric (det and seg)."""
import os

import numpy as np
import pytest

pytest.importorskip("mmdet")
pytest.importorskip("mmseg")

from mmengine.runner import Runner  # noqa: E402

from tools import test as test_tool  # noqa: E402
from tools import train as train_tool  # noqa: E402
from vssm.data import DemoShapesSpec, generate_demo_shapes  # noqa: E402
from vssm.mm.checkpoint_io import mmengine_checkpoint_globals  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CASES = {
    "seg": ("configs/mmseg/upernet_vmamba-demo_1xb8-shapes-128x128.py", "ade", ("mIoU", "aAcc")),
    "det": ("configs/mmdet/mask-rcnn_vmamba-demo_fpn_1xb4-shapes-128x128.py", "coco",
            ("coco/bbox_mAP", "coco/segm_mAP")),
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_data")
    generate_demo_shapes(str(root), DemoShapesSpec(num_train=4, num_val=2, seed=int(np.random.randint(0, 2**31))))
    return str(root)


def _data_options(task: str, data_root: str):
    root = os.path.join(data_root, CASES[task][1])
    options = [f"{split}_dataloader.dataset.data_root={root}" for split in ("train", "val", "test")]
    if task == "det":
        ann = os.path.join(root, "annotations", "instances_val.json")
        options += [f"val_evaluator.ann_file={ann}", f"test_evaluator.ann_file={ann}"]
    return options


@pytest.mark.parametrize("task", sorted(CASES))
def test_one_iteration_validation_and_checkpoint_round_trip(task, data_root, tmp_path):
    config, _, keys = CASES[task]
    seed = int(np.random.randint(0, 2**31))
    args = train_tool.parse_args([
        os.path.join(REPO, config), "--work-dir", str(tmp_path), "--cfg-options",
        "train_cfg.max_iters=1", "train_cfg.val_interval=1", "default_hooks.checkpoint.interval=1",
        "train_dataloader.batch_size=2", "param_scheduler=[]", f"randomness.seed={seed}",
        *_data_options(task, data_root),
    ])
    runner = Runner.from_cfg(train_tool.build_config(args))
    with mmengine_checkpoint_globals():
        runner.train()
    losses = runner.message_hub.get_scalar("train/loss").data[0]
    assert len(losses) == 1 and np.isfinite(losses).all()
    val_metrics = {key: runner.message_hub.get_scalar(f"val/{key}").current() for key in keys}
    checkpoint = os.path.join(str(tmp_path), "iter_1.pth")
    assert os.path.isfile(checkpoint)
    # A different seed: if test.py did not load the checkpoint, the fresh init would give other numbers.
    test_metrics = test_tool.main([
        os.path.join(REPO, config), checkpoint, "--work-dir", str(tmp_path / "test"), "--cfg-options",
        f"randomness.seed={seed + 1}", *_data_options(task, data_root),
    ])
    for key in keys:
        assert test_metrics[key] == pytest.approx(val_metrics[key], abs=1e-6), key


def test_test_tool_rejects_a_missing_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="checkpoint"):
        test_tool.main([os.path.join(REPO, CASES["seg"][0]), str(tmp_path / "missing.pth")])


def _amp_config(*extra):
    return train_tool.build_config(train_tool.parse_args([os.path.join(REPO, CASES["det"][0]), *extra]))


def test_amp_defaults_to_bfloat16_and_float16_is_opt_in():
    assert _amp_config().optim_wrapper.type == "OptimWrapper"
    wrapper = _amp_config("--amp").optim_wrapper
    assert (wrapper.type, wrapper.dtype, wrapper.loss_scale) == ("AmpOptimWrapper", "bfloat16", "dynamic")
    assert _amp_config("--amp", "--amp-dtype", "float16").optim_wrapper.dtype == "float16"
    # a dtype the config chose stays unless --amp-dtype says otherwise
    assert _amp_config("--amp", "--cfg-options", "optim_wrapper.dtype=float16").optim_wrapper.dtype == "float16"
    assert _amp_config("--amp", "--amp-dtype", "bfloat16", "--cfg-options",
                       "optim_wrapper.dtype=float16").optim_wrapper.dtype == "bfloat16"
    with pytest.raises(SystemExit):
        train_tool.parse_args([CASES["det"][0], "--amp-dtype", "float16"])  # only with --amp
    with pytest.raises(SystemExit):
        train_tool.parse_args([CASES["det"][0], "--amp", "--amp-dtype", "float32"])


def test_tools_take_trust_checkpoint():
    assert train_tool.parse_args([CASES["det"][0], "--trust-checkpoint"]).trust_checkpoint
    assert not train_tool.parse_args([CASES["det"][0]]).trust_checkpoint
    assert test_tool.parse_args([CASES["det"][0], "x.pth", "--trust-checkpoint"]).trust_checkpoint


def test_bfloat16_amp_moves_roi_align_to_torchvision_and_refuses_sigmoid_focal_loss():
    """mmcv 2.1.0's CUDA RoIAlign has no bfloat16 kernel (the H200 Mask R-CNN run stopped there): under --amp
    bfloat16 every RoIAlign layer uses torchvision's, which gives mmcv's answer; float16 keeps mmcv's; a
    RetinaNet-style sigmoid focal loss is refused with the way out."""
    import torch
    from mmcv.ops import RoIAlign

    from vssm.mm.amp import adapt_to_bfloat16

    cfg = _amp_config("--amp")
    layers = [cfg.model.roi_head.bbox_roi_extractor.roi_layer, cfg.model.roi_head.mask_roi_extractor.roi_layer]
    assert all(layer.use_torchvision for layer in layers)
    assert not _amp_config("--amp", "--amp-dtype", "float16").model.roi_head.bbox_roi_extractor.roi_layer.get(
        "use_torchvision", False)
    x = torch.randn(2, 8, 20, 24)
    rois = torch.tensor([[0, 1.3, 2.2, 15.7, 11.1], [1, 0, 0, 23.9, 19.9], [1, 5.5, 3.3, 6.1, 4.0]])
    for sampling in (0, 2):
        mmcv_out = RoIAlign(7, 0.5, sampling, aligned=True)(x, rois)
        torch.testing.assert_close(RoIAlign(7, 0.5, sampling, aligned=True, use_torchvision=True)(x, rois), mmcv_out)
    with pytest.raises(ValueError, match=r"model.bbox_head.loss_cls \(FocalLoss\).*--amp-dtype float16"):
        adapt_to_bfloat16(dict(bbox_head=dict(loss_cls=dict(type="mmdet.FocalLoss", use_sigmoid=True))))
