# Mask R-CNN FPN 3x multi-scale + crop, VMamba-B [s2l15] (no official 3x number for B).
_base_ = './mask-rcnn_vmamba-t_fpn_ms-crop-3x_coco.py'
pretrained = 'checkpoints/vmamba_base_in1k.pth'
model = dict(
    backbone=dict(arch='vmamba_base', drop_path_rate=0.6, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
