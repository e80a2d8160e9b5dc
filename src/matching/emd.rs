//! Exact Earth Mover's Distance between two weighted node sets (the transportation problem DeepEMD
//! solves with OpenCV's `cv2.EMD`): minimise Σ cost_ij·flow_ij subject to flow ≥ 0, row sums = supply,
//! column sums = demand (totals are equalised first, as DeepEMD rescales both sides to the node count).
//!
//! Solver: successive shortest paths on the bipartite residual graph with row and column dual
//! prices (the transportation form of the Hungarian method; Ahuja, Magnanti & Orlin, "Network Flows",
//! ch. 9), started like Jonker & Volgenant's assignment solver: column prices at the column minima
//! and a greedy flow on the tight edges, so most of the mass moves before any search. Each search is
//! a dense Dijkstra from every row with supply left, over columns (forward edges, reduced cost
//! c − u − v ≥ 0) and back to rows along edges that carry flow (reduced cost 0), ending at the first
//! column with demand left; prices move by the distances, keeping every reduced cost ≥ 0 and every
//! edge with flow tight, which certifies optimality at the end (LP duality). The per-problem work
//! arrays are allocated once; nothing is allocated per search.

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
    let mut supply = problem.supply.clone();
    let mut demand: Vec<f64> = problem
        .demand
        .iter()
        .map(|d| d * total_s / total_d)
        .collect();
    let eps = 1e-12 * total_s.max(1.0);
    let mut flow = vec![0.0f64; n * m];
    let mut u = vec![0.0f64; n];
    let mut v = vec![0.0f64; m];

    // start: v[j] = min_i c[i][j] (u = 0, all reduced costs >= 0), then greedy flow on tight edges:
    // each column from its cheapest row, then each row with supply left raises its price to its
    // cheapest reduced cost and ships along its tight edges
    for j in 0..m {
        let (mut best, mut arg) = (f64::INFINITY, 0);
        for i in 0..n {
            if cost[i * m + j] < best {
                best = cost[i * m + j];
                arg = i;
            }
        }
        v[j] = best;
        ship(&mut flow, &mut supply, &mut demand, arg, j, m);
    }
    for i in 0..n {
        if supply[i] <= eps {
            continue;
        }
        let row = &cost[i * m..(i + 1) * m];
        let has_flow = flow[i * m..(i + 1) * m].iter().any(|&f| f > 0.0);
        if !has_flow {
            u[i] = (0..m).map(|j| row[j] - v[j]).fold(f64::INFINITY, f64::min);
        }
        for j in 0..m {
            if supply[i] <= eps {
                break;
            }
            if demand[j] > eps && row[j] - u[i] - v[j] <= 0.0 {
                ship(&mut flow, &mut supply, &mut demand, i, j, m);
            }
        }
    }

    // successive shortest paths
    let mut col_dist = vec![0.0f64; m];
    let mut col_pred = vec![0usize; m]; // the row a column was reached from
    let mut col_done = vec![false; m];
    let mut row_dist = vec![0.0f64; n];
    let mut row_pred = vec![NONE; n]; // the column a row was reached from (NONE: a source)
    let mut row_reached = vec![false; n];
    let mut guard = 0usize;
    while supply.iter().any(|&s| s > eps) {
        guard += 1;
        assert!(guard <= 4 * (n + m) * (n + m) + 16, "EMD did not converge");
        col_dist.fill(f64::INFINITY);
        col_done.fill(false);
        row_reached.fill(false);
        let scan =
            |i: usize, d: f64, col_dist: &mut [f64], col_pred: &mut [usize], col_done: &[bool]| {
                let row = &cost[i * m..(i + 1) * m];
                for j in 0..m {
                    if !col_done[j] {
                        let through = d + (row[j] - u[i] - v[j]).max(0.0);
                        if through < col_dist[j] {
                            col_dist[j] = through;
                            col_pred[j] = i;
                        }
                    }
                }
            };
        for i in 0..n {
            if supply[i] > eps {
                row_reached[i] = true;
                row_dist[i] = 0.0;
                row_pred[i] = NONE;
                scan(i, 0.0, &mut col_dist, &mut col_pred, &col_done);
            }
        }
        let sink = loop {
            let mut best = NONE;
            for j in 0..m {
                if !col_done[j] && (best == NONE || col_dist[j] < col_dist[best]) {
                    best = j;
                }
            }
            assert!(
                best != NONE && col_dist[best].is_finite(),
                "a balanced transportation problem always has an augmenting path"
            );
            col_done[best] = true;
            if demand[best] > eps {
                break best;
            }
            let d = col_dist[best];
            for i in 0..n {
                if !row_reached[i] && flow[i * m + best] > 0.0 {
                    row_reached[i] = true;
                    row_dist[i] = d;
                    row_pred[i] = best;
                    scan(i, d, &mut col_dist, &mut col_pred, &col_done);
                }
            }
        };
        // prices: every node reached closer than the sink moves by its distance to the sink
        let reach = col_dist[sink];
        for i in 0..n {
            if row_reached[i] {
                u[i] += reach - row_dist[i];
            }
        }
        for j in 0..m {
            if col_done[j] {
                v[j] -= reach - col_dist[j];
            }
        }
        // the path sink <- row <- column <- row ... <- source row, and its bottleneck
        let mut amount = demand[sink];
        let mut j = sink;
        let source = loop {
            let i = col_pred[j];
            match row_pred[i] {
                NONE => break i,
                back => {
                    amount = amount.min(flow[i * m + back]);
                    j = back;
                }
            }
        };
        amount = amount.min(supply[source]);
        let mut j = sink;
        loop {
            let i = col_pred[j];
            flow[i * m + j] += amount;
            match row_pred[i] {
                NONE => break,
                back => {
                    let f = &mut flow[i * m + back];
                    *f -= amount;
                    if *f <= eps {
                        *f = 0.0;
                    }
                    j = back;
                }
            }
        }
        supply[source] -= amount;
        demand[sink] -= amount;
    }
    (flow, u, v)
}

