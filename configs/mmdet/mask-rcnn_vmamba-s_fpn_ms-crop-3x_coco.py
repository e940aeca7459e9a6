# Mask R-CNN FPN 3x multi-scale + crop, VMamba-S [s2l15] (VMamba README: 49.9 box / 44.2 mask AP).
_base_ = './mask-rcnn_vmamba-t_fpn_ms-crop-3x_coco.py'
pretrained = 'checkpoints/vmamba_small_in1k.pth'
model = dict(
    backbone=dict(arch='vmamba_small', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)))
