# Mask R-CNN FPN 1x, VMamba-S [s2l15] (VMamba README: 48.7 box / 43.7 mask AP).
_base_ = './mask-rcnn_vmamba-t_fpn_1x_coco.py'
pretrained = 'checkpoints/vmamba_small_in1k.pth'
model = dict(
    backbone=dict(arch='vmamba_small', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)))
