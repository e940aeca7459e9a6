"""Small generated datasets used by demos and tests."""
from .demo_shapes import CLASSES, SEG_CLASSES, SEG_PALETTE, DemoShapesSpec, generate_demo_shapes

__all__ = ["CLASSES", "SEG_CLASSES", "SEG_PALETTE", "DemoShapesSpec", "generate_demo_shapes"]
