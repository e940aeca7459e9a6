"""Write the demo "shapes" dataset (COCO instance + ADE-style semantic layouts) under a folder.

    python tools/make_demo_data.py [--out data/demo] [--seed 0]

Deterministic: the same seed gives byte-identical files (about 2 MB). See vssm/data/demo_shapes.py.
"""
from __future__ import annotations

import argparse
from typing import List, Optional

from vssm.data import DemoShapesSpec, generate_demo_shapes


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/demo", help="output folder (default: data/demo)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)
    roots = generate_demo_shapes(args.out, DemoShapesSpec(seed=args.seed))
    print(f"demo data written: COCO instances in {roots['coco']}, ADE-style semantic maps in {roots['ade']}")


if __name__ == "__main__":
    main()