/// No node.
const NONE: usize = usize::MAX;

/// Ships as much as row `i` and column `j` both have left along edge (i, j).
fn ship(flow: &mut [f64], supply: &mut [f64], demand: &mut [f64], i: usize, j: usize, m: usize) {
    let amount = supply[i].min(demand[j]);
    if amount > 0.0 {
        flow[i * m + j] += amount;
        supply[i] -= amount;
        demand[j] -= amount;
    }
}

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
        let (n, m) = (p.supply.len(), p.demand.len());
        let scale = p.supply.iter().sum::<f64>() / p.demand.iter().sum::<f64>();
        for i in 0..n {
            let row: f64 = (0..m).map(|j| flow[i * m + j]).sum();
            assert!(
                (row - p.supply[i]).abs() < 1e-9,
                "row {i}: {row} vs {}",
                p.supply[i]
            );
        }
        for j in 0..m {
            let col: f64 = (0..n).map(|i| flow[i * m + j]).sum();
            assert!((col - p.demand[j] * scale).abs() < 1e-9, "column {j}");
        }
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

    #[test]
    fn random_weighted_problems_are_feasible_and_optimal_by_perturbation() {
        let mut rng = CounterRng::new(CounterRng::key_from("emd-rand"), 0);
        for _ in 0..20 {
            let (n, m) = (2 + rng.below(8) as usize, 2 + rng.below(8) as usize);
            let p = EmdProblem {
                supply: (0..n).map(|_| 0.1 + rng.unit_f32() as f64).collect(),
                demand: (0..m).map(|_| 0.1 + rng.unit_f32() as f64).collect(),
                cost: (0..n * m).map(|_| rng.unit_f32() as f64).collect(),
            };
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
            let p = EmdProblem {
                supply: (0..n).map(|_| 0.05 + rng.unit_f32() as f64).collect(),
                demand: (0..m).map(|_| 0.05 + rng.unit_f32() as f64).collect(),
                cost: (0..n * m).map(|_| 2.0 * rng.unit_f32() as f64).collect(),
            };
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
