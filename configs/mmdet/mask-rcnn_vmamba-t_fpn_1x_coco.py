# Mask R-CNN FPN 1x on COCO with VMamba-T [s1l8]: the Swin-T schedule (12 epochs, AdamW lr 1e-4, wd 0.05,
# 8 GPUs x 2 images), as in the official VMamba detection configs (VMamba README: 47.3 box / 42.7 mask AP).
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'
custom_imports = dict(imports=['vssm.mm'], allow_failed_imports=False)

# The official ImageNet-1K classification file (e.g. the VMamba release for T[s1l8]), downloaded by you;
# its keys are converted by vssm.models.vmamba.checkpoint_filter_fn. vssm never downloads weights.
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

# No weight decay on norms, biases, A_log, D (VssmOptimWrapperConstructor); no layer decay (hierarchical).
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='VssmOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=1.0))
