"""The ``nnfast`` command line: ``nnfast info``."""

from __future__ import annotations

import argparse
import sys


def _cmd_info(args) -> int:
    import nnfast

    info = nnfast.info()
    print(f"nnfast {info['version']}")
    if info["native"]:
        print(f"native extension: yes (OpenMP: {'yes' if info['openmp'] else 'no'})")
        print(f"ISA paths compiled: {', '.join(info['isa_compiled'])}")
        print(f"ISA paths this CPU runs: {', '.join(info['isa_supported'])}")
        print(f"ISA in use: {info['isa']}")
        for dtype, kernels in info["gemm_kernels"].items():
            k = kernels[0]
            names = ", ".join(k["name"] for k in kernels)
            print(f"GEMM kernels {dtype}: {names} (MC={k['mc']} KC={k['kc']} NC={k['nc']})")
    else:
        print(f"native extension: no ({info['native_error']}); every product uses SciPy's BLAS")
    print(f"threads: {info['num_threads']}")
    print(f"SciPy BLAS: {info['blas']}{' (fallback in use)' if info['blas_fallback'] else ''}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnfast", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="version, ISA paths, threads and BLAS in use")
    p.set_defaults(func=_cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("nnfast: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        print(f"nnfast: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
