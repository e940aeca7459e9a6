# Mask R-CNN FPN 1x, VMamba-B [s2l15] (VMamba README: 49.2 box / 44.1 mask AP).
_base_ = './mask-rcnn_vmamba-t_fpn_1x_coco.py'
pretrained = 'checkpoints/vmamba_base_in1k.pth'
model = dict(
    backbone=dict(arch='vmamba_base', drop_path_rate=0.6, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
