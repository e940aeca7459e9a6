"""Route tables: valid, exact official orders, Hilbert adjacency, caching and generation time."""
import itertools
import time

import pytest
import torch

from vssm.scans import get_scan, list_scans, register_scan
from vssm.scans.base import ScanStrategy, step_directions
from vssm.scans.cross import CrossScan

GRIDS = [(1, 1), (1, 7), (6, 1), (4, 4), (5, 7), (8, 3), (14, 14)]
ROUTE_ONLY_COVERAGE = {  # how many times each token is visited over all routes
    "cross": 4, "bidirectional": 2, "zigzag": 4, "hilbert": 4, "hilbert_quadtree": 4, "window": 4,
    "atrous": 1, "atrous_window": 2, "multihead": 16, "spatial_fusion": 1,
}


@pytest.mark.parametrize("name", sorted(ROUTE_ONLY_COVERAGE))
@pytest.mark.parametrize("H, W", GRIDS)
def test_tables_valid_and_cover_every_token(name, H, W):
    routes = get_scan(name).routes(H, W)
    index = routes.index
    assert index.dtype == torch.int32 and index.shape[0] == get_scan(name).num_routes
    assert index.min() >= -1 and index.max() < H * W
    visits = torch.bincount(index[index >= 0].long(), minlength=H * W)
    assert torch.all(visits == ROUTE_ONLY_COVERAGE[name])
    for row in index:  # within a route every token appears at most once
        tokens = row[row >= 0]
        assert tokens.unique().numel() == tokens.numel()


def test_multiscale_tables():
    for H, W in GRIDS:
        routes = get_scan("multiscale").routes(H, W)
        h, w = (H + 1) // 2, (W + 1) // 2
        full, chained = routes.index
        assert torch.equal(full[full >= 0], torch.arange(H * W, dtype=torch.int32))
        low = chained[chained >= 0] - H * W
        assert low.min() >= 0 and torch.all(torch.bincount(low.long(), minlength=h * w) == 3)
        assert chained.numel() == max(H * W, 3 * h * w)


def test_padding_only_where_defined():
    assert (get_scan("cross").routes(5, 7).index >= 0).all()
    assert (get_scan("hilbert").routes(5, 7).index >= 0).all()
    window = get_scan("window", size=4).routes(5, 7).index  # padded to 8 x 8
    assert window.shape == (4, 64) and int((window[0] < 0).sum()) == 64 - 35
    assert (get_scan("window", size=4).routes(8, 8).index >= 0).all()


def official_cross(H, W):
    raster = [h * W + w for h in range(H) for w in range(W)]
    column = [h * W + w for w in range(W) for h in range(H)]
    return [raster, column, raster[::-1], column[::-1]]


def official_zigzag(H, W):
    o1 = [h * W + (w if h % 2 == 0 else W - 1 - w) for h in range(H) for w in range(W)]
    o3 = [(h if w % 2 == 0 else H - 1 - h) * W + w for w in range(W) for h in range(H)]
    return [o1, o1[::-1], o3, o3[::-1]]


@pytest.mark.parametrize("H, W", [(4, 4), (5, 5), (3, 8), (7, 2), (14, 14), (1, 5)])
def test_cross_and_zigzag_equal_official_orders(H, W):
    assert get_scan("cross").routes(H, W).index.tolist() == official_cross(H, W)
    assert get_scan("zigzag").routes(H, W).index.tolist() == official_zigzag(H, W)


def test_zigzag_start_cells_and_directions():
    for H, W in [(4, 5), (5, 4), (5, 5)]:
        index = get_scan("zigzag").routes(H, W).index
        assert int(index[1, 0]) == ((H - 1) * W + (W - 1) if H % 2 else (H - 1) * W)
        assert int(index[3, 0]) == ((H - 1) * W + (W - 1) if W % 2 else W - 1)
    d = get_scan("zigzag").routes(2, 3).direction.tolist()
    # row snake 0 1 2 | 5 4 3: start, right, right, down, left, left
    assert d[0] == [0, 1, 1, 4, 2, 2]
    assert d[1] == [0, 1, 1, 3, 2, 2]  # the reverse: 3 4 5 | 2 1 0


def test_zigzag_keeps_params_in_raster_order():
    routes = get_scan("zigzag").routes(3, 4)
    assert torch.equal(routes.param_index, torch.arange(12, dtype=torch.int32).expand(4, -1))
    assert get_scan("zigzag", raster_params=False).routes(3, 4).param_index is None


HILBERT_GRIDS = [(h, w) for h, w in itertools.product([1, 2, 3, 5, 8, 13, 16, 31, 56, 97], [1, 2, 4, 7, 14, 61])]


@pytest.mark.parametrize("H, W", HILBERT_GRIDS)
def test_hilbert_steps_are_neighbours(H, W):
    for route in get_scan("hilbert").routes(H, W).index:
        r, c = route.long() // W, route.long() % W
        dr, dc = (r[1:] - r[:-1]).abs(), (c[1:] - c[:-1]).abs()
        assert torch.all((dr <= 1) & (dc <= 1) & (dr + dc >= 1))
        diagonal = int(((dr == 1) & (dc == 1)).sum())
        long_side, short_side = max(H, W), min(H, W)
        # the one diagonal step the construction may need: only when the long side is odd and the short even
        assert diagonal <= (1 if long_side % 2 == 1 and short_side % 2 == 0 else 0)


