# UperNet 160k on ADE20K 512x512 with VMamba-T [s1l8]: the Swin UperNet schedule (AdamW lr 6e-5, wd 0.01,
# 1500 linear warm-up iterations then poly decay) with 4 GPUs x 4 images, as the official VMamba segmentation
# configs (VMamba README: 47.9 mIoU single-scale).
_base_ = 'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'
custom_imports = dict(imports=['vssm.mm'], allow_failed_imports=False)

# The official ImageNet-1K classification file, downloaded by you; converted on load.
pretrained = 'checkpoints/vmamba_tiny_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='VMamba',
        arch='vmamba_tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01),
    constructor='VssmOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=1.0))

train_dataloader = dict(batch_size=4)
