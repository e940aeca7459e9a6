"""Triton backend vs the float64 reference: on the CPU under TRITON_INTERPRET=1 at tiny shapes (CI), and on
CUDA (marked gpu) at real sizes, all dtypes, poisoned outputs and bit-identical reruns. Kernel variants are
chosen per call (KernelConfig); the offsets into the large buffers are checked in int64 at benchmark sizes."""
import os
from types import SimpleNamespace

import pytest
import torch

from vssm.kernels import BACKENDS, KernelConfig, Routes, as_routes, kernel_config, selective_scan, selective_scan_reference
from vssm.kernels import triton_scan
from vssm.kernels.checks import ScanSizes

from .scan_inputs import TOLERANCES, as_float64, assert_close, random_problem

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.skipif(
    DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET") != "1",
    reason="Triton needs CUDA or TRITON_INTERPRET=1",
)


def grads_of(p, merge, backend, weights=None, return_hidden=False, config=None):
    inputs = [t.detach().clone().requires_grad_() for t in p.float_args()]
    present = [t is not None for t in p.args()]
    it = iter(inputs)
    args = [next(it) if keep else None for keep in present]
    out = selective_scan(*args, routes=p.routes, merge=merge, backend=backend, return_hidden=return_hidden,
                         config=config)
    if return_hidden:
        out, hidden = out
    weights = torch.randn_like(out, dtype=torch.float64) if weights is None else weights
    loss = (out.double() * weights).sum()
    if return_hidden:
        loss = loss + hidden.double().sum()
    return out, torch.autograd.grad(loss, inputs), weights


CPU_CASES = [
    dict(K=1, N=1, shared_u=True, merge="sum", with_z=True),
    dict(K=2, N=16, shared_u=True, merge="mean", with_z=False),
    dict(K=4, N=1, shared_u=False, merge="none", with_z=True),
    dict(K=4, N=16, shared_u=True, merge="sum", with_z=False, with_D=False, with_bias=False),
    dict(K=2, N=4, shared_u=False, merge="sum", with_z=True, param_index=True),
]


