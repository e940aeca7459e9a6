"""Test set-up: Triton kernels run under the interpreter on machines without CUDA; GPU tests skip."""
import os

import pytest
import torch

if not torch.cuda.is_available():
    # Must be set before any Triton kernel module is imported (the decorator reads it).
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none found)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
