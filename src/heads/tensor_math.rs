//! Small tensor formulas the heads share, each written once with its exact epsilon convention.

use candle_core::{Result, Tensor, D};

/// Cosine similarity along `dim` with PyTorch's `F.cosine_similarity` convention: each norm is
/// clamped below at 1e-8.
pub fn cosine(a: &Tensor, b: &Tensor, dim: D) -> Result<Tensor> {
    let dot = a.broadcast_mul(b)?.sum(dim)?;
    let na = a.sqr()?.sum(dim)?.sqrt()?.clamp(1e-8, f64::MAX)?;
    let nb = b.sqr()?.sum(dim)?.sqrt()?.clamp(1e-8, f64::MAX)?;
    dot.broadcast_div(&na.broadcast_mul(&nb)?)
}

/// Cosines of every row of `a` (m, d) with every row of `b` (n, d), as an (m, n) matrix, with
/// [`cosine`]'s convention (each norm clamped below at 1e-8).
pub fn cosine_matrix(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let scaled = |x: &Tensor| -> Result<Tensor> {
        x.broadcast_div(&x.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-8, f64::MAX)?)
    };
    scaled(a)?.matmul(&scaled(b)?.t()?)
}

/// x / sqrt(Σ x² + eps) along `dim` (Rocco et al.'s `FeatureL2Norm`, eps 1e-6 in the authors' code).
pub fn l2_normalize(x: &Tensor, dim: usize, eps: f64) -> Result<Tensor> {
    let norm = (x.sqr()?.sum_keepdim(dim)? + eps)?.sqrt()?;
    x.broadcast_div(&norm)
}

/// x / ‖x‖ along `dim` with no epsilon (the SPM cost's "explicit norms").
pub fn unit(x: &Tensor, dim: usize) -> Result<Tensor> {
    x.broadcast_div(&x.sqr()?.sum_keepdim(dim)?.sqrt()?)
}

/// z-score along `dim` with the unbiased variance and eps 1e-5 (RENet's `gaussian_normalize`).
pub fn gaussian_normalize(x: &Tensor, dim: usize) -> Result<Tensor> {
    let n = x.dim(dim)? as f64;
    let mean = x.mean_keepdim(dim)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = (centred.sqr()?.sum_keepdim(dim)? / (n - 1.0))?;
    centred.broadcast_div(&(var + 1e-5)?.sqrt()?)
}

/// Class prototypes: x (n_shot * n_way, …) shot-major → (n_way, …), the mean over shots.
pub fn prototypes(x: &Tensor, n_way: usize, n_shot: usize) -> Result<Tensor> {
    let mut dims = x.dims().to_vec();
    dims[0] = n_way;
    dims.insert(0, n_shot);
    x.reshape(dims)?.mean(0)
}

/// One vector per image of pooled maps x (B, C, h, w): their spatial mean (B, C), or with
/// `flatten` the whole maps (B, C·h·w).
pub fn embedding(x: &Tensor, flatten: bool) -> Result<Tensor> {
    if flatten {
        x.flatten_from(1)
    } else {
        x.flatten_from(2)?.mean(D::Minus1)
    }
}
