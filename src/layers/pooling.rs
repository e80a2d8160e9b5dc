//! Pooling: max-pool (with zero padding, exact after a ReLU since the inputs are non-negative) and
//! PyTorch's `adaptive_avg_pool2d` (cell i of n covers [floor(i·H/n), ceil((i+1)·H/n)) of the input),
//! written as two matrix products so it is differentiable with stock ops.

use candle_core::{Result, Tensor};

/// x: (b, c, h, w) → max over `k`×`k` windows with `stride`, after zero-padding by `padding`.
/// Zero padding equals PyTorch's −∞ padding only for non-negative inputs (post-ReLU); callers
/// guarantee that.
pub fn max_pool2d(x: &Tensor, k: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let x = if padding > 0 {
        x.pad_with_zeros(2, padding, padding)?
            .pad_with_zeros(3, padding, padding)?
    } else {
        x.clone()
    };
    x.max_pool2d_with_stride(k, stride)
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
    use candle_core::Device;

    #[test]
    fn adaptive_pooling_matches_pytorch_cells() {
        // 5 -> 3: cells [0,2), [1,4), [3,5) (PyTorch's floor/ceil rule)
        let x = Tensor::arange(0f32, 25.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 5, 5))
            .unwrap();
        let y = adaptive_avg_pool2d(&x, 3)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
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
