# Mask R-CNN FPN 1x on COCO with Vim-S: blocks 5/11/17/23 tapped and turned into strides 4-32 by a simple
# feature pyramid (deconv / identity / max-pool); AdamW lr 1e-4, wd 0.05, layer-wise lr decay 0.92 (Vim's
# segmentation recipe), 12 epochs, 8 GPUs x 2 images. Vim's own detection code is detectron2 ViTDet, not mmdet.
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'
custom_imports = dict(imports=['vssm.mm'], allow_failed_imports=False)

pretrained = 'checkpoints/vim_small_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='Vim',
        arch='vim_small',
        out_indices=(5, 11, 17, 23),
        drop_path_rate=0.1,
        pyramid_norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[384, 384, 384, 384]))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='VssmOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.92))
