//! Pooling: max-pool (with zero padding, exact after a ReLU since the inputs are non-negative) and
//! PyTorch's `adaptive_avg_pool2d` (cell i of n covers [floor(i·H/n), ceil((i+1)·H/n)) of the input),
//! written as two matrix products so it is differentiable with stock ops.

use candle_core::{Result, Tensor};

/// x: (b, c, h, w) → max over `k`×`k` windows with `stride`, after zero-padding by `padding`: the
/// stock path's max pooling. Zero padding equals PyTorch's −∞ padding only for non-negative inputs
/// (post-ReLU); callers guarantee that.
/// Pooled one axis at a time as a maximum over strided views, differentiable with stock ops, for
/// every window: candle 0.11.1's own `max_pool2d` has a wrong gradient (its backward multiplies the
/// upstream gradient by the window's share of maxima, m/k² for m tied maxima, so 1/k² for a unique
/// one, where a unique maximum should receive it whole, and maps it back by nearest-neighbour
/// upsampling, which misplaces windows when a side is not a multiple of the stride; measured against
/// finite differences, `tests` below), so it is not used. Tied maxima split the gradient as candle's
/// pairwise `maximum` does (½ each for two; chained over a window, three ties get ½, ¼, ¼).
pub fn max_pool2d(x: &Tensor, k: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let x = if padding > 0 {
        x.pad_with_zeros(2, padding, padding)?
            .pad_with_zeros(3, padding, padding)?
    } else {
        x.clone()
    };
    let x = max_pool1d_over(&x, 3, k, stride)?;
    max_pool1d_over(&x, 2, k, stride)
}

/// Max over windows of `k` along `dim` with `stride` (no padding): the maximum, over the k offsets
/// d, of the strided view x[d], x[d + stride], … (each view by narrow, reshape and narrow).
fn max_pool1d_over(x: &Tensor, dim: usize, k: usize, stride: usize) -> Result<Tensor> {
    let len = x.dim(dim)?;
    if len < k {
        candle_core::bail!("max_pool2d: a window of {k} does not fit {len} positions");
    }
    let out = (len - k) / stride + 1;
    // room for `out` full strides from every offset
    let needed = (k - 1) + out * stride;
    let x = if needed > len {
        x.pad_with_zeros(dim, 0, needed - len)?
    } else {
        x.clone()
    };
    let mut shape = x.dims().to_vec();
    shape[dim] = out;
    shape.insert(dim + 1, stride);
    let mut best: Option<Tensor> = None;
    for d in 0..k {
        let view = x
            .narrow(dim, d, out * stride)?
            .reshape(shape.as_slice())?
            .narrow(dim + 1, 0, 1)?
            .squeeze(dim + 1)?;
        best = Some(match best {
            None => view,
            Some(b) => b.maximum(&view)?,
        });
    }
    Ok(best.expect("k >= 1"))
}

/// The (out, in) averaging matrix of 1-D adaptive average pooling.
fn pooling_matrix(input: usize, output: usize, x: &Tensor) -> Result<Tensor> {
    let mut m = vec![0f32; output * input];
    for i in 0..output {
        let start = (i * input) / output;
        let end = ((i + 1) * input).div_ceil(output);
        for j in start..end {
            m[i * input + j] = 1.0 / (end - start) as f32;
        }
    }
    Tensor::from_vec(m, (output, input), x.device())?.to_dtype(x.dtype())
}

