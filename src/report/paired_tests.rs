//! Paired comparisons of two methods scored on the same frozen episodes: the per-episode accuracy
//! difference with its 95% CI (the table's formula, 1.96 · std(ddof=1) / √n), a two-sided paired t-test,
//! a two-sided Wilcoxon signed-rank test (zero differences dropped, tie-corrected normal approximation
//! with continuity correction, as `scipy.stats.wilcoxon(..., zero_method="wilcox", correction=True)`
//! for large n), and Holm's step-down correction across the comparisons of one dataset and shot.
//!
//! The distribution functions are computed here (regularised incomplete beta by Lentz's continued
//! fraction, log-gamma by Lanczos' approximation; Press et al., "Numerical Recipes", §6.1–6.4), and are
//! checked against scipy's values in the tests.

use serde::{Deserialize, Serialize};

use crate::eval::stats::mean_ci95;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedComparison {
    /// Mean of (a − b) per episode, in accuracy units.
    pub mean_difference: f64,
    pub ci95: f64,
    pub n: usize,
    pub t_statistic: f64,
    pub t_p_value: f64,
    pub wilcoxon_p_value: f64,
    /// Holm-adjusted p-values (filled by [`holm`]); equal to the raw ones until then.
    pub t_p_holm: f64,
    pub wilcoxon_p_holm: f64,
}

/// Compares per-episode accuracies `a` and `b` (same episodes, same order).
pub fn paired_comparison(a: &[f64], b: &[f64]) -> PairedComparison {
    assert_eq!(
        a.len(),
        b.len(),
        "paired samples must have the same episodes"
    );
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let stats = mean_ci95(&d);
    let n = d.len();
    let (t, t_p) = if n > 1 {
        let sd = stats.ci95 / 1.96 * (n as f64).sqrt();
        if sd == 0.0 {
            if stats.mean == 0.0 {
                (0.0, 1.0)
            } else {
                (f64::INFINITY.copysign(stats.mean), 0.0)
            }
        } else {
            let t = stats.mean / (sd / (n as f64).sqrt());
            (t, student_t_two_sided(t, (n - 1) as f64))
        }
    } else {
        (f64::NAN, 1.0)
    };
    let w_p = wilcoxon_signed_rank_p(&d);
    PairedComparison {
        mean_difference: stats.mean,
        ci95: stats.ci95,
        n,
        t_statistic: t,
        t_p_value: t_p,
        wilcoxon_p_value: w_p,
        t_p_holm: t_p,
        wilcoxon_p_holm: w_p,
    }
}

/// Holm's step-down adjustment of `p` (returned in the input order).
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// Applies [`holm`] to the t and Wilcoxon p-values of one family of comparisons.
pub fn holm_in_place(family: &mut [PairedComparison]) {
    let t = holm(&family.iter().map(|c| c.t_p_value).collect::<Vec<_>>());
    let w = holm(
        &family
            .iter()
            .map(|c| c.wilcoxon_p_value)
            .collect::<Vec<_>>(),
    );
    for (c, (t, w)) in family.iter_mut().zip(t.into_iter().zip(w)) {
        c.t_p_holm = t;
        c.wilcoxon_p_holm = w;
    }
}

/// Two-sided p of the Wilcoxon signed-rank test on differences `d`.
pub fn wilcoxon_signed_rank_p(d: &[f64]) -> f64 {
    let mut nz: Vec<f64> = d.iter().copied().filter(|x| *x != 0.0).collect();
    let n = nz.len();
    if n == 0 {
        return 1.0;
    }
    nz.sort_by(|a, b| a.abs().total_cmp(&b.abs()));
    // average ranks over ties of |d|, and the tie correction Σ(t³ − t)
    let mut w_plus = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && nz[j + 1].abs() == nz[i].abs() {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        for x in &nz[i..=j] {
            if *x > 0.0 {
                w_plus += rank;
            }
        }
        i = j + 1;
    }
    let nf = n as f64;
    let mean = nf * (nf + 1.0) / 4.0;
    let var = nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0 - tie_term / 48.0;
    if var <= 0.0 {
        return 1.0;
    }
    let z = ((w_plus - mean).abs() - 0.5).max(0.0) / var.sqrt();
    normal_two_sided(z)
}

/// P(|Z| ≥ z) for a standard normal Z.
pub fn normal_two_sided(z: f64) -> f64 {
    // P(|Z| >= z) = Q(1/2, z²/2), the regularised upper incomplete gamma
    gamma_q(0.5, z * z / 2.0)
}

