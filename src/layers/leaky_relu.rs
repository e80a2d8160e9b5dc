//! The (leaky) ReLU layer: max(x, slope·x) for a slope in [0, 1), ReLU at slope 0. The stock path
//! runs candle's `relu` (slope 0) or candle-nn's `leaky_relu` composite; the fast path runs one custom
//! op per pass for either (`leaky_relu_ops`, an NVRTC kernel on CUDA), whose gradient at exactly
//! x = 0 is slope·dy as PyTorch's (candle's `relu` passes dy whole there).

use candle_core::{Result, Tensor};

use super::{LayerOps, OpsPath};

#[derive(Debug, Clone, Copy)]
pub struct LeakyRelu {
    slope: f64,
    ops: OpsPath,
}

impl LeakyRelu {
    pub fn new(slope: f64, ops: LayerOps) -> Self {
        Self {
            slope,
            ops: ops.path,
        }
    }

    /// Slope 0.
    pub fn relu(ops: LayerOps) -> Self {
        Self::new(0.0, ops)
    }

    pub fn slope(&self) -> f64 {
        self.slope
    }

    /// max(x, slope·x), elementwise
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self.ops {
            OpsPath::Fast => crate::kernels::leaky_relu_ops::leaky_relu(x, self.slope),
            OpsPath::Stock if self.slope == 0.0 => x.relu(),
            OpsPath::Stock => candle_nn::ops::leaky_relu(x, self.slope),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Values and gradients of Σ r·relu(x) on both paths, for x = [−2, −0.5, 0, 0.5, 2].
    fn relu_on(path: OpsPath, slope: f64) -> (Vec<f32>, Vec<f32>) {
        let x = Var::new(&[-2f32, -0.5, 0.0, 0.5, 2.0], &Device::Cpu).unwrap();
        let r = Tensor::new(&[1f32, 2.0, 3.0, 4.0, 5.0], &Device::Cpu).unwrap();
        let y = LeakyRelu::new(slope, LayerOps::f32(path))
            .forward(&x)
            .unwrap();
        let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let dx = grads.get(&x).unwrap().to_vec1().unwrap();
        (y.to_vec1().unwrap(), dx)
    }

    #[test]
    fn both_paths_agree_except_for_the_gradient_at_zero() {
        for slope in [0.0, 0.1] {
            let (y_stock, dx_stock) = relu_on(OpsPath::Stock, slope);
            let (y_fast, dx_fast) = relu_on(OpsPath::Fast, slope);
            let s = slope as f32;
            assert_eq!(y_fast, [-2.0 * s, -0.5 * s, 0.0, 0.5, 2.0], "slope {slope}");
            assert_eq!(y_stock, y_fast, "slope {slope}");
            assert_eq!(
                [dx_fast[0], dx_fast[1], dx_fast[3], dx_fast[4]],
                [s, 2.0 * s, 4.0, 5.0]
            );
            assert_eq!(
                [dx_stock[0], dx_stock[1], dx_stock[3], dx_stock[4]],
                [dx_fast[0], dx_fast[1], dx_fast[3], dx_fast[4]]
            );
            // at 0 the fast path passes slope·dy, as PyTorch
            assert_eq!(dx_fast[2], 3.0 * s, "slope {slope}");
        }
        // candle's relu passes dy whole at 0; candle-nn's leaky composite splits it
        assert_eq!(relu_on(OpsPath::Stock, 0.0).1[2], 3.0);
    }
}
