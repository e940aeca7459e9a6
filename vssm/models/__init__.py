"""Model families, registered with timm on import."""
from . import vmamba  # noqa: F401