def test_hilbert_runs_corner_to_corner_with_a_diagonal_only_where_parity_forces_it():
    def diagonals(H, W):
        route = get_scan("hilbert").routes(H, W).index[0].long()
        r, c = route // W, route % W
        return int((((r[1:] - r[:-1]).abs() == 1) & ((c[1:] - c[:-1]).abs() == 1)).sum())

    def far_corner(H, W):  # the curve runs from (0, 0) to the far end of its major (longer) axis
        return (0, W - 1) if W >= H else (H - 1, 0)

    for H, W in [(4, 5), (5, 4), (6, 7), (4, 39), (5, 5), (8, 8), (6, 6), (9, 14)]:
        route = get_scan("hilbert").routes(H, W).index[0]
        assert int(route[0]) == 0 and divmod(int(route[-1]), W) == far_corner(H, W)
        # 4-neighbour steps flip the checkerboard colour, a diagonal keeps it: H*W - 1 steps from (0, 0) to
        # the far corner need exactly one diagonal when the step count and the corner's colour disagree
        needed = (H * W - 1 + sum(far_corner(H, W))) % 2
        assert diagonals(H, W) == needed
    assert [diagonals(H, W) for H, W in [(4, 5), (5, 4), (6, 7), (4, 39)]] == [1, 1, 1, 1]


def test_hilbert_is_the_classic_curve_on_a_power_of_two():
    assert get_scan("hilbert").routes(4, 4).index[0].tolist() == [0, 1, 5, 4, 8, 12, 13, 9, 10, 14, 15, 11, 7, 6, 2, 3]


def test_window_closed_form():
    """LocalMamba's closed form: position of (i, j) = ((W/K)(i//K) + j//K) K^2 + (i%K) K + j%K."""
    H = W = 6
    K = 3
    index = get_scan("window", size=K).routes(H, W).index[0]
    for i in range(H):
        for j in range(W):
            assert int(index[((W // K) * (i // K) + j // K) * K * K + (i % K) * K + j % K]) == i * W + j


def test_atrous_phases_match_es2d_for_rate_two():
    index = get_scan("atrous", rate=2).routes(4, 4).index
    grid = torch.arange(16).view(4, 4)
    assert index[0].tolist() == grid[0::2, 0::2].reshape(-1).tolist()  # (even, even) row-major
    assert index[1].tolist() == grid[1::2, 0::2].t().reshape(-1).tolist()  # (odd, even) column-major
    assert index[2].tolist() == grid[0::2, 1::2].reshape(-1).tolist()  # (even, odd) row-major
    assert index[3].tolist() == grid[1::2, 1::2].t().reshape(-1).tolist()  # (odd, odd) column-major


def test_multihead_patterns():
    from vssm.scans.multihead import pattern_routes

    spiral = pattern_routes("S", 3, 4)[0].tolist()
    assert spiral == [0, 1, 2, 3, 7, 11, 10, 9, 8, 4, 5, 6]
    diagonal = pattern_routes("X", 3, 3)[0].tolist()
    assert diagonal == [0, 3, 1, 2, 4, 6, 7, 5, 8]
    routes = get_scan("multihead", patterns=("C", "Z")).routes(3, 3)
    assert routes.u_group.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_cache_returns_the_same_object_and_is_fast():
    for name in list_scans():
        strategy = get_scan(name)
        strategy.routes(8, 8)  # first-use costs (lazy imports) are not route generation
        start = time.perf_counter()
        first = strategy.routes(256, 256)
        elapsed = time.perf_counter() - start
        assert elapsed < 0.05, f"{name}: {elapsed * 1e3:.1f} ms for 256x256"
        assert strategy.routes(256, 256) is first


def test_registry():
    @register_scan("test_reversed_raster")
    class Reversed(CrossScan):
        pass

    assert "test_reversed_raster" in list_scans() and isinstance(get_scan("test_reversed_raster"), ScanStrategy)
    with pytest.raises(ValueError, match="already registered"):
        register_scan("cross")(Reversed)
    with pytest.raises(ValueError, match=r"scan: got 'nope', expected one of"):
        get_scan("nope")


@pytest.mark.parametrize("name, options, pattern", [
    ("window", dict(size=0), "size: got 0"),
    ("atrous", dict(rate=0), "rate: got 0"),
    ("atrous_window", dict(window=2, rate=-1), "rate: got -1"),
    ("multihead", dict(patterns=("C", "Q")), "patterns: got"),
])
def test_bad_options(name, options, pattern):
    with pytest.raises(ValueError, match=pattern):
        get_scan(name, **options)


def test_bad_grid():
    with pytest.raises(ValueError, match="H, W: got 0 x 3"):
        get_scan("cross").routes(0, 3)


def test_step_directions_of_a_window_jump_is_start():
    index = torch.tensor([[0, 1, 4, 5, 2, 3]], dtype=torch.int32)  # 2 x 4 grid, 2 x 2 windows: 1 -> 4 jumps
    assert step_directions(index, 4).tolist() == [[0, 1, 0, 1, 0, 1]]
