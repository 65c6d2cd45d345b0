#!/usr/bin/python3
"""Compare two safetensors files tensor by tensor (e.g. engine output vs tools/torch_ref.py).

  /usr/bin/python3 tools/compare_tensors.py A.safetensors B.safetensors [--rtol 1e-4]
      [--ignore NAME_OR_GLOB ...] [--quiet]

For every name in both files prints shape, max|a-b|, max|b| and rel = max|a-b| / max(max|b|, 1e-12)
(B is the reference). Exit 1 if the name sets differ (names matching an --ignore pattern, fnmatch
globs such as 'aux.*', are skipped on both sides), if shapes differ, if anything is non-finite in
only one file, or if any rel > rtol; exit 0 otherwise. Reads F64/F32/F16/BF16/I64/I32/...;
everything is compared in float64.
"""
import argparse
import fnmatch
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import read_safetensors  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a")
    ap.add_argument("b", help="reference")
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--ignore", nargs="*", default=[], help="names or fnmatch globs to skip")
    ap.add_argument("--quiet", action="store_true", help="print only failures and the summary")
    args = ap.parse_args()
    A, _ = read_safetensors(args.a)
    B, _ = read_safetensors(args.b)
    skip = lambda n: any(fnmatch.fnmatchcase(n, p) for p in args.ignore)  # noqa: E731
    na = {n for n in A if not skip(n)}
    nb = {n for n in B if not skip(n)}
    failures = []
    for n in sorted(na - nb):
        failures.append(f"{n}: only in {args.a}")
    for n in sorted(nb - na):
        failures.append(f"{n}: only in {args.b}")
    names = sorted(na & nb)
    w = max([len(n) for n in names] + [4])
    print(f"{'name':<{w}}  {'shape':<16} {'max|a-b|':>11} {'max|b|':>11} {'rel':>11}")
    worst = (0.0, None)
    for n in names:
        a = A[n].astype(np.float64)
        b = B[n].astype(np.float64)
        if a.shape != b.shape:
            failures.append(f"{n}: shape {a.shape} vs {b.shape}")
            print(f"{n:<{w}}  SHAPE MISMATCH {a.shape} vs {b.shape}")
            continue
        fa, fb = np.isfinite(a), np.isfinite(b)
        if not np.array_equal(fa, fb) or not np.array_equal(a[~fa], b[~fb]):
            failures.append(f"{n}: non-finite values differ")
            print(f"{n:<{w}}  NON-FINITE MISMATCH")
            continue
        diff = float(np.abs(a[fa] - b[fb]).max()) if fa.any() else 0.0
        bmax = float(np.abs(b[fb]).max()) if fb.any() else 0.0
        rel = diff / max(bmax, 1e-12)
        bad = rel > args.rtol
        if bad:
            failures.append(f"{n}: rel {rel:.3e} > rtol {args.rtol:g}")
        if rel >= worst[0]:
            worst = (rel, n)
        if bad or not args.quiet:
            print(f"{n:<{w}}  {str(list(a.shape)):<16} {diff:11.4e} {bmax:11.4e} {rel:11.4e}"
                  + ("  FAIL" if bad else ""))
    print(f"compared {len(names)} tensors; worst rel {worst[0]:.3e} ({worst[1]}); "
          f"{len(failures)} failure(s)")
    for f in failures:
        print("FAIL " + f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
