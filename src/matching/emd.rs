//! Exact Earth Mover's Distance between two weighted node sets (the transportation problem DeepEMD
//! solves with OpenCV's `cv2.EMD`): minimise Σ cost_ij·flow_ij subject to flow ≥ 0, row sums = supply,
//! column sums = demand (totals are equalised first, as DeepEMD rescales both sides to the node count).
//!
//! Solver: the transportation simplex (`emd_simplex`: a row-greedy start, then MODI pivots), which ends
//! with dual prices that certify the optimum; a problem that reaches the pivot limit (a degenerate
//! cycle) is solved again by successive shortest paths (`emd_shortest_paths`).

use super::{emd_shortest_paths, emd_simplex};
use rayon::prelude::*;

/// One EMD problem: `n` supplies, `m` demands, `cost` row-major `n × m`.
#[derive(Debug, Clone)]
pub struct EmdProblem {
    pub supply: Vec<f64>,
    pub demand: Vec<f64>,
    pub cost: Vec<f64>,
}

/// The optimal flow (row-major `n × m`) of one problem. Weights must be positive; the demand is
/// rescaled to the supply's total.
pub fn emd_flow(problem: &EmdProblem) -> Vec<f64> {
    emd_flow_with_prices(problem).0
}

/// The optimal flow and the dual prices `(u, v)` that certify it: `cost[i][j] − u[i] − v[j] ≥ 0`
/// everywhere, and `= 0` wherever the flow is positive (up to rounding).
pub fn emd_flow_with_prices(problem: &EmdProblem) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (n, m) = (problem.supply.len(), problem.demand.len());
    assert_eq!(problem.cost.len(), n * m, "cost matrix size");
    assert!(n > 0 && m > 0, "empty EMD problem");
    let total_s: f64 = problem.supply.iter().sum();
    let total_d: f64 = problem.demand.iter().sum();
    assert!(
        total_s > 0.0
            && total_d > 0.0
            && problem
                .supply
                .iter()
                .chain(&problem.demand)
                .all(|&w| w >= 0.0),
        "EMD weights must be non-negative with positive totals"
    );
    let cost = &problem.cost;
    assert!(cost.iter().all(|c| c.is_finite()), "non-finite EMD cost");
    let demand: Vec<f64> = problem
        .demand
        .iter()
        .map(|d| d * total_s / total_d)
        .collect();
    emd_simplex::solve(
        &problem.supply,
        &demand,
        cost,
        MAX_PIVOTS_PER_NODE * (n + m),
    )
    .unwrap_or_else(|| emd_shortest_paths::solve(problem.supply.clone(), demand, cost))
}

/// The simplex's pivot limit per node; a problem that reaches it (only a degenerate cycle can) is
/// solved again by successive shortest paths. Measured: random 25 × 25 problems take 41 pivots on
/// average (1,000 allowed).
const MAX_PIVOTS_PER_NODE: usize = 20;

