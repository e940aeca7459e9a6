# Mask R-CNN FPN 1x on COCO with PlainMamba-L1: blocks 5/11/17/23 + simple feature pyramid (the official
# PlainMamba detector uses a ViT-Adapter instead: 44.1 box / 39.1 mask AP). AdamW lr 1e-4, wd 0.05, layer decay
# 0.92, 12 epochs, 8 GPUs x 2 images.
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'
custom_imports = dict(imports=['vssm.mm'], allow_failed_imports=False)

pretrained = 'checkpoints/plainmamba_l1_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='PlainMamba',
        arch='plainmamba_l1',
        out_indices=(5, 11, 17, 23),
        drop_path_rate=0.2,
        pyramid_norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[192, 192, 192, 192]))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='VssmOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.92))
