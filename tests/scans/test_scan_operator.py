"""Every strategy through the selective-scan operator and a gradient step; merge is the adjoint of scan."""
import pytest
import torch

from vssm.kernels import selective_scan
from vssm.layers.ss2d import SS2D
from vssm.scans.multihead import RouteAttention
from vssm.scans import get_scan, list_scans, merge_tokens, scan_tokens

GRIDS = [(5, 7), (1, 6), (4, 1), (1, 1)]


@pytest.mark.parametrize("name", sorted(set(list_scans()) - {"multihead", "multiscale", "spatial_fusion"}))
def test_merge_is_the_adjoint_of_scan(name):
    H, W = 5, 7
    routes = get_scan(name).routes(H, W)
    x = torch.randn(2, H * W, 3, requires_grad=True)
    r = torch.randn(2, routes.num_routes, routes.num_steps, 3)
    (grad,) = torch.autograd.grad((scan_tokens(x, routes) * r).sum(), x)
    torch.testing.assert_close(grad, merge_tokens(r, routes, H * W))


@pytest.mark.parametrize("name", sorted(set(list_scans()) - {"multihead", "multiscale", "spatial_fusion"}))
def test_operator_merge_equals_index_merge(name):
    """With no memory (decay 0), the kernel's per-route output is dt*u + D*u at each visited step, so its
    merge must equal merge_tokens of the scanned tokens."""
    H, W, d = 4, 6, 3
    strategy = get_scan(name)
    routes = strategy.routes(H, W)
    K, L = routes.num_routes, H * W
    u = torch.randn(1, L, 1, d)
    delta = torch.zeros(1, L, K, d)  # dt = softplus(0) = log 2
    A = torch.full((K, d, 1), -1e4)  # exp(dt * A) = 0: no memory
    ones = torch.ones(1, L, K, 1)
    D = torch.randn(K, d)
    out = selective_scan(u, delta, A, ones, ones, D, routes=routes, merge="sum")
    dt = torch.log(torch.tensor(2.0))
    scanned = scan_tokens(u[:, :, 0], routes)  # (1, K, T, d)
    expected = merge_tokens(scanned * (dt + D[None, :, None, :]), routes, L)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list_scans())
@pytest.mark.parametrize("H, W", GRIDS)
def test_every_strategy_through_a_mixer_and_a_gradient_step(name, H, W):
    mixer = SS2D(dim=8, d_state=2, ssm_ratio=1.0, scan=name)
    x = torch.randn(2, H, W, 8)
    target = torch.randn(2, H, W, 8)
    loss = (mixer(x) - target).square().mean()
    loss.backward()
    for pname, p in mixer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    if name == "multihead" and min(H, W) == 1:
        # On a 1-row/column grid each head's routes coincide in pairs, so route attention's min over routes
        # sits exactly on a tie (a kink): its gradient is a subgradient, not always a descent direction.
        return
    start = [p.detach().clone() for p in mixer.parameters()]
    for lr in (1e-2, 1e-3, 1e-4, 1e-5):  # a small enough gradient step lowers the loss
        with torch.no_grad():
            for p, p0 in zip(mixer.parameters(), start):
                p.copy_(p0 - lr * p.grad)
            if (mixer(x) - target).square().mean() < loss:
                break
    else:
        pytest.fail("no gradient step lowered the loss")


def test_strategy_modules_are_learnable_and_owned_by_the_mixer():
    assert get_scan("cross").make_module(8, 2) is None
    assert sum(p.numel() for p in get_scan("zigzag").make_module(8, 2).parameters()) == 5 * 2
    assert sum(p.numel() for p in get_scan("multihead").make_module(8, 2).parameters()) == 4
    assert sum(p.numel() for p in get_scan("spatial_fusion").make_module(8, 2).parameters()) == 3 * 16 * 9 + 3
    assert any(isinstance(m, torch.nn.Conv2d) for m in get_scan("multiscale").make_module(8, 2).modules())


def test_spatial_fusion_is_the_same_function_in_train_and_eval():
    mixer = SS2D(dim=8, d_state=1, scan="spatial_fusion")
    x = torch.randn(1, 5, 6, 8)
    train_out = mixer.train()(x)
    eval_out = mixer.eval()(x)
    torch.testing.assert_close(train_out, eval_out)
    with torch.no_grad():
        mixer.scan_module.alpha.mul_(2)  # changed weights change the eval output (nothing cached)
    assert not torch.allclose(mixer.eval()(x), eval_out)


