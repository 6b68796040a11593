"""``python -m focal_native``: print installation paths for C++ consumers."""

from __future__ import annotations

import argparse
import sys

from . import __version__, build_info, get_cmake_dir, get_include


def main(argv=None) -> int:
    """Run the command line interface."""
    parser = argparse.ArgumentParser(prog="python -m focal_native", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("--includes", action="store_true",
                        help="print the -I flag for the C++ headers")
    parser.add_argument("--include-dir", action="store_true", help="print the header directory")
    parser.add_argument("--cmakedir", action="store_true",
                        help="print the directory of focal_nativeConfig.cmake")
    parser.add_argument("--info", action="store_true",
                        help="print build facts (ISA, OpenMP, threads)")
    args = parser.parse_args(argv)
    if args.includes:
        print(f"-I{get_include()}")
    if args.include_dir:
        print(get_include())
    if args.cmakedir:
        print(get_cmake_dir())
    if args.info or not (args.includes or args.include_dir or args.cmakedir):
        for k, v in build_info().items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
