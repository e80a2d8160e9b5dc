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

/// Asserts that a row-major `supply.len() × demand.len()` transport plan sends each source its
/// supply (within `row_tol`) and each sink its demand (within `col_tol`); `what` leads the message.
pub fn assert_marginals(
    plan: &[f64],
    supply: &[f64],
    demand: &[f64],
    (row_tol, col_tol): (f64, f64),
    what: &str,
) {
    let m = demand.len();
    for (i, s) in supply.iter().enumerate() {
        let row: f64 = plan[i * m..(i + 1) * m].iter().sum();
        assert!((row - s).abs() < row_tol, "{what}, row {i}: {row} vs {s}");
    }
    for (j, d) in demand.iter().enumerate() {
        let col: f64 = (0..supply.len()).map(|i| plan[i * m + j]).sum();
        assert!(
            (col - d).abs() < col_tol,
            "{what}, column {j}: {col} vs {d}"
        );
    }
}
