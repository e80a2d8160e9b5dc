//! Entropic optimal transport by Sinkhorn's iterations (Cuturi, "Sinkhorn Distances", NeurIPS 2013),
//! in the log domain (Peyré & Cuturi, "Computational Optimal Transport", §4.4) and written in tensor
//! ops, so gradients flow through the plan into the costs and the node weights: the differentiable
//! alternative to the exact EMD (whose flow the DeepEMD-style head treats as a constant, like the
//! authors' OpenCV solver; their differentiable option is a QP layer, `qpth`, not this).
//!
//! The plan minimises ⟨P, C⟩ − ε·H(P) with row sums a and column sums b, H(P) = −Σ P (log P − 1).
//! Dual potentials f (rows) and g (columns) start at 0 and alternate
//!   f_i = ε log a_i − ε log Σ_j exp((g_j − C_ij) / ε),   g_j = ε log b_j − ε log Σ_i exp((f_i − C_ij) / ε),
//! a fixed number of times, and the plan is P_ij = exp((f_i + g_j − C_ij) / ε). The last update is
//! g's, so column sums are exact and row sums converge with the iterations. Its cost exceeds the
//! exact EMD's by at most ε · mass · ln(n·m) once converged (tested against the exact solver).
//!
//! Gradients: the last [`GRADIENT_ITERATIONS`] updates are recorded for autograd, started from the
//! potentials the earlier updates reached on detached inputs (truncated unrolling). With at most
//! that many iterations the backward pass is the exact derivative of the computed plan (tested by
//! finite differences); with more, it is the derivative of the last updates from a fixed start, which
//! approaches the converged plan's derivative as the potentials settle. The window exists because
//! candle's backward pass recurses once per recorded op: about 500 unrolled updates overflow a 2 MiB
//! thread stack (measured). Memory: autograd keeps a few (batch, n, m) tensors per recorded update.

use candle_core::{Result, Tensor};

/// Sinkhorn updates recorded for the backward pass (the last ones).
pub const GRADIENT_ITERATIONS: usize = 100;

/// The entropic plan for a batch: `cost` (B, n, m), `a` (B, n) and `b` (B, m) positive weights
/// with equal totals per problem; returns (B, n, m).
pub fn sinkhorn_plan(
    cost: &Tensor,
    a: &Tensor,
    b: &Tensor,
    epsilon: f64,
    iterations: usize,
) -> Result<Tensor> {
    assert!(epsilon > 0.0, "Sinkhorn's epsilon must be positive");
    assert!(iterations > 0, "Sinkhorn needs at least one iteration");
    let scaled = (cost / epsilon)?; // C / ε
    let log_a = a.log()?;
    let log_b = b.log()?;
    let mut f = a.zeros_like()?; // f / ε
    let mut g = b.zeros_like()?.detach(); // g / ε
    let untracked = iterations.saturating_sub(GRADIENT_ITERATIONS);
    let (scaled_d, log_a_d, log_b_d) = (scaled.detach(), log_a.detach(), log_b.detach());
    for _ in 0..untracked {
        (f, g) = update(&g, &scaled_d, &log_a_d, &log_b_d)?;
    }
    for _ in untracked..iterations {
        (f, g) = update(&g, &scaled, &log_a, &log_b)?;
    }
    f.unsqueeze(2)?
        .broadcast_add(&g.unsqueeze(1)?)?
        .broadcast_sub(&scaled)?
        .exp()
}

/// One Sinkhorn update of the scaled potentials (f/ε, g/ε) from the last g: rows, then columns.
fn update(g: &Tensor, scaled: &Tensor, log_a: &Tensor, log_b: &Tensor) -> Result<(Tensor, Tensor)> {
    // f_i/ε = log a_i − log Σ_j exp(g_j/ε − C_ij/ε)
    let f = (log_a - log_sum_exp(&g.unsqueeze(1)?.broadcast_sub(scaled)?, 2)?)?;
    // g_j/ε = log b_j − log Σ_i exp(f_i/ε − C_ij/ε)
    let g = (log_b - log_sum_exp(&f.unsqueeze(2)?.broadcast_sub(scaled)?, 1)?)?;
    Ok((f, g))
}

