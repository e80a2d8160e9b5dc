//! What the fast path's custom ops share: reading a CPU or CUDA operand as contiguous f32, refusing
//! an input smaller than the op's window, and the seeded tensors and relative error the ops are
//! checked with (by `fast_ops_check`; the unit tests through `crate::test_support`).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, Result};

/// Refuses an `h`×`w` input that, padded by `padding`, is smaller than the op's `k`×`k` `window`
/// (a convolution's kernel, a pooling's window).
pub(super) fn check_window_fits(
    op: &str,
    (h, w): (usize, usize),
    padding: usize,
    k: usize,
    window: &str,
) -> Result<()> {
    if h + 2 * padding < k || w + 2 * padding < k {
        candle_core::bail!(
            "{op}: a {h}×{w} input with padding {padding} is smaller than the {k}×{k} {window}"
        );
    }
    Ok(())
}

/// Where a contiguous operand of the op named `op` lies in its storage.
fn contiguous_range(op: &str, layout: &Layout) -> Result<(usize, usize)> {
    layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: operands must be contiguous")))
}

/// The f32 data of a contiguous CPU operand of the op named `op`.
pub(super) fn contiguous_f32<'a>(
    op: &str,
    storage: &'a CpuStorage,
    layout: &Layout,
) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!(
            "{op}: the fast path computes in f32, got {:?}",
            storage.dtype()
        );
    };
    let (start, end) = contiguous_range(op, layout)?;
    Ok(&data[start..end])
}

/// The f32 data of a contiguous CPU operand an in-place op of the name `op` writes.
pub(super) fn contiguous_f32_mut<'a>(
    op: &str,
    storage: &'a mut CpuStorage,
    layout: &Layout,
) -> Result<&'a mut [f32]> {
    let dtype = storage.dtype();
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: the fast path computes in f32, got {dtype:?}");
    };
    let (start, end) = contiguous_range(op, layout)?;
    Ok(&mut data[start..end])
}

/// The error of a CUDA operand in another dtype.
#[cfg(feature = "cuda")]
fn f32_only(op: &str) -> candle_core::Error {
    candle_core::Error::Cuda(format!("{op}: the fast path computes in f32").into())
}

/// The f32 data of a contiguous CUDA operand of the op named `op`.
#[cfg(feature = "cuda")]
pub(super) fn contiguous_view<'a>(
    op: &str,
    storage: &'a candle_core::CudaStorage,
    layout: &Layout,
) -> Result<cudarc::driver::CudaView<'a, f32>> {
    let slice = storage.as_cuda_slice::<f32>().map_err(|_| f32_only(op))?;
    let (start, end) = contiguous_range(op, layout)?;
    Ok(slice.slice(start..end))
}

/// The f32 data of a contiguous CUDA operand an in-place op of the name `op` writes.
#[cfg(feature = "cuda")]
pub(super) fn contiguous_view_mut<'a>(
    op: &str,
    storage: &'a mut candle_core::CudaStorage,
    layout: &Layout,
) -> Result<cudarc::driver::CudaViewMut<'a, f32>> {
    let slice = storage
        .as_cuda_slice_mut::<f32>()
        .map_err(|_| f32_only(op))?;
    let (start, end) = contiguous_range(op, layout)?;
    Ok(slice.slice_mut(start..end))
}

/// Uniform in [offset − 1, offset + 1) on `device`, seeded by `key`: the fast path's checks' inputs.
pub(crate) fn seeded(
    shape: &[usize],
    key: &str,
    offset: f32,
    device: &candle_core::Device,
) -> Result<candle_core::Tensor> {
    use crate::data::philox::CounterRng;
    let mut rng = CounterRng::new(CounterRng::key_from(key), 0);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| rng.unit_f32() * 2.0 - 1.0 + offset)
        .collect();
    candle_core::Tensor::from_vec(v, shape, device)
}

/// max |a − b| / max |b|, reduced on the tensors' device and read back as one number; NaN when
/// either holds a NaN anywhere (candle's maximum reductions skip NaN on both devices, its sums do not).
pub(crate) fn max_relative(a: &candle_core::Tensor, b: &candle_core::Tensor) -> Result<f32> {
    let diff = (a - b)?.abs()?;
    if !diff.sum_all()?.to_scalar::<f32>()?.is_finite() {
        return Ok(f32::NAN);
    }
    let scale = b.abs()?.max_all()?.to_scalar::<f32>()?;
    Ok(diff.max_all()?.to_scalar::<f32>()? / scale.max(1e-12))
}

/// ‖a − b‖₂ / ‖b‖₂, in f64 on the tensors' device: how far a whole gradient is from a reference
/// (`fast_ops_check` re-exports it for the examples and tests that compare paths).
pub fn l2_relative(a: &candle_core::Tensor, b: &candle_core::Tensor) -> Result<f64> {
    let (a, b) = (
        a.to_dtype(candle_core::DType::F64)?,
        b.to_dtype(candle_core::DType::F64)?,
    );
    let norm = |t: &candle_core::Tensor| -> Result<f64> {
        Ok(t.sqr()?.sum_all()?.to_scalar::<f64>()?.sqrt())
    };
    Ok(norm(&(a - &b)?)? / norm(&b)?.max(1e-300))
}
