"""Routes over a grid plus one extra token in the middle (Vim's class token), for every strategy."""
import pytest
import torch

from vssm.scans import get_scan, list_scans
from vssm.scans.base import START


@pytest.mark.parametrize("name", list_scans())
@pytest.mark.parametrize("H, W", [(3, 5), (4, 4), (1, 6)])
def test_each_route_visits_the_extra_token_once_at_its_middle_step(name, H, W):
    strategy = get_scan(name)
    if not strategy.supports_middle_token:
        return
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


@pytest.mark.parametrize("name", ["multiscale", "spatial_fusion"])
def test_grid_bound_strategies_refuse_the_extra_token(name):
    strategy = get_scan(name)
    assert not strategy.supports_middle_token
    u = torch.zeros(1, 5, 1, 4)
    with pytest.raises(ValueError, match="cannot carry"):
        strategy.forward(u, None, None, 2, 2, middle_token=True)
