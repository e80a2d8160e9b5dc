//! What the fast path's custom ops share: reading a CPU or CUDA operand as contiguous f32, and (in
//! tests) seeded tensors and the relative error the ops are checked with.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, Result};

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
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op}: operands must be contiguous");
    };
    Ok(&data[start..end])
}

/// The f32 data of a contiguous CUDA operand of the op named `op`.
#[cfg(feature = "cuda")]
pub(super) fn contiguous_view<'a>(
    op: &str,
    storage: &'a candle_core::CudaStorage,
    layout: &Layout,
) -> Result<cudarc::driver::CudaView<'a, f32>> {
    let slice = storage.as_cuda_slice::<f32>().map_err(|_| {
        candle_core::Error::Cuda(format!("{op}: the fast path computes in f32").into())
    })?;
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op}: operands must be contiguous");
    };
    Ok(slice.slice(start..end))
}

#[cfg(test)]
pub(super) mod test_tensors {
    use candle_core::{Device, Tensor};

    /// Uniform in [offset − 1, offset + 1), seeded by `key`.
    pub fn seeded(shape: &[usize], key: &str, offset: f32) -> Tensor {
        let mut rng =
            crate::data::philox::CounterRng::new(crate::data::philox::CounterRng::key_from(key), 0);
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| rng.unit_f32() * 2.0 - 1.0 + offset)
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// max |a − b| / max |b|.
    pub fn max_relative(a: &Tensor, b: &Tensor) -> f32 {
        let scale = b
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        diff.to_scalar::<f32>().unwrap() / scale.max(1e-12)
    }
}