/// P(|T| ≥ |t|) for Student's t with `df` degrees of freedom.
pub fn student_t_two_sided(t: f64, df: f64) -> f64 {
    if !t.is_finite() {
        return 0.0;
    }
    incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
}

fn ln_gamma(x: f64) -> f64 {
    // Lanczos, g = 7, n = 9
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularised incomplete beta I_x(a, b).
fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(a, b, x) / a
    } else {
        1.0 - front * beta_fraction(b, a, 1.0 - x) / b
    }
}

/// The continued fraction of I_x(a, b), by the modified Lentz method.
fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..500 {
        let m = m as f64;
        let num = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
        for (k, numerator) in [
            num,
            -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0)),
        ]
        .into_iter()
        .enumerate()
        {
            d = 1.0 + numerator * d;
            if d.abs() < TINY {
                d = TINY;
            }
            c = 1.0 + numerator / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if k == 1 && (delta - 1.0).abs() < 1e-15 {
                return h;
            }
        }
    }
    h
}

/// The regularised upper incomplete gamma Q(a, x).
fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let ln_front = -x + a * x.ln() - ln_gamma(a);
    if x < a + 1.0 {
        // series for P(a, x)
        let (mut sum, mut term, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..1000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        1.0 - sum * ln_front.exp()
    } else {
        // continued fraction for Q(a, x) (Lentz)
        const TINY: f64 = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / TINY;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..1000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < TINY {
                d = TINY;
            }
            c = b + an / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        ln_front.exp() * h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_functions_match_tables() {
        // reference values from scipy 1.13.1 (stats.norm.sf, stats.t.sf, times 2)
        // standard normal: P(|Z| >= 1.96) = 0.049996, P(|Z| >= 3) = 0.0026998
        assert!((normal_two_sided(1.96) - 0.049_995_79).abs() < 1e-7);
        assert!((normal_two_sided(3.0) - 0.002_699_796).abs() < 1e-8);
        assert!((normal_two_sided(0.0) - 1.0).abs() < 1e-12);
        // Student t: P(|T_10| >= 2.228) = 0.05 (the 97.5% quantile), P(|T_1| >= 1) = 0.5
        assert!((student_t_two_sided(2.228_138_85, 10.0) - 0.05).abs() < 1e-7);
        assert!((student_t_two_sided(1.0, 1.0) - 0.5).abs() < 1e-12);
        assert!((student_t_two_sided(-2.0, 30.0) - 0.054_625_045).abs() < 1e-8);
    }

    #[test]
    fn paired_tests_on_a_hand_checkable_case() {
        // differences 0.1 on 9 episodes and -0.1 on 1: mean 0.08, clearly positive
        let a: Vec<f64> = (0..10).map(|i| if i < 9 { 0.6 } else { 0.4 }).collect();
        let b = vec![0.5; 10];
        let c = paired_comparison(&a, &b);
        assert!((c.mean_difference - 0.08).abs() < 1e-12);
        // sd = sqrt((9 * 0.02^2 + 0.18^2) / 9) = 0.06325; t = 0.08 / (0.06325 / sqrt 10) = 4.0
        assert!((c.t_statistic - 4.0).abs() < 1e-9, "{c:?}");
        assert!((c.t_p_value - 0.003_110_428_3).abs() < 1e-9, "{c:?}");
        // ranks of |d| all tie at 5.5; W+ = 9 * 5.5 = 49.5, mean 27.5, var = 96.25 - 990/48
        let var: f64 = 96.25 - 990.0 / 48.0;
        let z = (49.5f64 - 27.5 - 0.5) / var.sqrt();
        assert!((c.wilcoxon_p_value - normal_two_sided(z)).abs() < 1e-12);
        // scipy.stats.wilcoxon(a, b, zero_method="wilcox", correction=True, method="approx")
        assert!((c.wilcoxon_p_value - 0.013_423_697_854_527_652).abs() < 1e-12);
        let same = paired_comparison(&b, &b);
        assert_eq!((same.t_p_value, same.wilcoxon_p_value), (1.0, 1.0));
    }

    #[test]
    fn holm_adjusts_step_down_and_keeps_order() {
        let adj = holm(&[0.01, 0.04, 0.03]);
        // sorted 0.01, 0.03, 0.04 → 0.03, 0.06, max(0.06, 0.04) = 0.06
        assert_eq!(adj.len(), 3);
        assert!((adj[0] - 0.03).abs() < 1e-12);
        assert!((adj[2] - 0.06).abs() < 1e-12);
        assert!((adj[1] - 0.06).abs() < 1e-12);
    }
}
