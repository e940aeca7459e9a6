# UperNet 160k on ADE20K 512x512 with PlainMamba-L1: blocks 5/11/17/23 + simple feature pyramid, AdamW lr 6e-5,
# wd 0.01 (the PlainMamba segmentation recipe; PlainMamba README: 44.1 mIoU), layer-wise lr decay 0.92,
# 4 GPUs x 4 images.
_base_ = 'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'
custom_imports = dict(imports=['vssm.mm'], allow_failed_imports=False)

pretrained = 'checkpoints/plainmamba_l1_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='PlainMamba',
        arch='plainmamba_l1',
        img_size=512,
        out_indices=(5, 11, 17, 23),
        drop_path_rate=0.2,
        pyramid_norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    decode_head=dict(in_channels=[192, 192, 192, 192], num_classes=150),
    auxiliary_head=dict(in_channels=192, num_classes=150))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01),
    constructor='VssmOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.92))

train_dataloader = dict(batch_size=4)
