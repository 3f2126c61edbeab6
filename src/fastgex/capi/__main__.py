"""``python -m fastgex.capi build --out DIR``: build libfastgex, its header and package files."""

from __future__ import annotations

import argparse
import os
import sys

from fastgex.capi._build import build


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m fastgex.capi", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="build the shared library")
    build_parser.add_argument("--out", required=True, help="output prefix (lib/, include/)")
    build_parser.add_argument(
        "--path",
        action="append",
        default=None,
        help="site directory for the embedded interpreter (repeatable; default: this "
        "Python's site-packages and the directory holding fastgex)",
    )
    build_parser.add_argument("--numba-cache-dir", default=None, help="baked NUMBA_CACHE_DIR")
    build_parser.add_argument("--python-home", default=None, help="default: sys.base_prefix")
    arguments = parser.parse_args(argv)
    try:
        result = build(
            arguments.out,
            paths=arguments.path,
            numba_cache_dir=arguments.numba_cache_dir,
            python_home=arguments.python_home,
        )
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path in (result.library, result.header, result.pkgconfig, result.cmake):
        print(os.fspath(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
