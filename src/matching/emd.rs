//! Exact Earth Mover's Distance between two weighted node sets (the transportation problem DeepEMD
//! solves with OpenCV's `cv2.EMD`): minimise Σ cost_ij·flow_ij subject to flow ≥ 0, row sums = supply,
//! column sums = demand (totals are equalised first, as DeepEMD rescales both sides to the node count).
//!
//! Solver: successive shortest paths from a super source to a super sink over the bipartite residual
//! graph, with dense Dijkstra on Johnson-reduced costs, augmenting by the path's bottleneck each time.
//! Simplest correct form (O((n+m)^2) per augmentation); the matching issue makes it fast.

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
    let (n, m) = (problem.supply.len(), problem.demand.len());
    assert_eq!(problem.cost.len(), n * m, "cost matrix size");
    assert!(n > 0 && m > 0, "empty EMD problem");
    let total_s: f64 = problem.supply.iter().sum();
    let total_d: f64 = problem.demand.iter().sum();
    assert!(
        total_s > 0.0 && total_d > 0.0,
        "EMD weights must be positive"
    );
    let mut supply = problem.supply.clone();
    let mut demand: Vec<f64> = problem
        .demand
        .iter()
        .map(|d| d * total_s / total_d)
        .collect();
    let cost = &problem.cost;
    let mut flow = vec![0.0f64; n * m];
    // Nodes: supply 0..n, demand n..n+m, source S = n+m, sink T = n+m+1. Johnson potentials keep every
    // residual edge's reduced cost c + pi(from) - pi(to) non-negative.
    let (s_node, t_node, nodes) = (n + m, n + m + 1, n + m + 2);
    let mut pi = vec![0.0f64; nodes];
    for j in 0..m {
        pi[n + j] = (0..n)
            .map(|i| cost[i * m + j])
            .fold(f64::INFINITY, f64::min);
    }
    pi[t_node] = pi[n..n + m].iter().copied().fold(f64::INFINITY, f64::min);
    let eps = 1e-12 * total_s.max(1.0);
    let mut guard = 0;
    while supply.iter().any(|&s| s > eps) {
        guard += 1;
        assert!(guard < 100 * nodes * nodes, "EMD did not converge");
        let mut dist = vec![f64::INFINITY; nodes];
        let mut prev = vec![usize::MAX; nodes];
        let mut done = vec![false; nodes];
        dist[s_node] = 0.0;
        loop {
            let mut x = usize::MAX;
            for k in 0..nodes {
                if !done[k] && dist[k].is_finite() && (x == usize::MAX || dist[k] < dist[x]) {
                    x = k;
                }
            }
            if x == usize::MAX || x == t_node {
                break;
            }
            done[x] = true;
            let relax = |y: usize, c: f64, dist: &mut Vec<f64>, prev: &mut Vec<usize>| {
                let d = dist[x] + (c + pi[x] - pi[y]).max(0.0);
                if d < dist[y] {
                    dist[y] = d;
                    prev[y] = x;
                }
            };
            if x == s_node {
                for (i, &left) in supply.iter().enumerate() {
                    if left > eps {
                        relax(i, 0.0, &mut dist, &mut prev);
                    }
                }
            } else if x < n {
                for j in 0..m {
                    relax(n + j, cost[x * m + j], &mut dist, &mut prev);
                }
            } else {
                let j = x - n;
                for i in 0..n {
                    if flow[i * m + j] > eps {
                        relax(i, -cost[i * m + j], &mut dist, &mut prev);
                    }
                }
                if demand[j] > eps {
                    relax(t_node, 0.0, &mut dist, &mut prev);
                }
            }
        }
        let reach = dist[t_node];
        assert!(
            reach.is_finite(),
            "a feasible transportation problem always has an augmenting path"
        );
        for k in 0..nodes {
            pi[k] += dist[k].min(reach);
        }
        // the path T <- j <- ... <- i <- S, and its bottleneck
        let mut path = vec![t_node];
        while *path.last().unwrap() != s_node {
            path.push(prev[*path.last().unwrap()]);
        }
        path.reverse();
        let (first, last) = (path[1], path[path.len() - 2]);
        let mut amount = supply[first].min(demand[last - n]);
        for w in path[1..path.len() - 1].windows(2) {
            if w[0] >= n {
                amount = amount.min(flow[w[1] * m + (w[0] - n)]);
            }
        }
        for w in path[1..path.len() - 1].windows(2) {
            if w[0] < n {
                flow[w[0] * m + (w[1] - n)] += amount;
            } else {
                flow[w[1] * m + (w[0] - n)] -= amount;
            }
        }
        supply[first] -= amount;
        demand[last - n] -= amount;
    }
    flow
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
}
