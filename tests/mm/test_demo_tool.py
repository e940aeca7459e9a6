"""tools/demo_mm.py: the short default schedule is a consistent config, and a training shows a progress bar."""
import os

import pytest

pytest.importorskip("mmdet")
pytest.importorskip("mmseg")

from mmengine.config import Config  # noqa: E402

from tools import demo_mm  # noqa: E402
from tools import train as train_tool  # noqa: E402
from vssm.data import DemoShapesSpec, generate_demo_shapes  # noqa: E402


@pytest.mark.parametrize("task", ["seg", "det"])
def test_quick_schedule_shortens_every_part_of_the_schedule(task):
    iters = demo_mm.QUICK_ITERS[task]
    assert iters < Config.fromfile(demo_mm.CONFIGS[task]).train_cfg.max_iters
    args = train_tool.parse_args([demo_mm.CONFIGS[task], "--cfg-options", *demo_mm.schedule_options(task, iters)])
    cfg = train_tool.build_config(args)  # the options parsed as tools/train.py parses them
    assert cfg.train_cfg.max_iters == iters
    assert cfg.train_cfg.val_interval == iters and cfg.default_hooks.checkpoint.interval == iters
    warmup, main = cfg.param_scheduler
    assert 0 < warmup.end < iters and main.end == iters and main.begin < main.end
    if task == "det":
        assert main.milestones == [int(iters * 0.8)]


def test_progress_bar_and_log_line_pattern():
    assert demo_mm.progress_bar("seg training", 5, 10, width=10) == "\r[demo] seg training [#####.....] 5/10"
    line = "12/03 13:39:11 - mmengine - INFO - Iter(train) [ 50/100]  base_lr: 1.4493e-03 lr: 1.4493e-03"
    assert demo_mm.TRAIN_ITER.search(line).groups() == ("50", "100")


def test_training_shows_progress_and_returns_the_checkpoint(tmp_path, capsys):
    generate_demo_shapes(str(tmp_path / "data"), DemoShapesSpec(num_train=2, num_val=1))
    checkpoint = demo_mm.train(demo_mm.CONFIGS["seg"], str(tmp_path / "work"), str(tmp_path / "data"), "seg", 3)
    assert os.path.isfile(checkpoint) and checkpoint.endswith("iter_3.pth")
    err = capsys.readouterr().err
    assert "[demo] seg training [" in err and "3/3" in err
    assert "Iter(train) [3/3]" in open(tmp_path / "work" / "train_console.log").read()
