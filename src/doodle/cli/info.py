"""`doodle info`: summarise a prepared store."""

from __future__ import annotations

import argparse

from doodle.cli.options import store_folder


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="summarise a store: counts per split and class, rejects by reason",
        description="Print what a store made by `doodle prepare` holds (read from its _manifest.json).",
        epilog="example:\n  doodle info store/ --all",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("store", metavar="STORE", type=store_folder, help="a folder made by `doodle prepare`")
    p.add_argument("--all", action="store_true", help="list every class, not only the 20 largest")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from doodle.data.store import describe, load_manifest

    manifest = load_manifest(args.store)
    print(describe(manifest, max_classes=10**9 if args.all else 20))
    return 0