def test_spatial_fusion_with_identity_fusion_equals_plain_scan():
    """alpha = (1, 0, 0) and a centre-only kernel make the fusion the identity: y = C.h + D.u is the plain scan."""
    fused = SS2D(dim=6, d_state=2, scan="spatial_fusion")
    with torch.no_grad():
        fusion = fused.scan_module
        fusion.alpha.copy_(torch.tensor([1.0, 0.0, 0.0]))
        fusion.weights[0].zero_()[:, :, 1, 1] = 1
    x = torch.randn(1, 3, 4, 6)
    delta, B, C = fused.project(x.reshape(1, 12, 1, 6))
    params = fused.scan_params()
    expected = selective_scan(x.reshape(1, 12, 1, 6), delta, params.A, B, C, params.D, params.delta_bias,
                              routes=torch.arange(12, dtype=torch.int32)[None])
    plan = fused.scan.prepare(x.reshape(1, 12, 1, 6), 3, 4)
    got = fused.scan.scan(plan, delta, B, C, params, module=fusion)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_hook_strategies_reject_per_route_u():
    for name in ("multiscale", "spatial_fusion", "multihead"):
        strategy = get_scan(name)
        u = torch.randn(1, 6, 2, 4)
        with pytest.raises(ValueError, match=f"the '{name}' scan expects one u slot"):
            strategy.prepare(u, 2, 3, module=strategy.make_module(4, 1))


def test_route_attention_matches_the_mhs_vm_formula():
    """sum over a head's routes of y times ReLU(CV - t), CV = std / (mean of (y - min) + 1e-5), per element."""
    heads, routes, d = 3, 4, 5
    attention = RouteAttention(heads)
    with torch.no_grad():
        attention.threshold.uniform_(0.0, 1.0)
    y = torch.randn(2, 6, heads, routes, d, dtype=torch.float64)
    expected = torch.empty(2, 6, heads, d, dtype=torch.float64)
    for head in range(heads):
        ys = [y[:, :, head, k] for k in range(routes)]
        mean = sum(ys) / routes
        std = (sum((v - mean) ** 2 for v in ys) / routes).sqrt()
        low = ys[0]
        for v in ys[1:]:
            low = torch.minimum(low, v)
        level = sum(v - low for v in ys) / routes + 1e-5
        gate = torch.clamp(std / level - attention.threshold.detach()[head].item(), min=0)
        expected[:, :, head] = sum(ys) * gate
    torch.testing.assert_close(attention(y), expected.flatten(2))


def test_multiscale_equals_two_separate_scans():
    """Full-resolution raster scan (parameter set 0) plus ONE 1-D scan (parameter set 1) over the low-resolution
    tokens laid out as reversed raster, column-major, reversed column-major back to back, summed per token,
    bilinearly upsampled and added."""
    H, W, dim = 5, 7, 4
    mixer = SS2D(dim=dim, d_state=2, ssm_ratio=1.0, scan="multiscale")
    strategy, module, params = mixer.scan, mixer.scan_module, mixer.scan_params()
    u = torch.randn(2, H * W, 1, dim)
    plan = strategy.prepare(u, H, W, module=module)
    got = strategy.scan(plan, *mixer.project(plan.tokens), params, module=module)

    def one_route(tokens, k):  # plain 1-D scan of tokens (b, T, d) with parameter set k
        delta, B, C = mixer.project(tokens[:, :, None])
        T = tokens.shape[1]
        return selective_scan(
            tokens[:, :, None], delta[:, :, k:k + 1], params.A[k:k + 1], B[:, :, k:k + 1], C[:, :, k:k + 1],
            params.D[k:k + 1], params.delta_bias[k:k + 1], routes=torch.arange(T, dtype=torch.int32)[None],
            backend="reference",
        )

    full = one_route(u[:, :, 0], 0)
    low = module(u[:, :, 0].transpose(1, 2).reshape(2, dim, H, W))
    h, w = low.shape[-2:]
    raster = [i * w + j for i in range(h) for j in range(w)]
    column = [i * w + j for j in range(w) for i in range(h)]
    chain = raster[::-1] + column + column[::-1]
    low_tokens = low.flatten(2).transpose(1, 2)
    chained = one_route(low_tokens[:, chain], 1)
    coarse = torch.zeros_like(low_tokens)
    for t, p in enumerate(chain):
        coarse[:, p] += chained[:, t]
    up = torch.nn.functional.interpolate(coarse.transpose(1, 2).reshape(2, dim, h, w), size=(H, W), mode="bilinear")
    torch.testing.assert_close(got, full + up.flatten(2).transpose(1, 2), rtol=1e-4, atol=1e-5)


def test_state_fusion_matches_dilated_convolutions_with_clamped_coordinates():
    """sum_i alpha_i * depthwise 3x3 conv of dilation (1, 3, 5)_i, replicate padding = clamped coordinates."""
    from vssm.scans.spatial_fusion import StateFusion

    channels, H, W = 3, 4, 7
    fusion = StateFusion(channels)
    with torch.no_grad():
        fusion.alpha.uniform_(-1.0, 1.0)
    h = torch.randn(2, channels, H, W)
    rows, cols = torch.arange(H), torch.arange(W)
    expected = torch.zeros_like(h)
    for alpha, weight, dilation in zip(fusion.alpha.detach(), fusion.weights, (1, 3, 5)):
        for a in range(3):
            for b in range(3):
                r = (rows + (a - 1) * dilation).clamp(0, H - 1)
                c = (cols + (b - 1) * dilation).clamp(0, W - 1)
                shifted = h[:, :, r][:, :, :, c]
                expected += alpha * weight.detach()[None, :, 0, a, b, None, None] * shifted
    torch.testing.assert_close(fusion(h), expected, rtol=1e-5, atol=1e-5)
