"""OpenMMLab 2.x adapters (mmdet 3.x / mmsegmentation 1.x). Importing this module imports the toolkits.

Registers in ``MODELS`` of both toolkits: ``VMamba`` (hierarchical), ``Vim`` and ``PlainMamba`` (plain, with a
simple feature pyramid); in ``OPTIM_WRAPPER_CONSTRUCTORS``: ``VssmOptimWrapperConstructor`` (layer-wise lr
decay, no weight decay on SSM parameters and embeddings). Configs load it with
``custom_imports=dict(imports=['vssm.mm'], allow_failed_imports=False)``. ``import vssm`` does not import this.
"""
from .optim_constructor import VssmOptimWrapperConstructor
from .plain_backbone import PlainBackbone, PlainMamba, Vim
from .vmamba_backbone import VMamba

__all__ = ["VMamba", "Vim", "PlainMamba", "PlainBackbone", "VssmOptimWrapperConstructor"]
