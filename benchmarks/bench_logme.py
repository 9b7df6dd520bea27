"""Time `keras_transfer.transferability.logme` against a reference, side by side.

Usage (from the repository root):

    python benchmarks/bench_logme.py [--repeats 5]
        [--reference-python PYTHON --reference-script SCRIPT]

At N=10000, D=1024, C=10, with BLAS limited to one thread (threadpoolctl),
times `logme` and `reference_logme` below interleaved in the same process
(ours, reference, ours, ...), and prints both medians, their ratio and both
values; then a table of how our time grows with N and D.
`OPENBLAS_CORETYPE` is left as the environment sets it; the value in effect
is printed.

`reference_logme` is a direct numpy transcription of Algorithm 1 of You et
al., "LogME: Practical Assessment of Pre-trained Models for Transfer
Learning" (ICML 2021), written for this benchmark: one eigendecomposition of
`F^T F`, then, for each class in turn, the fixed-point updates of alpha and
beta with the posterior mean `m` and the residual `|F m - y|^2` computed
explicitly in feature space (O(N D) per iteration), the same stopping rule
(relative change of alpha / beta below 1e-3, at most 11 iterations), and the
evidence of the paper's equation. It is not the authors' code (thuml/LogME,
numpy + numba, which has no PyPI package).

The cost is one `F^T F` (N D^2 / 2 multiply-adds, BLAS syrk), one symmetric
eigendecomposition (O(D^3)), `F^T Y` (N D C), and fixed-point iterations of
O(D C) each, vectorised over classes.

The authors' code is not part of this repository (nor may it be). To time it
as well on the same machine in the same run, install numpy + numba + scipy
in a scratch virtualenv and write a script that takes two `.npy` paths
(features, labels), times the reference's `LogME().fit(f, y)` with one BLAS
thread after a warm-up, and prints "<seconds> <value>". With
`--reference-python/--reference-script` the two sides are interleaved
(ours, reference, ours, ...) and medians compared, since the machine is shared
and absolute times are noisy.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

from keras_transfer.transferability import logme  # noqa: E402


def reference_logme(f, labels, tol=1e-3, max_iter=11):
    """LogME by Algorithm 1 of You et al. (2021), class by class, in numpy."""
    f = np.asarray(f, dtype=np.float64)
    n, d = f.shape
    classes = np.unique(labels)
    sigma, v = np.linalg.eigh(f.T @ f)  # F^T F = V diag(sigma) V^T
    sigma = np.clip(sigma, 0.0, None)
    evidences = []
    for k in classes:
        y = (labels == k).astype(np.float64)
        fty = f.T @ y
        alpha, beta = 1.0, 1.0
        for _ in range(max_iter):
            gamma = np.sum(beta * sigma / (alpha + beta * sigma))
            # m = beta A^-1 F^T y with A = alpha I + beta F^T F.
            m = beta * (v @ ((v.T @ fty) / (alpha + beta * sigma)))
            m2 = float(m @ m)
            res2 = float(np.sum((f @ m - y) ** 2))
            new_alpha = gamma / (m2 + 1e-5)
            new_beta = (n - gamma) / (res2 + 1e-5)
            ratio, new_ratio = alpha / beta, new_alpha / new_beta
            alpha, beta = new_alpha, new_beta
            if abs(new_ratio - ratio) / ratio < tol:
                break
        m = beta * (v @ ((v.T @ fty) / (alpha + beta * sigma)))
        m2 = float(m @ m)
        res2 = float(np.sum((f @ m - y) ** 2))
        evidence = (
            n / 2 * np.log(beta)
            + d / 2 * np.log(alpha)
            - n / 2 * np.log(2 * np.pi)
            - beta / 2 * res2
            - alpha / 2 * m2
            - 0.5 * np.sum(np.log(alpha + beta * sigma))
        )
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def interleaved(f, y, repeats):
    """Medians of ours and the reference, run alternately, and both values."""
    ours, theirs = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        ours_value = logme(f, y)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        their_value = reference_logme(f, y)
        theirs.append(time.perf_counter() - start)
    return float(np.median(ours)), float(np.median(theirs)), ours_value, their_value


def median_time(f, y, repeats, best=False):
    """Median (or, with `best`, minimum) seconds of `repeats` runs, and the value.

    On a shared machine the minimum is the better estimate of the intrinsic
    cost (other processes only ever add time); the median is reported too.
    """
    times = []
    value = None
    for _ in range(repeats):
        start = time.perf_counter()
        value = logme(f, y)
        times.append(time.perf_counter() - start)
    return float(np.min(times) if best else np.median(times)), value


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference-python", default=None)
    parser.add_argument("--reference-script", default=None)
    parser.add_argument("--skip-growth", action="store_true")
    args = parser.parse_args()
    print("OPENBLAS_CORETYPE =", os.environ.get("OPENBLAS_CORETYPE", "(unset)"))
    blas = [
        (i.get("internal_api"), i.get("architecture"), i.get("version"))
        for i in threadpool_info()
    ]
    print("BLAS:", blas)
    rng = np.random.default_rng(0)
    with threadpool_limits(limits=1):
        f = rng.normal(size=(10000, 1024))
        y = rng.integers(0, 10, 10000)
        logme(f[:500, :64], y[:500])  # warm-up
        reference_logme(f[:500, :64], y[:500])
        ours, theirs, value, their_value = interleaved(f, y, args.repeats)
        print(
            f"\nN=10000 D=1024 C=10, one thread, interleaved, {args.repeats} "
            f"rounds: ours median {ours:.3f} s, reference (Algorithm 1) median "
            f"{theirs:.3f} s, ratio ours/reference {ours / theirs:.2f}"
        )
        print(
            f"values: ours {value:.12f}, reference {their_value:.12f}, relative "
            f"difference {abs(value - their_value) / abs(their_value):.1e}"
        )
        if args.reference_python and args.reference_script:
            side_by_side(f, y, args)
        if args.skip_growth:
            return

        print("\nGrowth with N and D (C=10, one thread, best of 3, seconds):")
        sizes_n = (1000, 5000, 10000, 20000)
        sizes_d = (256, 512, 1024, 2048)
        print("N \\ D  " + "".join(f"{d:>9}" for d in sizes_d))
        for n in sizes_n:
            cells = []
            for d in sizes_d:
                f = rng.normal(size=(n, d))
                y = rng.integers(0, 10, n)
                cells.append(median_time(f, y, 3, best=True)[0])
            print(f"{n:>6} " + "".join(f"{c:>9.3f}" for c in cells))


def side_by_side(f, y, args):
    """Interleave ours and the reference (in its own venv), compare medians."""
    with tempfile.TemporaryDirectory() as tmp:
        f_path, y_path = os.path.join(tmp, "f.npy"), os.path.join(tmp, "y.npy")
        np.save(f_path, f)
        np.save(y_path, y)
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                   NUMBA_NUM_THREADS="1")
        ours, theirs, values = [], [], []
        for _ in range(args.repeats):
            seconds, value = median_time(f, y, 1)
            ours.append(seconds)
            out = subprocess.run(
                [args.reference_python, args.reference_script, f_path, y_path],
                capture_output=True, text=True, env=env, check=True,
            ).stdout.split()
            theirs.append(float(out[-2]))
            values.append((value, float(out[-1])))
    ours_median, theirs_median = np.median(ours), np.median(theirs)
    print(
        f"interleaved, {args.repeats} rounds: ours {ours_median:.3f} s, "
        f"reference {theirs_median:.3f} s, ratio {ours_median / theirs_median:.2f}"
    )
    ours_value, their_value = values[-1]
    print(
        f"values: ours {ours_value:.12f}, reference {their_value:.12f}, "
        f"relative difference {abs(ours_value - their_value) / abs(their_value):.1e}"
    )


if __name__ == "__main__":
    main()
