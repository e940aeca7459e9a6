"""Image throughput and peak memory of a model: inference and training steps, timed with CUDA events.

Measurement (same for every model so peers compare): channels-first (N, 3, H, W) input, bf16 autocast on CUDA
(float32 on the CPU),
warm-up iterations first, then the median of timed windows; training = forward + cross-entropy backward +
AdamW step under autocast with fp32 master weights.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn


@dataclass
class Throughput:
    images_per_s: float
    peak_memory_gb: float
    batch: int
    size: int


def _time(step: Callable[[], None], warmup: int, iters: int, device: torch.device,
          progress: Optional[Callable[[int, int], None]] = None) -> float:
    """Median seconds of ``step`` over ``iters`` timed calls after ``warmup`` untimed ones."""
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
            import time

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


def _peak_memory_gb(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else float("nan")


def measure_inference(model: nn.Module, batch: int, size: int, device: torch.device, *, warmup: int = 10,
                      iters: int = 30, dtype: torch.dtype = torch.bfloat16, cuda_graph: bool = False,
                      progress: Optional[Callable[[int, int], None]] = None) -> Throughput:
    """Forward passes of a (batch, 3, size, size) input under autocast; images per second.

    ``cuda_graph``: capture one forward in a CUDA graph and time its replays (no per-op launch cost from
    Python; what serving code with a fixed batch shape gets). Needs CUDA and a model without host syncs.
    """
    model = model.to(device).eval()
    images = torch.randn(batch, 3, size, size, device=device)
    _reset_memory(device)

    def step() -> None:
        # no autocast weight cache: a captured graph must not keep casts from its warm-up
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda",
                                             cache_enabled=not cuda_graph):
            model(images)

    if cuda_graph:
        step = _captured(device, step, step, warmup)
    seconds = _time(step, warmup, iters, device, progress)
    return Throughput(batch / seconds, _peak_memory_gb(device), batch, size)


def _captured(device: torch.device, warm_step: Callable[[], None], captured_step: Callable[[], None],
              warmup: int) -> Callable[[], None]:
    """Run ``warm_step`` on a side stream (kernel compilation, cached tables), capture ``captured_step`` in a
    CUDA graph, return the replay."""
    if device.type != "cuda":
        raise ValueError(f"cuda_graph: needs a CUDA device, got {device}")
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
                     iters: int = 20, dtype: torch.dtype = torch.bfloat16, cuda_graph: bool = False,
                     progress: Optional[Callable[[int, int], None]] = None) -> Throughput:
    """Forward + backward + AdamW step under autocast; images per second.

    ``cuda_graph``: capture the whole step (forward, backward, a capturable AdamW) in a CUDA graph and time its
    replays: the gradients live in the graph's memory and each replay overwrites them (PyTorch's whole-network
    capture), so no per-op launch cost from Python or autograd. Needs CUDA and a model without host syncs.
    """
    model = model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, capturable=cuda_graph)
    images = torch.randn(batch, 3, size, size, device=device)
    num_classes = getattr(model, "num_classes", 1000) or 1000
    labels = torch.randint(0, num_classes, (batch,), device=device)
    _reset_memory(device)

    def forward_backward_update() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda", cache_enabled=not cuda_graph):
            loss = nn.functional.cross_entropy(model(images).float(), labels)
        loss.backward()
        optimizer.step()

    def step() -> None:
        forward_backward_update()
        optimizer.zero_grad(set_to_none=True)

    if cuda_graph:  # the warm steps leave no gradients, so the captured backward allocates them in the graph
        step = _captured(device, step, forward_backward_update, warmup)
    seconds = _time(step, warmup, iters, device, progress)
    return Throughput(batch / seconds, _peak_memory_gb(device), batch, size)