/// x: (b, c, h, w) → (b, c, out, out); the identity when h = w = out.
pub fn adaptive_avg_pool2d(x: &Tensor, out: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if h == out && w == out {
        return Ok(x.clone());
    }
    let ph = pooling_matrix(h, out, x)?; // (out, h)
    let pw = pooling_matrix(w, out, x)?; // (out, w)
                                         // (b, c, h, w) x (w, out) -> (b, c, h, out); then (out, h) x (b, c, h, out) -> (b, c, out, out)
    let x = x.broadcast_matmul(&pw.t()?)?;
    ph.broadcast_matmul(&x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{gradient, values};
    use candle_core::Device;

    /// The gradient of Σ r·pool(x) against central differences of the forward, for non-overlapping
    /// windows on sides that are and are not multiples of the stride, and the overlapping stem pool;
    /// and candle's own `max_pool2d` failing the same check (why it is not used).
    #[test]
    fn max_pool_gradients_match_finite_differences_where_candles_own_do_not() {
        use crate::test_support::seeded;
        let worst_error = |pool: &dyn Fn(&Tensor) -> Tensor, x: &Tensor| -> f64 {
            let r = seeded(pool(x).dims(), "pool-fd-r", 0.0)
                .to_dtype(candle_core::DType::F64)
                .unwrap();
            let var = candle_core::Var::from_tensor(x).unwrap();
            let grads = (pool(&var) * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g: Vec<f64> = gradient(&grads, &var);
            let xv: Vec<f64> = x.flatten_all().unwrap().to_vec1().unwrap();
            let loss = |v: Vec<f64>| -> f64 {
                let t = Tensor::from_vec(v, x.dims(), x.device()).unwrap();
                (pool(&t) * &r)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let h = 1e-3f64;
            (0..xv.len())
                .map(|i| {
                    let (mut p, mut m) = (xv.clone(), xv.clone());
                    p[i] += h;
                    m[i] -= h;
                    let numeric = (loss(p) - loss(m)) / (2.0 * h);
                    (numeric - g[i]).abs()
                })
                .fold(0.0, f64::max)
        };
        // in f64, positive values at least 1 apart within any window: no ties, even under the ±h
        // steps, and zero padding exact
        let distinct = |h: usize, w: usize| {
            let v: Vec<f64> = (0..2 * h * w)
                .map(|i| ((i * 37) % 101) as f64 + 1.0)
                .collect();
            Tensor::from_vec(v, (1, 2, h, w), &Device::Cpu).unwrap()
        };
        for (k, stride, padding, h, w) in [
            (2, 2, 0, 10, 10),
            (2, 2, 0, 10, 11),
            (2, 2, 0, 7, 7),
            (3, 2, 1, 9, 8),
        ] {
            let x = distinct(h, w);
            let ours = worst_error(&|t| max_pool2d(t, k, stride, padding).unwrap(), &x);
            assert!(ours < 1e-9, "k{k} s{stride} p{padding} {h}x{w}: {ours}");
        }
        let x = distinct(10, 10);
        let candles = worst_error(&|t| t.max_pool2d_with_stride(2, 2).unwrap(), &x);
        assert!(
            candles > 0.1,
            "candle's max_pool2d gradient now agrees ({candles}): use it again?"
        );
    }

    #[test]
    fn overlapping_max_pool_matches_candles_forward_and_has_a_gradient() {
        // non-negative inputs, as after a ReLU; distinct values, so every window has one maximum
        let (h, w) = (9, 8);
        let values: Vec<f32> = (0..2 * h * w).map(|i| ((i * 37) % 101) as f32).collect();
        let x = candle_core::Var::from_vec(values, (1, 2, h, w), &Device::Cpu).unwrap();
        let ours = max_pool2d(&x, 3, 2, 1).unwrap();
        let padded = x
            .pad_with_zeros(2, 1, 1)
            .unwrap()
            .pad_with_zeros(3, 1, 1)
            .unwrap();
        let candles = padded.max_pool2d_with_stride(3, 2).unwrap();
        assert_eq!(ours.dims(), candles.dims());
        let diff = (&ours - &candles)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
        // the gradient of Σ out: each input counts the windows it is the maximum of
        let grads = ours.sum_all().unwrap().backward().unwrap();
        let g = gradient::<f32>(&grads, &x);
        let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (oh, ow) = ((h + 2 - 3) / 2 + 1, (w + 2 - 3) / 2 + 1);
        let mut expected = vec![0f32; xv.len()];
        for c in 0..2 {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut arg = None;
                    let mut best = f32::NEG_INFINITY;
                    for dy in 0..3 {
                        for dx in 0..3 {
                            let (y, x_) = ((oy * 2 + dy) as isize - 1, (ox * 2 + dx) as isize - 1);
                            if y < 0 || x_ < 0 || y >= h as isize || x_ >= w as isize {
                                continue;
                            }
                            let i = (c * h + y as usize) * w + x_ as usize;
                            if xv[i] > best {
                                (best, arg) = (xv[i], Some(i));
                            }
                        }
                    }
                    if best > 0.0 {
                        expected[arg.unwrap()] += 1.0;
                    }
                }
            }
        }
        assert_eq!(g, expected);
    }

    #[test]
    fn adaptive_pooling_matches_pytorch_cells() {
        // 5 -> 3: cells [0,2), [1,4), [3,5) (PyTorch's floor/ceil rule)
        let x = Tensor::arange(0f32, 25.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 5, 5))
            .unwrap();
        let y = values::<f32>(&adaptive_avg_pool2d(&x, 3).unwrap());
        // row cells average rows {0,1}, {1,2,3}, {3,4}; columns likewise: y[0] = mean of x[0..2, 0..2] = 3
        assert_eq!(y[0], 3.0);
        assert_eq!(y[4], 12.0);
        assert_eq!(y[8], 21.0);
    }

    #[test]
    fn max_pool_with_padding_on_non_negative_input() {
        let x = Tensor::new(&[[[[1f32, 2.0], [3.0, 4.0]]]], &Device::Cpu).unwrap();
        let y = max_pool2d(&x, 3, 2, 1).unwrap();
        assert_eq!(
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![4.0]
        );
    }
}
