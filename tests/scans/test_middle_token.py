"""Routes over a grid plus one extra token in the middle (Vim's class token), for every strategy."""
import pytest
import torch

from vssm.scans import get_scan, list_scans
from vssm.scans.base import START


@pytest.mark.parametrize("name", list_scans())
@pytest.mark.parametrize("H, W", [(3, 5), (4, 4), (1, 6)])
def test_each_route_visits_the_extra_token_once_at_its_middle_step(name, H, W):
    strategy = get_scan(name)
    plain, extra = strategy.routes(H, W), strategy.routes(H, W, middle_token=True)
    c = (H * W) // 2
    K, T = plain.index.shape
    assert extra.index.shape == (K, T + 1)
    assert (extra.index[:, T // 2] == c).all() and ((extra.index == c).sum(1) == 1).all()
    back = torch.cat([extra.index[:, : T // 2], extra.index[:, T // 2 + 1 :]], dim=1)
    assert torch.equal(torch.where(back > c, back - 1, back), plain.index)  # the grid route itself, shifted
    if plain.u_group is not None:
        assert torch.equal(extra.u_group, plain.u_group)
    if plain.direction is not None:
        assert (extra.direction[:, T // 2] == START).all()
    assert strategy.routes(H, W, middle_token=True) is extra  # cached


def test_multiscale_builds_low_resolution_tokens_from_the_grid_only():
    """With the extra token: the full-resolution route is the token sequence (extra token in place), the low
    resolution map is downsampled from the grid tokens alone, the chained low-resolution route passes through the
    extra token at its middle step, and the extra token's output is the sum of its two visits."""
    from vssm.kernels import selective_scan
    from vssm.layers.ss2d import SS2D

    torch.manual_seed(0)
    H, W, dim = 3, 4, 4
    L, c = H * W + 1, (H * W) // 2
    mixer = SS2D(dim=dim, d_state=2, ssm_ratio=1.0, scan="multiscale")
    strategy, module, params = mixer.scan, mixer.scan_module, mixer.scan_params()
    u = torch.randn(2, L, 1, dim)
    plan = strategy.prepare(u, H, W, module=module, middle_token=True)
    got = strategy.scan(plan, *mixer.project(plan.tokens), params, module=module)

    def one_route(tokens, k):  # plain 1-D scan of tokens (b, T, d) with parameter set k
        delta, B, C = mixer.project(tokens[:, :, None])
        return selective_scan(
            tokens[:, :, None], delta[:, :, k:k + 1], params.A[k:k + 1], B[:, :, k:k + 1], C[:, :, k:k + 1],
            params.D[k:k + 1], params.delta_bias[k:k + 1], routes=torch.arange(tokens.shape[1])[None],
            backend="reference",
        )

    grid = torch.cat([u[:, :c, 0], u[:, c + 1:, 0]], dim=1)
    low = module(grid.transpose(1, 2).reshape(2, dim, H, W))
    h, w = low.shape[-2:]
    raster = [i * w + j for i in range(h) for j in range(w)]
    column = [i * w + j for j in range(w) for i in range(h)]
    chain = raster[::-1] + column + column[::-1]
    m = len(chain) // 2  # 3 * h * w = 12 = H * W steps: the extra token sits at step 6 of both routes
    low_tokens = low.flatten(2).transpose(1, 2)
    sequence = torch.cat([low_tokens[:, chain[:m]], u[:, c:c + 1, 0], low_tokens[:, chain[m:]]], dim=1)
    chained = one_route(sequence, 1)
    coarse = torch.zeros_like(low_tokens)
    for t, p in enumerate(chain[:m] + [None] + chain[m:]):
        if p is not None:
            coarse[:, p] += chained[:, t]
    up = torch.nn.functional.interpolate(coarse.transpose(1, 2).reshape(2, dim, h, w), size=(H, W), mode="bilinear")
    up = up.flatten(2).transpose(1, 2)
    full = one_route(u[:, :, 0], 0)
    expected = full + torch.cat([up[:, :c], chained[:, m:m + 1], up[:, c:]], dim=1)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_spatial_fusion_reads_the_extra_token_state_unfused():
    """With the extra token, the patch states are fused on the grid exactly as without it, except that the scan
    now passes through the token; the token's own output is C·h + D·u of its scanned state."""
    from vssm.kernels import selective_scan
    from vssm.scans.base import ScanParams

    torch.manual_seed(0)
    strategy, H, W, d, N = get_scan("spatial_fusion"), 2, 3, 4, 2
    module = strategy.make_module(d, N)
    L = H * W + 1
    c = (H * W) // 2
    u = torch.randn(1, L, 1, d)
    delta, B, C = torch.randn(1, L, 1, d), torch.randn(1, L, 1, N), torch.randn(1, L, 1, N)
    params = ScanParams(A=-torch.rand(1, d, N) - 0.5, D=torch.randn(1, d))
    y = strategy.scan(strategy.prepare(u, H, W, middle_token=True), delta, B, C, params, module=module)
    _, hidden = selective_scan(u, delta, params.A, B, C, routes=torch.arange(L)[None], return_hidden=True)
    h_token = hidden[0, c, 0]  # (d, N): the sequence route visits the token at its position
    expected_token = (h_token * C[0, c, 0]).sum(-1) + params.D[0] * u[0, c, 0]
    torch.testing.assert_close(y[0, c], expected_token, rtol=1e-5, atol=1e-5)
    patches = torch.cat([hidden[:, :c, 0], hidden[:, c + 1 :, 0]], dim=1).reshape(1, H, W, d * N).permute(0, 3, 1, 2)
    fused = module(patches).permute(0, 2, 3, 1).reshape(1, H * W, d, N)
    C_patches = torch.cat([C[:, :c, 0], C[:, c + 1 :, 0]], dim=1)
    u_patches = torch.cat([u[:, :c, 0], u[:, c + 1 :, 0]], dim=1)
    expected = torch.einsum("bldn,bln->bld", fused, C_patches) + params.D[0] * u_patches
    torch.testing.assert_close(torch.cat([y[:, :c], y[:, c + 1 :]], dim=1), expected, rtol=1e-5, atol=1e-5)


def test_multihead_takes_one_input_per_route():
    """u split per route (slot k = the channels of route k's head, as Vim's per-route convs give) scans exactly
    like the single input the strategy splits itself."""
    from vssm.scans.base import ScanParams

    torch.manual_seed(0)
    strategy = get_scan("multihead")
    heads, K, H, W, d, N = strategy.heads, strategy.num_routes, 3, 4, 2, 3
    L = H * W
    module = strategy.make_module(heads * d, N)
    u = torch.randn(1, L, 1, heads * d)
    z = torch.randn(1, L, 1, heads * d)
    delta, B, C = torch.randn(1, L, K, d), torch.randn(1, L, K, N), torch.randn(1, L, K, N)
    params = ScanParams(A=-torch.rand(K, d, N) - 0.5, D=torch.randn(K, d), delta_bias=torch.randn(K, d))
    single = strategy.scan(strategy.prepare(u, H, W), delta, B, C, params, z=z, module=module)
    per_route = u[:, :, 0].view(1, L, heads, d).repeat_interleave(4, dim=2)  # (1, L, K, d)
    split = strategy.scan(strategy.prepare(per_route, H, W), delta, B, C, params, z=z, module=module)
    torch.testing.assert_close(split, single)
