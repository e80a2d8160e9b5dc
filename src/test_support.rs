//! Helpers the library's unit tests share (compiled for them only): seeded tensors, their distance,
//! and a tensor's values, bits or gradient as flat vectors.

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, WithDType};

/// [`crate::kernels::op_operands::seeded`] on the CPU.
pub fn seeded(shape: &[usize], key: &str, offset: f32) -> Tensor {
    crate::kernels::op_operands::seeded(shape, key, offset, &Device::Cpu).unwrap()
}

/// [`crate::kernels::op_operands::max_relative`], unwrapped.
pub fn max_relative(a: &Tensor, b: &Tensor) -> f32 {
    crate::kernels::op_operands::max_relative(a, b).unwrap()
}

/// A tensor's values, flattened in row-major order.
pub fn values<T: WithDType>(t: &Tensor) -> Vec<T> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// The gradient of `x` in `grads`, flattened.
pub fn gradient<T: WithDType>(grads: &GradStore, x: &Tensor) -> Vec<T> {
    values(grads.get(x).unwrap())
}

/// The bits of every f32 of `t`, flattened, for tests that compare paths bit for bit (every NaN
/// as one value).
pub fn bits(t: &Tensor) -> Vec<u32> {
    values::<f32>(t)
        .iter()
        .map(|v| if v.is_nan() { u32::MAX } else { v.to_bits() })
        .collect()
}
