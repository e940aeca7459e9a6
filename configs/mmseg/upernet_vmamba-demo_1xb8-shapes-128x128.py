# The CPU demo: a reduced-width VMamba + a slim UperNet trained from scratch on the generated shapes dataset
# (128x128, 4 classes incl. background); tools/demo_mm.py runs it. mIoU with mmseg's IoUMetric.
_base_ = [
    'mmseg::_base_/models/upernet_swin.py', 'mmseg::_base_/default_runtime.py', './_base_/demo_shapes_semantic.py'
]
custom_imports = dict(imports=['vssm.mm'], allow_failed_imports=False)

max_iters = 250
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=(128, 128)),
    backbone=dict(
        _delete_=True,
        type='VMamba',
        arch='vmamba_tiny',
        out_indices=(0, 1, 2, 3),
        dims=[24, 48, 96, 192],
        depths=[1, 1, 2, 1],
        drop_path_rate=0.0),
    decode_head=dict(
        in_channels=[24, 48, 96, 192], channels=64, pool_scales=(1, 2, 4), dropout_ratio=0.0, num_classes=4,
        norm_cfg=norm_cfg),
    auxiliary_head=None)

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.002, betas=(0.9, 0.999), weight_decay=0.01),
    constructor='VssmOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=1.0),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=30, end=max_iters, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