@pytest.mark.parametrize("case", CPU_CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_forward_and_backward_match_reference(case):
    case = dict(case)
    merge = case.pop("merge")
    p = random_problem(batch=1, L=11, dim=5, device=DEVICE, **case)
    out, grads, weights = grads_of(p, merge, "triton")
    ref_out, ref_grads, _ = grads_of(as_float64(p), merge, "reference", weights)
    assert_close(out, ref_out, torch.float32)
    for g, r in zip(grads, ref_grads):
        assert_close(g, r, torch.float32)


def test_several_chunks_and_hidden_states():
    p = random_problem(batch=1, L=10, K=2, dim=3, N=2, device=DEVICE)
    out, grads, weights = grads_of(p, "sum", "triton", return_hidden=True, config=KernelConfig(chunk=4, span=8))
    ref_out, ref_grads, _ = grads_of(as_float64(p), "sum", "reference", weights, return_hidden=True)
    assert_close(out, ref_out, torch.float32)
    for g, r in zip(grads, ref_grads):
        assert_close(g, r, torch.float32)


@pytest.mark.parametrize("span", [4, 8, 12])
@pytest.mark.parametrize("repeat", [False, True], ids=["chunk-parallel", "repeated-tokens"])
def test_chunk_parallel_and_sequential_paths(repeat, span):
    """Routes without repeated tokens run chunk-parallel (states per span, carry, outputs; spans of one to
    three saved-state chunks, the last span partial); routes with repeats walk each route in one program. Both
    must equal the reference across chunk and span boundaries."""
    p = random_problem(batch=2, L=14, K=2, dim=3, N=3, device=DEVICE, repeat=repeat, with_z=True)
    assert as_routes(p.routes).tokens_unique() is not repeat
    config = KernelConfig(chunk=4, span=span)
    assert triton_scan.plan(config, sizes_of(p), not repeat, not repeat).chunked is not repeat
    out, grads, weights = grads_of(p, "none", "triton", config=config)
    ref_out, ref_grads, _ = grads_of(as_float64(p), "none", "reference", weights)
    assert_close(out, ref_out, torch.float32)
    for g, r in zip(grads, ref_grads):
        assert_close(g, r, torch.float32)


@pytest.mark.parametrize("block_d, warps", [(2, 1), (4, 2), (8, 8)])
@pytest.mark.parametrize("repeat", [False, True], ids=["chunk-parallel", "repeated-tokens"])
def test_channel_blocks_and_warps_of_the_per_step_kernels(block_d, warps, repeat):
    """KernelConfig.block_d / warps reach both per-step passes (several channel blocks: their dB / dC partials
    summed) and keep the reference's answer."""
    p = random_problem(batch=2, L=13, K=2, dim=7, N=3, device=DEVICE, repeat=repeat, with_z=True)
    config = KernelConfig(chunk=4, span=8, block_d=block_d, warps=warps)
    plan = triton_scan.plan(config, sizes_of(p), not repeat, not repeat)
    assert (plan.block_d, plan.warps) == (block_d, warps)
    out, grads, weights = grads_of(p, "sum", "triton", config=config)
    ref_out, ref_grads, _ = grads_of(as_float64(p), "sum", "reference", weights)
    assert_close(out, ref_out, torch.float32)
    for g, r in zip(grads, ref_grads):
        assert_close(g, r, torch.float32)


def sizes_of(p) -> ScanSizes:
    routes = as_routes(p.routes)
    b, L, u_slots, d = p.u.shape
    return ScanSizes(b, L, routes.num_routes, u_slots, d, p.A.shape[2], routes.num_steps)


def test_default_plan():
    """The heuristic (vssm.kernels.config): one warp and up to 512 state elements a program, chunk-parallel
    below 1024 whole-route programs; repeated tokens keep the in-order whole-route walk."""
    case_a = ScanSizes(128, 3136, 4, 1, 96, 1, 3136)
    plan = triton_scan.plan(KernelConfig(), case_a, True, True)
    assert (plan.chunk, plan.span, plan.block_d, plan.warps) == (16, 64, 128, 1)
    assert plan.chunked  # all 96 channels a program: 512 programs
    case_c = ScanSizes(128, 3136, 4, 1, 192, 16, 3136)
    vim_long = ScanSizes(8, 4097, 2, 1, 384, 16, 4097)
    assert triton_scan.plan(KernelConfig(), case_c, True, True).block_d == 32
    assert triton_scan.plan(KernelConfig(), case_c, True, True).chunk == 32  # saved states <= a bf16 delta
    assert triton_scan.plan(KernelConfig(chunk=48), case_c, True, True).span == 96  # a multiple of chunk
    assert not triton_scan.plan(KernelConfig(), case_c, True, True).chunked  # 6 x 4 x 128 = 3072 programs
    assert triton_scan.plan(KernelConfig(), vim_long, True, True).chunked  # 12 x 2 x 8 = 192 programs
    repeated = triton_scan.plan(KernelConfig(), case_a, False, False)
    assert not repeated.chunked


def test_a_span_that_is_not_a_multiple_of_the_chunk_is_an_error():
    with pytest.raises(ValueError, match=r"KernelConfig.span: got 12, expected a multiple of chunk \(8\)"):
        triton_scan.plan(KernelConfig(chunk=8, span=12), ScanSizes(2, 10, 2, 1, 5, 3, 13), True, True)


def test_asking_for_chunk_parallel_with_repeated_tokens_is_an_error():
    with pytest.raises(ValueError, match="KernelConfig.chunk_parallel: needs routes that visit each token"):
        triton_scan.plan(KernelConfig(chunk_parallel=True), ScanSizes(2, 10, 2, 1, 5, 3, 13), False, False)


def test_bfloat16_partials(monkeypatch):
    """bf16 inputs keep their per-route outputs in bf16 (the default) when routes visit every token once and
    nothing gates them before the merge; the merged output stays within the bf16 tolerance of the reference,
    and partials_bf16=False keeps them in fp32."""
    config = KernelConfig(chunk=4, span=8)
    p = random_problem(batch=2, L=9, K=4, dim=5, N=2, dtype=torch.bfloat16, device=DEVICE, pad=0, repeat=False,
                       with_z=False)
    plan = triton_scan.plan(config, sizes_of(p), True, True)
    covering = SimpleNamespace(u=p.u, routes_cover=True)
    assert triton_scan.partials_dtype(covering, None, "sum", plan) == torch.bfloat16
    assert triton_scan.partials_dtype(covering, p.u, "sum", plan) == torch.float32  # gated: y_pre kept for dz
    assert triton_scan.partials_dtype(covering, None, "none", plan) == torch.float32
    assert triton_scan.partials_dtype(SimpleNamespace(u=p.u, routes_cover=False), None, "sum", plan) == torch.float32
    assert triton_scan.partials_dtype(SimpleNamespace(u=p.u.half(), routes_cover=True), None, "sum", plan) == torch.float32
    fp32_plan = triton_scan.plan(KernelConfig(partials_bf16=False), sizes_of(p), True, True)
    assert triton_scan.partials_dtype(covering, None, "sum", fp32_plan) == torch.float32
    merged = triton_scan.gate_and_merge
    seen = []
    monkeypatch.setattr(triton_scan, "gate_and_merge", lambda prob, y, *a: seen.append(y.dtype) or merged(prob, y, *a))
    ref = selective_scan_reference(*as_float64(p).args(), routes=p.routes, merge="mean")
    out = selective_scan(*p.args(), routes=p.routes, merge="mean", backend="triton", config=config)
    assert seen == [torch.bfloat16] and out.dtype == torch.bfloat16
    assert_close(out, ref, torch.bfloat16)
    _, grads, weights = grads_of(p, "sum", "triton", config=config)
    _, ref_grads, _ = grads_of(as_float64(p), "sum", "reference", weights)
    for g, r in zip(grads, ref_grads):
        assert_close(g, r, torch.bfloat16)


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_backward_uses_its_forwards_settings(backend):
    """Regression: the chunk (spacing of the saved states) changed between a forward and its backward used to
    give wrong gradients (relative error 0.2-1.1). The plan is saved with the forward."""
    p = random_problem(batch=2, L=14, K=2, dim=3, N=3, device=DEVICE, repeat=False, with_z=True)
    inputs = [t.detach().clone().requires_grad_() for t in p.float_args()]
    with kernel_config(chunk=4):
        out = selective_scan(*inputs, routes=p.routes, merge="sum", backend=backend)
    weights = torch.randn_like(out, dtype=torch.float64)
    with kernel_config(chunk=8, warps=2, chunk_parallel=False):
        grads = torch.autograd.grad((out.double() * weights).sum(), inputs)
    ref_out, ref_grads, _ = grads_of(as_float64(p), "sum", "reference", weights)
    assert_close(out, ref_out, torch.float32)
    for g, r in zip(grads, ref_grads):
        assert_close(g, r, torch.float32)


def test_reruns_are_bit_identical():
    """The default kernels use no atomics (partials summed in a fixed order): reruns give equal bits."""
    p = random_problem(batch=2, L=12, K=2, dim=3, N=2, device=DEVICE, repeat=False)
    config = KernelConfig(chunk=4, span=8, chunk_parallel=True)
    weights = torch.randn(2, 12, 3, dtype=torch.float64, device=DEVICE)
    (out1, grads1, _), (out2, grads2, _) = (grads_of(p, "sum", "triton", weights, config=config) for _ in range(2))
    assert torch.equal(out1, out2)
    for a, b in zip(grads1, grads2):
        assert torch.equal(a, b)


def test_strided_views_give_the_same_answer():
    """Inputs as permuted views (as SS2D's batched dt projection produces) are read through their strides."""
    p = random_problem(batch=2, L=9, K=2, dim=4, N=2, device=DEVICE)
    expected = selective_scan(*p.args(), routes=p.routes, backend="triton")
    delta = p.delta.permute(2, 0, 1, 3).contiguous().permute(1, 2, 0, 3)  # (b, L, K, d) with K outermost
    B = p.B.transpose(0, 1).contiguous().transpose(0, 1)
    assert not delta.is_contiguous() and not B.is_contiguous()
    out = selective_scan(p.u, delta, p.A, B, p.C, p.D, p.delta_bias, p.z, routes=p.routes, backend="triton")
    torch.testing.assert_close(out, expected)


def test_bfloat16_inputs_and_float32_output():
    p = random_problem(batch=1, L=9, K=2, dim=4, N=2, dtype=torch.bfloat16, device=DEVICE)
    out = selective_scan(*p.args(), routes=p.routes, backend="triton")
    assert out.dtype == torch.bfloat16
    out32 = selective_scan(*p.args(), routes=p.routes, backend="triton", out_dtype=torch.float32)
    ref = selective_scan_reference(*as_float64(p).args(), routes=p.routes)
    assert out32.dtype == torch.float32
    assert_close(out32, ref, torch.float32)
    assert_close(out, ref, torch.bfloat16)


def test_registered_and_rejects_float64():
    assert "triton" in BACKENDS
    p = random_problem(batch=1, L=5, K=1, dim=2, N=1, dtype=torch.float64, device=DEVICE)
    with pytest.raises(ValueError, match="triton backend computes in float32"):
        selective_scan(*p.args(), routes=p.routes, backend="triton")


# --- GPU (real sizes) ---------------------------------------------------------------------------------
gpu = pytest.mark.gpu


GPU_CONFIGS = {
    "default": KernelConfig(),
    "whole-route": KernelConfig(chunk_parallel=False),
    "four-warps": KernelConfig(warps=4),
}


@pytest.fixture(params=list(GPU_CONFIGS))
def schedule(request) -> str:
    """GPU tests run every selectable schedule: the default plan (chunk-parallel at the tests' batch sizes), one
    program per whole route, and four warps a program. Routes repeat a token for the whole-route variant only
    (accumulated rows), so "default" runs its plan for unique tokens."""
    with kernel_config(GPU_CONFIGS[request.param]):
        yield request.param


@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("L", [1, 2, 63, 64, 65, 197, 1023, 3137, 5000])
def test_gpu_forward_matches_reference(dtype, L, schedule):
    p = random_problem(batch=2, L=L, K=4, dim=48, N=4 if L < 4000 else 1, dtype=dtype, device="cuda", pad=5,
                       repeat=schedule == "whole-route")
    expected = selective_scan_reference(*as_float64(p).args(), routes=p.routes) if L <= 1023 else \
        selective_scan(*[t.double() if t is not None else None for t in p.args()], routes=p.routes, backend="torch")
    out = selective_scan(*p.args(), routes=p.routes, backend="triton")
    assert torch.isfinite(out).all()
    rel = (out.double() - expected.double()).norm() / expected.double().norm()
    assert rel < TOLERANCES[dtype]["rtol"] * 3, f"relative error {rel:.2e}"


@gpu
def test_gpu_outputs_are_written_everywhere_and_runs_are_bit_identical(schedule):
    p = random_problem(batch=3, L=777, K=4, dim=96, N=16, device="cuda", pad=0, repeat=False)
    torch.cuda.synchronize()
    poison = torch.full((3, 777, 96), float("nan"), device="cuda")  # poison the allocator's free blocks
    del poison
    outs, grads = [], []
    for _ in range(2):
        out, g, w = grads_of(p, "sum", "triton", weights=torch.ones(3, 777, 96, dtype=torch.float64, device="cuda"))
        outs.append(out)
        grads.append(g)
    assert torch.isfinite(outs[0]).all()
    assert torch.equal(outs[0], outs[1])
    for a, b in zip(*grads):
        assert torch.equal(a, b)


@gpu
@pytest.mark.parametrize("N", [1, 16])
def test_gpu_gradients_match_reference(N, schedule):
    p = random_problem(batch=2, L=129, K=4, dim=40, N=N, device="cuda", repeat=schedule == "whole-route")
    out, grads, weights = grads_of(p, "sum", "triton")
    ref_out, ref_grads, _ = grads_of(as_float64(p), "sum", "torch", weights)
    for g, r in zip(grads, ref_grads):
        rel = (g.double() - r).norm() / r.norm()
        assert rel < 1e-4, f"relative gradient error {rel:.2e}"


LAYOUTS = {
    "chunk-parallel": KernelConfig(chunk=4, span=8, chunk_parallel=True),
    "whole-route": KernelConfig(chunk_parallel=False),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_routes_visiting_every_token_once_write_every_output_row(monkeypatch, layout):
    """Such routes skip zeroing the per-route buffers (outputs and gradients are stored, not accumulated):
    buffers handed out full of NaN must come back fully overwritten, hidden states and gradients included."""
    config = LAYOUTS[layout]
    p = random_problem(batch=1, L=10, K=2, dim=3, N=2, device=DEVICE, repeat=False)
    assert as_routes(p.routes).covers(10)
    empty = torch.Tensor.new_empty

    def poisoned(self, *args, **kwargs):
        t = empty(self, *args, **kwargs)
        return t.fill_(float("nan")) if t.is_floating_point() else t

    monkeypatch.setattr(torch.Tensor, "new_empty", poisoned)
    out, hidden = selective_scan(*p.args(), routes=p.routes, backend="triton", return_hidden=True, config=config)
    ref_out, ref_hidden = selective_scan_reference(*as_float64(p).args(), routes=p.routes, return_hidden=True)
    assert_close(out, ref_out, torch.float32)
    assert_close(hidden, ref_hidden, torch.float32)
    # the backward stores every gradient row once into buffers handed out just as poisoned
    _, grads, weights = grads_of(p, "mean", "triton", return_hidden=True, config=config)
    _, ref_grads, _ = grads_of(as_float64(p), "mean", "reference", weights, return_hidden=True)
    for g, r in zip(grads, ref_grads):
        assert torch.isfinite(g).all()
        assert_close(g, r, torch.float32)


# --- int64 offsets at the benchmark sizes (CPU interpreter: the index arithmetic, not the 5e9-element buffers) --
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from vssm.kernels.triton_offsets import _channel_block_base, _program_row, _state_offset  # noqa: E402


@triton.jit
def _largest_offsets_kernel(out_ptr, pid_d, batch, L, K, b, k, c, n_chunks, dim, pid2, n_db, n_prog2,
                            N: tl.constexpr, CK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """The offset helpers at the last program's ids, with int32 arguments as a launch passes them; the scratch
    base as the per-step backward forms it."""
    d = dim - 1 + tl.arange(0, 1)
    n = N - 1 + tl.arange(0, 1)
    tl.store(out_ptr, _channel_block_base(pid_d, batch, L, K, N))
    tl.store(out_ptr + 1 + tl.arange(0, 1), tl.reshape(_state_offset(b, k, c, K, n_chunks, dim, d, n, N), (1,)))
    tl.store(out_ptr + 2, _program_row(b, pid_d, pid2, n_db, n_prog2) * (CK + 1) * BLOCK_D * BLOCK_N)


@pytest.mark.parametrize("chunked", [None, True], ids=["default-schedule", "chunk-parallel"])
@pytest.mark.parametrize("shape", ["a", "c", "vim-long"])
def test_largest_offsets_fit_their_buffers_in_int64(shape, chunked):
    """The backward launcher's largest offsets (last program, last channel, last state) into the dB/dC
    partials, the saved states and the per-program scratch equal the exact value, at the end of the buffer; at
    case (c) the chunk-parallel per-step scratch (5e9 elements) passes 2^31 elements, where int32 arithmetic
    wraps."""
    b, L, K, dim, N = {"a": (128, 3136, 4, 96, 1), "c": (128, 3136, 4, 192, 16), "vim-long": (8, 4097, 2, 384, 16)}[shape]
    plan = triton_scan.plan(KernelConfig(chunk_parallel=chunked), ScanSizes(b, L, K, 1, dim, N, L), True, True)
    block_d, block_n = triton_scan.step_blocks(dim, N)
    n_db, chunks = triton.cdiv(dim, block_d), triton_scan.n_chunks(L, plan.chunk)
    spans = triton_scan.n_chunks(L, plan.span) if plan.chunked else 1
    out = torch.zeros(3, dtype=torch.int64)
    scratch_row = (plan.chunk + 1) * block_d * block_n
    _largest_offsets_kernel[(1,)](out, n_db - 1, b, L, K, b - 1, K - 1, chunks - 1, chunks, dim, K * spans - 1, n_db,
                                  K * spans, N=N, CK=plan.chunk, BLOCK_D=block_d, BLOCK_N=block_n)
    partials, states, scratch = out.tolist()
    assert partials + b * L * K * N == n_db * b * L * K * N  # last channel block's slice ends the buffer
    assert states == b * K * chunks * dim * N - 1
    assert scratch + scratch_row == b * n_db * K * spans * scratch_row  # the scratch the launcher allocates
    if shape == "c" and chunked:
        assert b * n_db * K * spans * scratch_row > 2**31


def test_int32_arithmetic_would_wrap_at_case_c():
    """The interpreter keeps int32 semantics, so the test above can fail: the old product pid_d * (b*L*K*N)."""
    @triton.jit
    def old(out_ptr, pid_d, batch, L, K, N: tl.constexpr):
        tl.store(out_ptr, pid_d * (batch * L * K * N))

    out = torch.zeros(1, dtype=torch.int64)
    old[(1,)](out, 191, 128, 3136, 4, N=16)
    assert out.item() != 191 * 128 * 3136 * 4 * 16
