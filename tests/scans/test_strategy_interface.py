"""The mixer-strategy interface runs one way: mixers read capabilities (never a scan's name) and call prepare/scan."""
import torch

from vssm.layers.bimamba import BiMambaMixer
from vssm.scans import ScanPlan, get_scan, register_scan
from vssm.scans.bidirectional import BidirectionalScan


@register_scan("test_sequence_scan")
class SequenceScan(BidirectionalScan):
    """Bidirectional's routes under another name: a capability, not a name, makes the Vim mixer scan the sequence."""


def test_vim_mixer_reads_the_scans_sequence_capability_not_the_name():
    torch.manual_seed(0)
    official = BiMambaMixer(dim=8, d_state=2, scan="bidirectional")
    renamed = BiMambaMixer(dim=8, d_state=2, scan="test_sequence_scan")
    renamed.load_state_dict(official.state_dict())
    x = torch.randn(2, 3 * 3 + 1, 8)  # an odd grid: the grid routes with a mid-route class token differ from these
    torch.testing.assert_close(renamed(x, (3, 3)), official(x, (3, 3)), rtol=0, atol=0)


def test_prepare_returns_tokens_and_routes_the_mixer_projects():
    strategy = get_scan("multihead")
    u = torch.randn(2, 12, 1, 8)
    plan = strategy.prepare(u, 3, 4)
    assert isinstance(plan, ScanPlan) and plan.tokens.shape == (2, 12, strategy.heads, 2)
    assert plan.routes is strategy.routes(3, 4) and (plan.H, plan.W, plan.middle_token) == (3, 4, False)


def test_built_routes_carry_the_schedule_properties():
    """A compiled forward cannot read the tables: the Triton schedule reads the facts kept when they were built."""
    from vssm.scans import get_scan

    routes = get_scan("cross").routes(3, 4, device="meta")  # any non-CPU device (the facts come from the CPU build)
    assert routes.known_unique is True and routes.known_min_visits == 12
    assert get_scan("cross").routes(3, 4, device="meta", middle_token=True).known_min_visits == 13
    assert get_scan("atrous_window").routes(4, 4, device="meta").known_unique is True
    assert get_scan("multiscale").routes(4, 4, device="meta").known_unique is False  # its chained routes repeat
    assert get_scan("cross").routes(3, 4).known_unique is None  # CPU tables run the torch backend: not needed
