# UperNet 160k on ADE20K 512x512 with Vim-S: blocks 5/11/17/23 + simple feature pyramid, AdamW lr 1e-4,
# wd 0.05, layer-wise lr decay 0.92 (the Vim segmentation recipe, which trains 60k iterations; 160k here as for
# the other backbones), 4 GPUs x 4 images.
_base_ = 'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'
custom_imports = dict(imports=['vssm.mm'], allow_failed_imports=False)

pretrained = 'checkpoints/vim_small_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='Vim',
        arch='vim_small',
        img_size=512,
        out_indices=(5, 11, 17, 23),
        drop_path_rate=0.1,
        pyramid_norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[384, 384, 384, 384], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='VssmOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.92))

train_dataloader = dict(batch_size=4)
