//! Summary statistics of per-episode accuracies: the mean and the 95% confidence interval
//! 1.96 · std(ddof = 1) / √n, the authors' formula (METHOD.md §6), named in every report.

use serde::{Deserialize, Serialize};

/// The formula, as reports print it.
pub const CI_FORMULA: &str = "1.96 * std(ddof=1) / sqrt(n)";

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanCi {
    pub mean: f64,
    pub ci95: f64,
    pub n: usize,
}

/// Mean and 95% CI half-width of `values` (CI is 0 for fewer than two values).
pub fn mean_ci95(values: &[f64]) -> MeanCi {
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n.max(1) as f64;
    let ci95 = if n > 1 {
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        1.96 * var.sqrt() / (n as f64).sqrt()
    } else {
        0.0
    };
    MeanCi { mean, ci95, n }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed() {
        // values 0.5, 0.7, 0.9: mean 0.7, sample std 0.2, CI = 1.96 * 0.2 / sqrt(3)
        let m = mean_ci95(&[0.5, 0.7, 0.9]);
        assert!((m.mean - 0.7).abs() < 1e-12);
        assert!((m.ci95 - 1.96 * 0.2 / 3f64.sqrt()).abs() < 1e-12);
        assert_eq!(mean_ci95(&[1.0]).ci95, 0.0);
    }
}
