# UperNet 160k ADE20K 512x512, VMamba-S [s2l15] (VMamba README: 50.6 mIoU single-scale).
_base_ = './upernet_vmamba-t_4xb4-160k_ade20k-512x512.py'
pretrained = 'checkpoints/vmamba_small_in1k.pth'
model = dict(
    backbone=dict(arch='vmamba_small', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)))