/// log Σ exp(x) along `dim` (removed), shifted by the detached maximum: the shift cancels in value
/// and in gradient, so it needs no gradient of its own.
fn log_sum_exp(x: &Tensor, dim: usize) -> Result<Tensor> {
    let top = x.max_keepdim(dim)?.detach();
    x.broadcast_sub(&top)?
        .exp()?
        .sum_keepdim(dim)?
        .log()?
        .add(&top)?
        .squeeze(dim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::philox::CounterRng;
    use crate::matching::{emd_flow, EmdProblem};
    use candle_core::{DType, Device, Var};

    fn random_problem(rng: &mut CounterRng, n: usize, m: usize) -> EmdProblem {
        let supply: Vec<f64> = (0..n).map(|_| 0.2 + rng.unit_f32() as f64).collect();
        let demand: Vec<f64> = (0..m).map(|_| 0.2 + rng.unit_f32() as f64).collect();
        let scale = supply.iter().sum::<f64>() / demand.iter().sum::<f64>();
        EmdProblem {
            demand: demand.iter().map(|d| d * scale).collect(),
            supply,
            cost: (0..n * m).map(|_| 2.0 * rng.unit_f32() as f64).collect(),
        }
    }

    fn plan_of(p: &EmdProblem, epsilon: f64, iterations: usize) -> Vec<f64> {
        let (n, m) = (p.supply.len(), p.demand.len());
        let dev = Device::Cpu;
        let cost = Tensor::from_vec(p.cost.clone(), (1, n, m), &dev).unwrap();
        let a = Tensor::from_vec(p.supply.clone(), (1, n), &dev).unwrap();
        let b = Tensor::from_vec(p.demand.clone(), (1, m), &dev).unwrap();
        crate::test_support::values(&sinkhorn_plan(&cost, &a, &b, epsilon, iterations).unwrap())
    }

    #[test]
    fn the_plan_meets_the_weights_and_approaches_the_exact_optimum() {
        let mut rng = CounterRng::new(CounterRng::key_from("sinkhorn"), 0);
        for _ in 0..10 {
            let (n, m) = (2 + rng.below(6) as usize, 2 + rng.below(6) as usize);
            let p = random_problem(&mut rng, n, m);
            let exact: f64 = emd_flow(&p).iter().zip(&p.cost).map(|(f, c)| f * c).sum();
            let mass: f64 = p.supply.iter().sum();
            let mut last_gap = f64::INFINITY;
            for epsilon in [0.5, 0.2, 0.1, 0.05] {
                let plan = plan_of(&p, epsilon, 3000);
                let what = format!("ε = {epsilon}");
                crate::matching::assert_marginals(&plan, &p.supply, &p.demand, (1e-6, 1e-9), &what);
                let cost: f64 = plan.iter().zip(&p.cost).map(|(f, c)| f * c).sum();
                let gap = cost - exact;
                // a feasible plan costs at least the LP optimum; the entropic one at most
                // ε · mass · ln(n·m) more
                assert!(gap > -1e-6, "below the exact optimum: {cost} < {exact}");
                let bound = epsilon * mass * ((n * m) as f64).ln();
                assert!(gap <= bound, "ε = {epsilon}: gap {gap} > {bound}");
                assert!(gap <= last_gap + 1e-9, "the gap grew as ε shrank");
                last_gap = gap;
            }
        }
    }

    /// (autograd, central difference) for each entry of one input.
    type GradientPairs = Vec<(f64, f64)>;

    /// Autograd against central differences for Σ w ⊙ plan(cost, a) on a seeded problem: the
    /// gradients with respect to the costs and to the row weights, each as (autograd, numeric) pairs.
    /// (Changing one row weight unbalances the problem; the derivative of the computation is still
    /// defined, which is what is checked.)
    fn gradient_pairs(
        key: &str,
        (n, m): (usize, usize),
        epsilon: f64,
        iterations: usize,
    ) -> (GradientPairs, GradientPairs) {
        let mut rng = CounterRng::new(CounterRng::key_from(key), 0);
        let p = random_problem(&mut rng, n, m);
        let weights: Vec<f64> = (0..n * m).map(|_| rng.unit_f32() as f64 - 0.5).collect();
        let dev = Device::Cpu;
        let w = Tensor::from_vec(weights, (1, n, m), &dev).unwrap();
        let b = Tensor::from_vec(p.demand.clone(), (1, m), &dev).unwrap();
        let loss = |cost: &Tensor, a: &Tensor| -> Tensor {
            sinkhorn_plan(cost, a, &b, epsilon, iterations)
                .unwrap()
                .mul(&w)
                .unwrap()
                .sum_all()
                .unwrap()
        };
        let cost =
            Var::from_tensor(&Tensor::from_vec(p.cost.clone(), (1, n, m), &dev).unwrap()).unwrap();
        let a =
            Var::from_tensor(&Tensor::from_vec(p.supply.clone(), (1, n), &dev).unwrap()).unwrap();
        let grads = loss(cost.as_tensor(), a.as_tensor()).backward().unwrap();
        let autograd = |v: &Var| -> Vec<f64> {
            let g = grads.get(v.as_tensor()).unwrap();
            assert_eq!(g.dtype(), DType::F64);
            g.flatten_all().unwrap().to_vec1().unwrap()
        };
        let value = |c: &[f64], a: &[f64]| -> f64 {
            let c = Tensor::from_vec(c.to_vec(), (1, n, m), &dev).unwrap();
            let a = Tensor::from_vec(a.to_vec(), (1, n), &dev).unwrap();
            loss(&c, &a).to_scalar::<f64>().unwrap()
        };
        let h = 1e-6;
        let central = |at: &dyn Fn(&[f64]) -> f64, x: &[f64], k: usize| -> f64 {
            let (mut up, mut down) = (x.to_vec(), x.to_vec());
            up[k] += h;
            down[k] -= h;
            (at(&up) - at(&down)) / (2.0 * h)
        };
        let by_cost: Vec<f64> = (0..n * m)
            .map(|k| central(&|c| value(c, &p.supply), &p.cost, k))
            .collect();
        let by_row: Vec<f64> = (0..n)
            .map(|i| central(&|a| value(&p.cost, a), &p.supply, i))
            .collect();
        (
            autograd(&cost).into_iter().zip(by_cost).collect(),
            autograd(&a).into_iter().zip(by_row).collect(),
        )
    }

    #[test]
    fn past_the_gradient_window_the_gradient_is_the_converged_plans() {
        // 500 iterations at ε = 0.5 converge long before the recorded last 100, so the truncated
        // backward pass should agree with finite differences of the whole computation
        let (by_cost, _) =
            gradient_pairs("sinkhorn-window", (4, 3), 0.5, GRADIENT_ITERATIONS + 400);
        for (k, (g, numeric)) in by_cost.into_iter().enumerate() {
            assert!(
                (numeric - g).abs() < 1e-5 * (1.0 + numeric.abs()),
                "d/dcost[{k}]: {numeric} vs {g}"
            );
        }
    }

    #[test]
    fn gradients_through_the_plan_match_finite_differences() {
        let (by_cost, by_row) = gradient_pairs("sinkhorn-grad", (3, 4), 0.2, 50);
        for (k, (g, numeric)) in by_cost.into_iter().enumerate() {
            assert!(
                (numeric - g).abs() < 1e-6 * (1.0 + numeric.abs()),
                "d/dcost[{k}]: {numeric} vs {g}"
            );
        }
        for (i, (g, numeric)) in by_row.into_iter().enumerate() {
            assert!(
                (numeric - g).abs() < 1e-6 * (1.0 + numeric.abs()),
                "d/da[{i}]: {numeric} vs {g}"
            );
        }
    }
}
