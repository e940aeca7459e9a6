# The CPU demo: a reduced-width VMamba + a slim Mask R-CNN FPN trained from scratch on the generated shapes
# dataset (128x128 images, objects of 20-48 px, 3 classes); tools/demo_mm.py runs it. bbox / segm mAP with
# mmdet's CocoMetric. Anchors start at 16 px (scale 4) to match the small objects.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py', 'mmdet::_base_/default_runtime.py',
    './_base_/demo_shapes_instance.py'
]
custom_imports = dict(imports=['vssm.mm'], allow_failed_imports=False)

max_iters = 300
width = 64
model = dict(
    backbone=dict(
        _delete_=True,
        type='VMamba',
        arch='vmamba_tiny',
        out_indices=(0, 1, 2, 3),
        dims=[24, 48, 96, 192],
        depths=[1, 1, 2, 1],
        drop_path_rate=0.0),
    neck=dict(in_channels=[24, 48, 96, 192], out_channels=width),
    rpn_head=dict(
        in_channels=width, feat_channels=width,
        anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(in_channels=width, fc_out_channels=256, num_classes=3),
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(num_convs=2, in_channels=width, conv_out_channels=width, num_classes=3)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=128)),
        rpn_proposal=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(sampler=dict(num=128), mask_size=28)),
    test_cfg=dict(
        rpn=dict(nms_pre=300, max_per_img=100),
        rcnn=dict(max_per_img=20)))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.001, betas=(0.9, 0.999), weight_decay=0.01),
    constructor='VssmOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=1.0),
    clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[int(max_iters * 0.8)], gamma=0.1)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
