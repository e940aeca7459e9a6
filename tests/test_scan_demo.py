"""The scan demo runs end to end on the bundled photo and both backends agree."""
import importlib.util
import pathlib

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("scan_demo", ROOT / "tools" / "scan_demo.py")
scan_demo = importlib.util.module_from_spec(spec)
spec.loader.exec_module(scan_demo)


def test_scan_demo_writes_figure(tmp_path, capsys):
    out = tmp_path / "demo.png"
    scan_demo.main(["--size", "12", "--scans", "cross", "zigzag", "--out", str(out)])
    assert out.stat().st_size > 1000
    assert "| cross | 4 |" in capsys.readouterr().out


def test_routes_average_stays_in_image_range():
    image = scan_demo.load_photo(10)
    smoothed = scan_demo.smooth_along_routes(image, "cross", "torch")
    reference = scan_demo.smooth_along_routes(image, "cross", "reference")
    torch.testing.assert_close(smoothed, reference, rtol=1e-5, atol=1e-6)
    assert smoothed.shape == (10, 10, 3) and 0.05 < smoothed.mean() < 0.95
