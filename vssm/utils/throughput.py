"""Image throughput and peak memory of a model: inference and training steps, timed with CUDA events on a GPU.

Measurement (same for every model so peers compare): channels-first (N, 3, H, W) input, bf16 autocast on CUDA
(float32 on the CPU), warm-up iterations first, then the median of timed calls; training = forward +
cross-entropy backward + AdamW step under autocast with fp32 master weights. Three ways to run a model
(``MODES``): "eager", "compile" (``torch.compile`` of the model, compiled during the warm-up) and "graph"
(a step captured once in a CUDA graph and replayed). Peak memory is measured on CUDA only (None on the CPU).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

MODES = ("eager", "compile", "graph")


@dataclass
class Throughput:
    images_per_s: float
    peak_memory_gb: Optional[float]  # CUDA: peak allocated during the measurement; None on the CPU
    batch: int
    size: int


@dataclass(frozen=True)
class Defaults:
    """Batch and iteration counts for a device: a CPU gets one image and a few steps (a vssm model at batch 128
    takes hours there), a GPU the published batch-128 measurement."""

    batch: int
    warmup: int
    iters: int


def defaults(device: torch.device) -> Defaults:
    return Defaults(128, 10, 30) if device.type == "cuda" else Defaults(1, 1, 3)


def sweep_batch(size: int) -> int:
    """Batch for a resolution sweep on a GPU: 128 images at 224, fewer as pixels grow, 8 at 1024."""
    return 8 if size >= 1024 else max(8, int(128 * (224 / size) ** 2) // 8 * 8)


def create_for_size(name: str, size: int, **kwargs) -> nn.Module:
    """timm model for size x size inputs: models with a fixed input size (position embeddings, windows) are
    built with ``img_size=size`` (Swin with a window that tiles the last stage); the others as they are."""
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is not None and cfg.fixed_input_size:
        kwargs.setdefault("img_size", size)
        if name.startswith("swin") and size != 224:
            kwargs.setdefault("window_size", 7 if (size // 32) % 7 == 0 else size // 32)
    return timm.create_model(name, **kwargs)


def _time(step: Callable[[], None], warmup: int, iters: int, device: torch.device,
          progress: Optional[Callable[[int, int], None]] = None) -> float:
    """Median seconds of ``step`` over ``iters`` timed calls after ``warmup`` untimed ones."""
    if iters < 1 or warmup < 0:
        raise ValueError(f"iters, warmup: got {iters}, {warmup}, expected iters >= 1 and warmup >= 0")
    for i in range(warmup):
        step()
        if progress:
            progress(i + 1, warmup + iters)
    times = []
    for i in range(iters):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        if progress:
            progress(warmup + i + 1, warmup + iters)
    return statistics.median(times)


def _reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory_gb(device: torch.device) -> Optional[float]:
    return torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None


def _check_mode(mode: str, device: torch.device) -> None:
    if mode not in MODES:
        raise ValueError(f"mode: got {mode!r}, expected one of {MODES}")
    if mode == "graph" and device.type != "cuda":
        raise ValueError(f"mode: 'graph' (CUDA graph) needs a CUDA device, got {device}")


def measure_inference(model: nn.Module, batch: int, size: int, device: torch.device, *, warmup: int = 10,
                      iters: int = 30, dtype: torch.dtype = torch.bfloat16, mode: str = "eager",
                      progress: Optional[Callable[[int, int], None]] = None) -> Throughput:
    """Forward passes of a (batch, 3, size, size) input under autocast; images per second.

    ``mode="graph"``: capture one forward in a CUDA graph and time its replays (no per-op launch cost from
    Python; what serving code with a fixed batch shape gets). Needs CUDA and a model without host syncs.
    ``mode="compile"``: ``torch.compile(model)``, compiled during the warm-up (at least one warm-up call).
    """
    _check_mode(mode, device)
    model = model.to(device).eval()
    run = torch.compile(model) if mode == "compile" else model
    images = torch.randn(batch, 3, size, size, device=device)
    _reset_memory(device)

    def step() -> None:
        # no autocast weight cache: a captured graph must not keep casts from its warm-up
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda",
                                             cache_enabled=mode != "graph"):
            run(images)

    if mode == "graph":
        step = _captured(step, step, warmup)
    seconds = _time(step, max(warmup, 1) if mode == "compile" else warmup, iters, device, progress)
    return Throughput(batch / seconds, _peak_memory_gb(device), batch, size)


def _captured(warm_step: Callable[[], None], captured_step: Callable[[], None], warmup: int) -> Callable[[], None]:
    """Run ``warm_step`` on a side stream (kernel compilation, cached tables), capture ``captured_step`` in a
    CUDA graph, return the replay."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(max(3, warmup)):
            warm_step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured_step()
    return graph.replay


def measure_training(model: nn.Module, batch: int, size: int, device: torch.device, *, warmup: int = 5,
                     iters: int = 20, dtype: torch.dtype = torch.bfloat16, mode: str = "eager",
                     progress: Optional[Callable[[int, int], None]] = None) -> Throughput:
    """Forward + backward + AdamW step under autocast; images per second.

    ``mode="graph"``: capture the whole step (forward, backward, a capturable AdamW) in a CUDA graph and time its
    replays: the gradients live in the graph's memory and each replay overwrites them (PyTorch's whole-network
    capture), so no per-op launch cost from Python or autograd. Needs CUDA and a model without host syncs.
    ``mode="compile"``: ``torch.compile(model)`` (forward and backward graphs), compiled during the warm-up.
    """
    _check_mode(mode, device)
    model = model.to(device).train()
    run = torch.compile(model) if mode == "compile" else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, capturable=mode == "graph")
    images = torch.randn(batch, 3, size, size, device=device)
    num_classes = getattr(model, "num_classes", 1000) or 1000
    labels = torch.randint(0, num_classes, (batch,), device=device)
    _reset_memory(device)

    def forward_backward_update() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda",
                            cache_enabled=mode != "graph"):
            loss = nn.functional.cross_entropy(run(images).float(), labels)
        loss.backward()
        optimizer.step()

    def step() -> None:
        forward_backward_update()
        optimizer.zero_grad(set_to_none=True)

    if mode == "graph":  # the warm steps leave no gradients, so the captured backward allocates them in the graph
        step = _captured(step, forward_backward_update, warmup)
    seconds = _time(step, max(warmup, 1) if mode == "compile" else warmup, iters, device, progress)
    return Throughput(batch / seconds, _peak_memory_gb(device), batch, size)
