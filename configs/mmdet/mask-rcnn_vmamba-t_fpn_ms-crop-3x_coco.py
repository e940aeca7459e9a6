# Mask R-CNN FPN 3x with multi-scale + crop training (Swin's 36-epoch recipe), VMamba-T [s1l8]
# (VMamba README: 48.8 box / 43.7 mask AP).
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py'
custom_imports = dict(imports=['vssm.mm'], allow_failed_imports=False)

pretrained = 'checkpoints/vmamba_tiny_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='VMamba',
        arch='vmamba_tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='VssmOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=1.0))
