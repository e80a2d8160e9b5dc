//! Exact linear sum assignment (the Hungarian problem, what `scipy.optimize.linear_sum_assignment`
//! solves), through `pathfinding`'s Kuhn–Munkres. Costs are scaled to integers with
//! [`ASSIGNMENT_SCALE`] (1e-6 resolution on LWFM-SPM's costs in [0, 2]), so two assignments whose
//! totals differ by less than about n·1e-6 may be taken as ties.
//! The batch entry point uses the allocation-free solver of [`super::small_assignment`] for small
//! matrices and keeps this one as the general solver and the reference.

use pathfinding::kuhn_munkres::kuhn_munkres_min;
use pathfinding::matrix::Matrix;
use rayon::prelude::*;

use super::small_assignment::{assign_small, MAX_N};

/// Integer units per unit of cost.
pub const ASSIGNMENT_SCALE: f32 = 1e6;

/// The optimal assignment of an `n`×`n` cost matrix (row-major): `perm[row] = column`.
pub fn assign_one(costs: &[f32], n: usize) -> Vec<u32> {
    assert_eq!(costs.len(), n * n, "cost matrix size");
    if n == 0 {
        return Vec::new();
    }
    let scaled: Vec<i64> = costs
        .iter()
        .map(|&c| {
            assert!(c.is_finite(), "non-finite assignment cost {c}");
            (c as f64 * ASSIGNMENT_SCALE as f64).round() as i64
        })
        .collect();
    let matrix = Matrix::from_vec(n, n, scaled).expect("square");
    let (_, perm) = kuhn_munkres_min(&matrix);
    perm.into_iter().map(|c| c as u32).collect()
}

/// `batch` problems of `n`×`n`, concatenated; returns the `batch * n` permutations concatenated.
/// Matrices up to [`MAX_N`] go to the allocation-free solver, in parallel blocks of problems; larger
/// ones to `pathfinding`.
pub fn assign_batch(costs: &[f32], n: usize) -> Vec<u32> {
    if n == 0 {
        return Vec::new();
    }
    assert_eq!(
        costs.len() % (n * n),
        0,
        "costs are not a whole number of {n}x{n} matrices"
    );
    if n > MAX_N {
        return costs
            .par_chunks(n * n)
            .flat_map_iter(|m| assign_one(m, n))
            .collect();
    }
    let batch = costs.len() / (n * n);
    let mut out = vec![0u32; batch * n];
    // blocks of problems big enough that one rayon task costs far more than its scheduling
    let per_task = (4096 / (n * n)).max(1);
    out.par_chunks_mut(per_task * n)
        .zip(costs.par_chunks(per_task * n * n))
        .for_each(|(out, costs)| {
            for (o, m) in out.chunks_mut(n).zip(costs.chunks(n * n)) {
                assign_small(m, n, o);
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::philox::CounterRng;

    fn total(costs: &[f32], n: usize, perm: &[u32]) -> f64 {
        (0..n).map(|r| costs[r * n + perm[r] as usize] as f64).sum()
    }

    /// Every permutation of 0..n (Heap's algorithm), for brute force.
    fn permutations(n: usize) -> Vec<Vec<u32>> {
        fn heap(k: usize, a: &mut Vec<u32>, out: &mut Vec<Vec<u32>>) {
            if k <= 1 {
                out.push(a.clone());
                return;
            }
            for i in 0..k {
                heap(k - 1, a, out);
                let j = if k.is_multiple_of(2) { i } else { 0 };
                a.swap(j, k - 1);
            }
        }
        let mut out = Vec::new();
        heap(n, &mut (0..n as u32).collect(), &mut out);
        out
    }

    #[test]
    fn a_hand_computed_case() {
        // rows prefer columns (2, 0, 1): total 1 + 2 + 1 = 4, every other permutation costs more
        let costs = [9.0, 9.0, 1.0, 2.0, 9.0, 9.0, 9.0, 1.0, 9.0];
        assert_eq!(assign_one(&costs, 3), vec![2, 0, 1]);
    }

    #[test]
    fn matches_brute_force_on_random_matrices() {
        let mut rng = CounterRng::new(CounterRng::key_from("hungarian"), 0);
        for n in 1..=6 {
            let perms = permutations(n);
            for _ in 0..30 {
                let costs: Vec<f32> = (0..n * n).map(|_| 2.0 * rng.unit_f32()).collect();
                let perm = assign_one(&costs, n);
                let best = perms
                    .iter()
                    .map(|p| total(&costs, n, p))
                    .fold(f64::INFINITY, f64::min);
                assert!(
                    (total(&costs, n, &perm) - best).abs() < 1e-4 * n as f64,
                    "n={n}"
                );
                let mut sorted = perm.clone();
                sorted.sort();
                assert_eq!(sorted, (0..n as u32).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn batches_are_optimal_one_by_one_and_ties_are_deterministic() {
        let mut rng = CounterRng::new(CounterRng::key_from("batch"), 1);
        let costs: Vec<f32> = (0..200 * 81).map(|_| rng.unit_f32()).collect();
        let batched = assign_batch(&costs, 9);
        for (k, m) in costs.chunks(81).enumerate() {
            let reference = assign_one(m, 9);
            let got = &batched[k * 9..(k + 1) * 9];
            assert!(
                (total(m, 9, got) - total(m, 9, &reference)).abs() < 1e-5,
                "problem {k}"
            );
        }
        assert_eq!(assign_batch(&costs, 9), batched);
        let flat = vec![0.5f32; 81];
        assert_eq!(assign_one(&flat, 9), assign_one(&flat, 9));
    }
}
