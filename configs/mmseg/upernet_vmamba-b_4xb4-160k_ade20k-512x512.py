# UperNet 160k ADE20K 512x512, VMamba-B [s2l15] (VMamba README: 51.0 mIoU single-scale).
_base_ = './upernet_vmamba-t_4xb4-160k_ade20k-512x512.py'
pretrained = 'checkpoints/vmamba_base_in1k.pth'
model = dict(
    backbone=dict(arch='vmamba_base', drop_path_rate=0.6, init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
