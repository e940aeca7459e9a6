# make demo / make test: all set-up on a fresh machine (Python 3.11, CPU only, package registries only).
# A GPU user keeps their own torch: `make test TORCH_REQ=` skips the torch install when torch imports.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch 2.14.1 + torchvision 0.29.1: the newest pair whose torchvision imports beside torch (timm needs it).
TORCH_REQ ?= torch==2.14.1 torchvision==0.29.1
# mmcv 2.1.0 (what mmdet 3.3 / mmseg 1.2 accept) has no wheel: built once with its CPU ops, then reused
# from pip's wheel cache. tools/install/cxx20.sh lets its setup.py compile against torch's C++20 headers.
MMCV_REQ ?= mmcv==2.1.0
BUILD_TOOLS := "setuptools>=61,<80" wheel ninja
INSTALLED := $(VENV)/.vssm-installed

.PHONY: demo test install clean

install: $(INSTALLED)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): $(PY) setup.cfg pyproject.toml
	@$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install $(TORCH_REQ)
	$(PY) -m pip install -q $(BUILD_TOOLS)
	@$(PY) -c "import mmcv.ops" 2>/dev/null || \
	  MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=$$(nproc) CXX=$(CURDIR)/tools/install/cxx20.sh \
	  $(PY) -m pip install --no-build-isolation $(MMCV_REQ)
	$(PY) -m pip install --no-build-isolation -e ".[mm,test]"
	touch $@

test: $(INSTALLED)
	$(PY) -m pytest

# `make demo DEMO_ARGS=--full` trains the configs' full schedules (a few minutes more).
demo: $(INSTALLED)
	$(PY) tools/demo_mm.py $(DEMO_ARGS)

clean:
	rm -rf $(VENV)
