"""The scipy side of the matching benches: times `scipy.optimize.linear_sum_assignment` in a Python
loop over the same problem sizes as benches/matching.rs (uniform [0, 2) costs, seeded numpy draws of
the same distribution, not byte-identical matrices). Not used by the build or the tests.

    python benches/scipy_reference.py        # prints one line per size: problems, total ms, us/problem
"""
import time

import numpy as np
from scipy.optimize import linear_sum_assignment


def time_loop(n, count, repeats=7):
    rng = np.random.default_rng(0)
    costs = (2.0 * rng.random((count, n, n))).astype(np.float32)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for m in costs:
            linear_sum_assignment(m)
        best = min(best, time.perf_counter() - t0)
    return best


if __name__ == "__main__":
    import scipy
    print(f"scipy {scipy.__version__}, numpy {np.__version__}")
    for n, count in [(9, 3750), (9, 750), (25, 375)]:
        t = time_loop(n, count)
        print(f"scipy/linear_sum_assignment/{n}x{n}x{count}: {t * 1e3:.2f} ms total, {t / count * 1e6:.2f} us/problem (best of 7)")
