//! The CUDA side of the fast path's leaky ReLU: the forward and backward formulas of
//! `leaky_relu_ops` as two elementwise kernels, compiled once per process with NVRTC (cudarc's
//! `compile_ptx`; the GPU machine's CUDA 13 `libnvrtc`) and loaded into candle's device as a custom
//! module. One kernel per pass instead of candle-nn's five tensors forward and more backward.

use std::sync::OnceLock;

use candle_core::{CudaDevice, CudaStorage, Layout, Result};
use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::op_operands::contiguous_view;

const MODULE: &str = "fewshot_leaky_relu";

const SOURCE: &str = r#"
extern "C" __global__ void leaky_relu_forward(
    const float* x, float* y, const float slope, const unsigned int n) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        const float v = x[i];
        y[i] = v > 0.0f ? v : v * slope;
    }
}

extern "C" __global__ void leaky_relu_backward(
    const float* x, const float* dy, float* dx, const float slope, const unsigned int n) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        dx[i] = x[i] > 0.0f ? dy[i] : dy[i] * slope;
    }
}
"#;

/// The module's PTX, compiled on first use (or why it could not be).
fn ptx() -> Result<&'static str> {
    static PTX: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    PTX.get_or_init(|| {
        cudarc::nvrtc::compile_ptx(SOURCE)
            .map(|ptx| ptx.to_src())
            .map_err(|e| format!("compiling the leaky ReLU kernels with NVRTC: {e:?}"))
    })
    .as_deref()
    .map_err(|e| candle_core::Error::Cuda(e.clone().into()))
}

fn element_count(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| {
        candle_core::Error::Cuda(format!("fast leaky ReLU: {n} elements exceed u32").into())
    })
}

/// y = leaky_relu(x).
pub(super) fn forward(
    op: &str,
    (x, lx): (&CudaStorage, &Layout),
    slope: f32,
) -> Result<CudaStorage> {
    let device: &CudaDevice = &x.device;
    let x = contiguous_view(op, x, lx)?;
    let n = x.len();
    let count = element_count(n)?;
    let mut y = unsafe { device.alloc::<f32>(n) }?;
    let func = device.get_or_load_custom_func("leaky_relu_forward", MODULE, ptx()?)?;
    let mut launch = func.builder();
    launch.arg(&x).arg(&mut y).arg(&slope).arg(&count);
    unsafe { launch.launch(LaunchConfig::for_num_elems(count)) }
        .map_err(|e| candle_core::Error::Cuda(format!("{op}: {e}").into()))?;
    Ok(CudaStorage::wrap_cuda_slice(y, device.clone()))
}

/// dx from (x, dy).
pub(super) fn backward(
    op: &str,
    (x, lx): (&CudaStorage, &Layout),
    (dy, ld): (&CudaStorage, &Layout),
    slope: f32,
) -> Result<CudaStorage> {
    let device: &CudaDevice = &x.device;
    let (x, dy) = (contiguous_view(op, x, lx)?, contiguous_view(op, dy, ld)?);
    if x.len() != dy.len() {
        candle_core::bail!("{op}: x and dy differ in size");
    }
    let n = x.len();
    let count = element_count(n)?;
    let mut dx = unsafe { device.alloc::<f32>(n) }?;
    let func = device.get_or_load_custom_func("leaky_relu_backward", MODULE, ptx()?)?;
    let mut launch = func.builder();
    launch.arg(&x).arg(&dy).arg(&mut dx).arg(&slope).arg(&count);
    unsafe { launch.launch(LaunchConfig::for_num_elems(count)) }
        .map_err(|e| candle_core::Error::Cuda(format!("{op}: {e}").into()))?;
    Ok(CudaStorage::wrap_cuda_slice(dx, device.clone()))
}
