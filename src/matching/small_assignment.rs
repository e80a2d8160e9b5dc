//! The fast exact assignment for the small dense matrices LWFM-SPM produces (9×9 for 3×3 maps, 25×25
//! for 5×5): the shortest-augmenting-path Hungarian algorithm with row/column potentials (Kuhn 1955,
//! Jonker & Volgenant 1987; the O(n³) form popularised by e-maxx), on fixed-size stack arrays, so one
//! problem allocates nothing. Costs are read as f32 and accumulated in f64. Ties are broken by the
//! fixed scan order, so results are deterministic. Checked against `pathfinding`'s Kuhn–Munkres and
//! brute force in the tests.

/// Largest n the stack arrays hold.
pub const MAX_N: usize = 64;

/// The optimal assignment of an `n`×`n` row-major cost matrix into `out` (`out[row] = column`).
pub fn assign_small(costs: &[f32], n: usize, out: &mut [u32]) {
    assert!(n <= MAX_N, "assign_small handles n <= {MAX_N}, got {n}");
    assert_eq!(costs.len(), n * n, "cost matrix size");
    assert!(out.len() >= n, "output too short");
    const INF: f64 = f64::INFINITY;
    // 1-based: index 0 is the virtual column/row the augmenting path starts from
    let mut u = [0f64; MAX_N + 1];
    let mut v = [0f64; MAX_N + 1];
    let mut p = [0usize; MAX_N + 1]; // p[j] = row assigned to column j
    let mut way = [0usize; MAX_N + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0usize;
        let mut minv = [INF; MAX_N + 1];
        let mut used = [false; MAX_N + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let row = &costs[(i0 - 1) * n..i0 * n];
            let mut delta = INF;
            let mut j1 = 0usize;
            for j in 1..=n {
                if !used[j] {
                    let cur = row[j - 1] as f64 - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    for j in 1..=n {
        out[p[j] - 1] = (j - 1) as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::philox::CounterRng;
    use crate::matching::assignment::assign_one;

    fn total(costs: &[f32], n: usize, perm: &[u32]) -> f64 {
        (0..n).map(|r| costs[r * n + perm[r] as usize] as f64).sum()
    }

    #[test]
    fn equals_pathfinding_on_random_matrices_up_to_25() {
        let mut rng = CounterRng::new(CounterRng::key_from("small-assignment"), 0);
        for n in [1, 2, 3, 5, 9, 16, 25] {
            for _ in 0..40 {
                let costs: Vec<f32> = (0..n * n).map(|_| 2.0 * rng.unit_f32()).collect();
                let mut fast = vec![0u32; n];
                assign_small(&costs, n, &mut fast);
                let reference = assign_one(&costs, n);
                let mut sorted = fast.clone();
                sorted.sort();
                assert_eq!(sorted, (0..n as u32).collect::<Vec<_>>(), "a permutation");
                // pathfinding works on costs rounded to 1e-6, so totals agree to n * 1e-6
                assert!(
                    (total(&costs, n, &fast) - total(&costs, n, &reference)).abs()
                        <= n as f64 * 1e-6
                );
            }
        }
    }

    #[test]
    fn a_hand_computed_case_and_ties() {
        let costs = [9.0, 9.0, 1.0, 2.0, 9.0, 9.0, 9.0, 1.0, 9.0];
        let mut out = [0u32; 3];
        assign_small(&costs, 3, &mut out);
        assert_eq!(out, [2, 0, 1]);
        let flat = [0.5f32; 81];
        let (mut a, mut b) = ([0u32; 9], [0u32; 9]);
        assign_small(&flat, 9, &mut a);
        assign_small(&flat, 9, &mut b);
        assert_eq!(a, b);
    }
}
