"""The POT side of the EMD bench: times `ot.emd` (POT's C++ network simplex) in a Python loop over 375
problems of 25 x 25 nodes, the size of `emd/cpu/25x25x375` in benches/matching.rs (weights uniform in
[0.05, 1.05), demand rescaled to the supply's total, costs uniform in [0, 2); seeded numpy draws of the
same distribution, not byte-identical problems). Not used by the build or the tests.

    python benches/pot_reference.py        # needs numpy and POT (pip install pot)
"""
import time

import numpy as np
import ot

if __name__ == "__main__":
    rng = np.random.default_rng(0)
    problems = [(0.05 + rng.random(25), 0.05 + rng.random(25), 2.0 * rng.random((25, 25))) for _ in range(375)]
    problems = [(a, b * a.sum() / b.sum(), c) for a, b, c in problems]
    best = float("inf")
    for _ in range(7):
        t0 = time.perf_counter()
        for a, b, c in problems:
            ot.emd(a, b, c)
        best = min(best, time.perf_counter() - t0)
    print(f"POT {ot.__version__} ot.emd 25x25x375: {best * 1e3:.2f} ms total, {best / 375 * 1e6:.2f} us/problem (best of 7)")
