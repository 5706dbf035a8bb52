"""``bench split export`` and ``bench split verify``: a suite's splits as files, and their check."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.cli.arguments import plan_with_data_dir

NAME = "split"


def add_parser(sub: Any) -> None:
    split = sub.add_parser(
        "split", help="export a suite's splits as files, or verify exported ones"
    )
    verbs = split.add_subparsers(dest="split_command", required=True)
    export = verbs.add_parser("export", help="write training, support, query and validation data")
    export.add_argument("--suite", required=True, help="a shipped suite name or a TOML path")
    export.add_argument("--dataset", help="only this dataset of the suite")
    export.add_argument("--seed", type=int, help="only this seed")
    export.add_argument("--out", type=Path, required=True, help="folder to write into")
    export.add_argument("--format", choices=["csv", "parquet", "recbole"], default="csv")
    export.add_argument("--data-dir", help="folder holding the dataset folders")
    verify = verbs.add_parser("verify", help="recompute an exported split; exit 1 on a difference")
    verify.add_argument("dir", type=Path, help="the folder holding manifest.json")
    verify.add_argument("--data-dir", help="folder holding the dataset folders")


def handle(args: argparse.Namespace) -> int:
    from bench.engine.split_export import export_split
    from bench.engine.split_verify import verify

    if args.split_command == "export":
        manifest = export_split(
            plan_with_data_dir(args.suite, args.data_dir),
            args.out,
            args.format,
            dataset=args.dataset,
            seed=args.seed,
        )
        print(f"{args.out}: {len(manifest['splits'])} split(s), {len(manifest['files'])} files")
        return 0
    result = verify(args.dir, args.data_dir)
    for line in result.differences:
        print(line)
    verdict = f"{len(result.differences)} difference(s)" if result.differences else "identical"
    print(f"{args.dir}: {result.splits} split(s) recomputed, {result.files} files: {verdict}")
    return 1 if result.differences else 0