/// Solves many problems in parallel.
pub fn emd_batch(problems: &[EmdProblem]) -> Vec<Vec<f64>> {
    problems.par_iter().map(emd_flow).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::philox::CounterRng;
    use crate::matching::assign_one;

    fn total_cost(p: &EmdProblem, flow: &[f64]) -> f64 {
        flow.iter().zip(&p.cost).map(|(f, c)| f * c).sum()
    }

    fn check_feasible(p: &EmdProblem, flow: &[f64]) {
        let scale = p.supply.iter().sum::<f64>() / p.demand.iter().sum::<f64>();
        let demand: Vec<f64> = p.demand.iter().map(|d| d * scale).collect();
        crate::matching::assert_marginals(flow, &p.supply, &demand, (1e-9, 1e-9), "flow");
        assert!(flow.iter().all(|&f| f >= -1e-12));
    }

    #[test]
    fn a_hand_computed_transport() {
        // supplies (2, 1) to demands (1, 2); costs [[1, 3], [2, 1]]: send 1 from s0 to d0, 1 from s0
        // to d1 and 1 from s1 to d1: total 1 + 3 + 1 = 5 (the alternative, s0->d1 2 and s1->d0 1, is 6+2 = 8)
        let p = EmdProblem {
            supply: vec![2.0, 1.0],
            demand: vec![1.0, 2.0],
            cost: vec![1.0, 3.0, 2.0, 1.0],
        };
        let flow = emd_flow(&p);
        check_feasible(&p, &flow);
        assert!((total_cost(&p, &flow) - 5.0).abs() < 1e-12, "{flow:?}");
    }

    #[test]
    fn equals_brute_force_on_small_integer_problems() {
        // with integer supplies and demands an optimal flow is integral (total unimodularity), so
        // enumerating integer flows of a 2x3 problem finds the LP optimum
        let mut rng = CounterRng::new(CounterRng::key_from("emd"), 0);
        for _ in 0..100 {
            let supply = [1 + rng.below(3), 1 + rng.below(3)];
            let total = supply[0] + supply[1];
            let d0 = rng.below(total);
            let d1 = rng.below(total - d0);
            let demand = [d0, d1, total - d0 - d1];
            let cost: Vec<f64> = (0..6).map(|_| rng.below(10) as f64).collect();
            let p = EmdProblem {
                supply: supply.iter().map(|&s| s as f64).collect(),
                demand: demand.iter().map(|&d| d as f64 + 1e-300).collect(),
                cost: cost.clone(),
            };
            let mut best = f64::INFINITY;
            for a in 0..=supply[0].min(demand[0]) {
                for b in 0..=(supply[0] - a).min(demand[1]) {
                    let c = supply[0] - a - b;
                    if c > demand[2] {
                        continue;
                    }
                    let (a2, b2, c2) = (demand[0] - a, demand[1] - b, demand[2] - c);
                    if a2 + b2 + c2 != supply[1] {
                        continue;
                    }
                    let t = a as f64 * cost[0]
                        + b as f64 * cost[1]
                        + c as f64 * cost[2]
                        + a2 as f64 * cost[3]
                        + b2 as f64 * cost[4]
                        + c2 as f64 * cost[5];
                    best = best.min(t);
                }
            }
            let flow = emd_flow(&p);
            assert!(
                (total_cost(&p, &flow) - best).abs() < 1e-6,
                "{supply:?} {demand:?} {cost:?}"
            );
        }
    }

    #[test]
    fn unit_weights_reduce_to_the_assignment_problem() {
        let mut rng = CounterRng::new(CounterRng::key_from("emd-assign"), 0);
        for n in [3, 5, 9] {
            for _ in 0..10 {
                let cost32: Vec<f32> = (0..n * n).map(|_| rng.unit_f32()).collect();
                let p = EmdProblem {
                    supply: vec![1.0; n],
                    demand: vec![1.0; n],
                    cost: cost32.iter().map(|&c| c as f64).collect(),
                };
                let flow = emd_flow(&p);
                check_feasible(&p, &flow);
                let perm = assign_one(&cost32, n);
                let hungarian: f64 = (0..n)
                    .map(|r| cost32[r * n + perm[r] as usize] as f64)
                    .sum();
                assert!((total_cost(&p, &flow) - hungarian).abs() < 1e-5);
            }
        }
    }

    /// Weights uniform in [floor, floor + 1), costs uniform in [0, cost_scale).
    fn random_problem(
        rng: &mut CounterRng,
        (n, m): (usize, usize),
        floor: f64,
        cost_scale: f64,
    ) -> EmdProblem {
        let mut weights = |k: usize| (0..k).map(|_| floor + rng.unit_f32() as f64).collect();
        let (supply, demand) = (weights(n), weights(m));
        EmdProblem {
            supply,
            demand,
            cost: (0..n * m)
                .map(|_| cost_scale * rng.unit_f32() as f64)
                .collect(),
        }
    }

    #[test]
    fn random_weighted_problems_are_feasible_and_optimal_by_perturbation() {
        let mut rng = CounterRng::new(CounterRng::key_from("emd-rand"), 0);
        for _ in 0..20 {
            let (n, m) = (2 + rng.below(8) as usize, 2 + rng.below(8) as usize);
            let p = random_problem(&mut rng, (n, m), 0.1, 1.0);
            let flow = emd_flow(&p);
            check_feasible(&p, &flow);
            let best = total_cost(&p, &flow);
            // no 2x2 cycle move (the simplex's pivot) improves the cost
            for i in 0..n {
                for k in 0..n {
                    for j in 0..m {
                        for l in 0..m {
                            let delta = flow[i * m + j].min(flow[k * m + l]);
                            if i == k || j == l || delta <= 1e-12 {
                                continue;
                            }
                            let change = delta
                                * (p.cost[i * m + l] + p.cost[k * m + j]
                                    - p.cost[i * m + j]
                                    - p.cost[k * m + l]);
                            assert!(change > -1e-9, "an improving cycle exists: total {best}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn dual_prices_certify_optimality_on_random_problems() {
        // feasible flow + feasible duals + complementary slackness = an LP optimum
        let mut rng = CounterRng::new(CounterRng::key_from("emd-dual"), 0);
        for _ in 0..200 {
            let (n, m) = (1 + rng.below(30) as usize, 1 + rng.below(30) as usize);
            let p = random_problem(&mut rng, (n, m), 0.05, 2.0);
            let (flow, u, v) = emd_flow_with_prices(&p);
            check_feasible(&p, &flow);
            let scale = p.supply.iter().sum::<f64>() / p.demand.iter().sum::<f64>();
            for i in 0..n {
                for j in 0..m {
                    let reduced = p.cost[i * m + j] - u[i] - v[j];
                    assert!(
                        reduced > -1e-9,
                        "negative reduced cost {reduced} at ({i}, {j})"
                    );
                    if flow[i * m + j] > 1e-12 {
                        assert!(reduced < 1e-9, "flow on a non-tight edge ({i}, {j})");
                    }
                }
            }
            let dual: f64 = (0..n).map(|i| p.supply[i] * u[i]).sum::<f64>()
                + (0..m).map(|j| p.demand[j] * scale * v[j]).sum::<f64>();
            assert!((dual - total_cost(&p, &flow)).abs() < 1e-9);
        }
    }
}
