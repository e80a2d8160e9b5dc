//! The fast path's own CUDA kernels, for the ops cuDNN has no call for: the leaky ReLU's forward and
//! backward (`leaky_relu_ops`), the evaluation-mode batch norm's per-channel normalisation
//! (`batch_norm_eval_ops`) and the SGD update's two in-place passes (`sgd_update_ops`), each the
//! same formula as the op's CPU side. One module compiled once per
//! process with NVRTC (cudarc's `compile_ptx`; the GPU machine's CUDA 13 `libnvrtc`) and loaded into
//! candle's device as a custom module.

use std::sync::OnceLock;

use candle_core::{CudaDevice, CudaStorage, Layout, Result};
use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::op_operands::{contiguous_view, contiguous_view_mut};

const MODULE: &str = "fewshot_fast_path";

// the kernels' names, as `SOURCE` defines them and the launchers load them
const LEAKY_RELU_FORWARD: &str = "leaky_relu_forward";
const LEAKY_RELU_BACKWARD: &str = "leaky_relu_backward";
const CHANNEL_NORMALISE: &str = "channel_normalise";
const SGD_MOMENTUM_BUFFER: &str = "sgd_momentum_buffer";
const SGD_WEIGHT: &str = "sgd_weight";
const KERNELS: [&str; 5] = [
    LEAKY_RELU_FORWARD,
    LEAKY_RELU_BACKWARD,
    CHANNEL_NORMALISE,
    SGD_MOMENTUM_BUFFER,
    SGD_WEIGHT,
];

const SOURCE: &str = r#"
extern "C" __global__ void leaky_relu_forward(
    const float* x, float* y, const float slope, const unsigned int n) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        const float v = x[i];
        // slope 0 is ReLU: 0 for x <= 0 (also for -inf, where v * 0 would be NaN), NaN kept
        y[i] = slope == 0.0f ? (v <= 0.0f ? 0.0f : v) : (v > 0.0f ? v : v * slope);
    }
}

extern "C" __global__ void leaky_relu_backward(
    const float* x, const float* dy, float* dx, const float slope, const unsigned int n) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        const float v = x[i];
        dx[i] = slope == 0.0f ? (v <= 0.0f ? 0.0f : dy[i]) : (v > 0.0f ? dy[i] : dy[i] * slope);
    }
}

// p = [mean (c), deviation (c), gamma (c), beta (c)]; NCHW with `planes` = h·w
extern "C" __global__ void channel_normalise(
    const float* x, const float* p, float* y, const unsigned int channels,
    const unsigned int planes, const unsigned int n) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        const unsigned int c = (i / planes) % channels;
        y[i] = __fadd_rn(__fmul_rn(__fdiv_rn(__fsub_rn(x[i], p[c]), p[channels + c]),
                                   p[2 * channels + c]), p[3 * channels + c]);
    }
}

// x·s as candle's affine kernel computes it: x·s + 0, which nvcc contracts to one fused
// multiply-add (the same value; a negative product that underflows stays −0, where the CPU's
// separate add makes it +0)
__device__ float scaled(const float x, const float s) { return __fmaf_rn(x, s, 0.0f); }

// d = g + w·λ, or g
__device__ float decayed(const float g, const float w, const float wd, const unsigned int decays) {
    return decays ? __fadd_rn(g, scaled(w, wd)) : g;
}

// b ← d (first step) or b·μ + d, in place
extern "C" __global__ void sgd_momentum_buffer(
    float* b, const float* g, const float* w, const float momentum, const float wd,
    const unsigned int decays, const unsigned int first, const unsigned int n) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        const float d = decayed(g[i], w[i], wd, decays);
        b[i] = first ? d : __fadd_rn(scaled(b[i], momentum), d);
    }
}

// w ← w − η·s; step 0: s = d, 1: s = b (heavy ball), 2: s = d + b·μ (Nesterov)
extern "C" __global__ void sgd_weight(
    float* w, const float* g, const float* b, const float lr, const float momentum, const float wd,
    const unsigned int decays, const unsigned int step, const unsigned int n) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        const float v = w[i];
        const float s = step == 1 ? b[i]
            : (step == 2 ? __fadd_rn(decayed(g[i], v, wd, decays), scaled(b[i], momentum))
                         : decayed(g[i], v, wd, decays));
        w[i] = __fsub_rn(v, scaled(s, lr));
    }
}
"#;

/// The module's PTX, compiled on first use (or why it could not be).
fn ptx() -> Result<&'static str> {
    static PTX: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    PTX.get_or_init(|| {
        cudarc::nvrtc::compile_ptx(SOURCE)
            .map(|ptx| ptx.to_src())
            .map_err(|e| format!("compiling the fast path's kernels with NVRTC: {e:?}"))
    })
    .as_deref()
    .map_err(|e| candle_core::Error::Cuda(e.clone().into()))
}

/// Compiles the module with NVRTC (no device needed, only `libnvrtc`) and checks that the PTX defines
/// every kernel the launchers load; returns the PTX's size in bytes. `examples/fast_ops_check.rs
/// kernels` runs it where the CUDA build is made, so a kernel that does not compile is found before
/// any GPU time is spent.
pub fn compile_module() -> Result<usize> {
    let ptx = ptx()?;
    for name in KERNELS {
        if !ptx.contains(&format!(".entry {name}(")) {
            return Err(candle_core::Error::Cuda(
                format!("the fast path's PTX has no kernel `{name}`").into(),
            ));
        }
    }
    Ok(ptx.len())
}

fn element_count(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| {
        candle_core::Error::Cuda(format!("fast path kernel: {n} elements exceed u32").into())
    })
}

/// y = leaky_relu(x).
pub(super) fn leaky_relu_forward(
    op: &str,
    (x, lx): (&CudaStorage, &Layout),
    slope: f32,
) -> Result<CudaStorage> {
    let device: &CudaDevice = &x.device;
    let x = contiguous_view(op, x, lx)?;
    let n = x.len();
    let count = element_count(n)?;
    let mut y = unsafe { device.alloc::<f32>(n) }?;
    let func = device.get_or_load_custom_func(LEAKY_RELU_FORWARD, MODULE, ptx()?)?;
    let mut launch = func.builder();
    launch.arg(&x).arg(&mut y).arg(&slope).arg(&count);
    unsafe { launch.launch(LaunchConfig::for_num_elems(count)) }
        .map_err(|e| candle_core::Error::Cuda(format!("{op}: {e}").into()))?;
    Ok(CudaStorage::wrap_cuda_slice(y, device.clone()))
}

/// The leaky ReLU's dx from (x, dy).
pub(super) fn leaky_relu_backward(
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
    let func = device.get_or_load_custom_func(LEAKY_RELU_BACKWARD, MODULE, ptx()?)?;
    let mut launch = func.builder();
    launch.arg(&x).arg(&dy).arg(&mut dx).arg(&slope).arg(&count);
    unsafe { launch.launch(LaunchConfig::for_num_elems(count)) }
        .map_err(|e| candle_core::Error::Cuda(format!("{op}: {e}").into()))?;
    Ok(CudaStorage::wrap_cuda_slice(dx, device.clone()))
}

/// y = ((x − r_μ) / d)·γ + β per channel, from x and [r_μ, d, γ, β]; each operation rounded on its
/// own (no fused multiply-add), as on the CPU.
pub(super) fn channel_normalise(
    op: &str,
    (_, channels, planes): (usize, usize, usize),
    (x, lx): (&CudaStorage, &Layout),
    (p, lp): (&CudaStorage, &Layout),
) -> Result<CudaStorage> {
    let device: &CudaDevice = &x.device;
    let (x, p) = (contiguous_view(op, x, lx)?, contiguous_view(op, p, lp)?);
    if p.len() != 4 * channels {
        candle_core::bail!("{op}: expected 4 × {channels} parameters");
    }
    let n = x.len();
    let count = element_count(n)?;
    let (channels, planes) = (element_count(channels)?, element_count(planes)?);
    let mut y = unsafe { device.alloc::<f32>(n) }?;
    let func = device.get_or_load_custom_func(CHANNEL_NORMALISE, MODULE, ptx()?)?;
    let mut launch = func.builder();
    launch
        .arg(&x)
        .arg(&p)
        .arg(&mut y)
        .arg(&channels)
        .arg(&planes)
        .arg(&count);
    unsafe { launch.launch(LaunchConfig::for_num_elems(count)) }
        .map_err(|e| candle_core::Error::Cuda(format!("{op}: {e}").into()))?;
    Ok(CudaStorage::wrap_cuda_slice(y, device.clone()))
}

/// Checks that an in-place op's operands are the size of the tensor it writes.
fn same_length(op: &str, n: usize, others: [usize; 2]) -> Result<u32> {
    if others.iter().any(|&m| m != n) {
        candle_core::bail!("{op}: operands differ in size ({n} and {others:?})");
    }
    element_count(n)
}

/// b ← d or b·μ + d in place, from [g, w]; `[μ, λ]`, `[λ ≠ 0, first step]`.
pub(super) fn sgd_momentum_buffer(
    op: &str,
    (b, lb): (&mut CudaStorage, &Layout),
    [(g, lg), (w, lw)]: [(&CudaStorage, &Layout); 2],
    [momentum, wd]: [f32; 2],
    [decays, first]: [u32; 2],
) -> Result<()> {
    let device: CudaDevice = b.device.clone();
    let (g, w) = (contiguous_view(op, g, lg)?, contiguous_view(op, w, lw)?);
    let mut b = contiguous_view_mut(op, b, lb)?;
    let count = same_length(op, b.len(), [g.len(), w.len()])?;
    if count == 0 {
        return Ok(()); // a grid of no blocks is a launch error
    }
    let func = device.get_or_load_custom_func(SGD_MOMENTUM_BUFFER, MODULE, ptx()?)?;
    let mut launch = func.builder();
    launch
        .arg(&mut b)
        .arg(&g)
        .arg(&w)
        .arg(&momentum)
        .arg(&wd)
        .arg(&decays)
        .arg(&first)
        .arg(&count);
    unsafe { launch.launch(LaunchConfig::for_num_elems(count)) }
        .map_err(|e| candle_core::Error::Cuda(format!("{op}: {e}").into()))?;
    Ok(())
}

/// w ← w − η·s in place, from [g, b]; `[η, μ, λ]`, `[λ ≠ 0, step kind]`.
pub(super) fn sgd_weight(
    op: &str,
    (w, lw): (&mut CudaStorage, &Layout),
    [(g, lg), (b, lb)]: [(&CudaStorage, &Layout); 2],
    [lr, momentum, wd]: [f32; 3],
    [decays, step]: [u32; 2],
) -> Result<()> {
    let device: CudaDevice = w.device.clone();
    let (g, b) = (contiguous_view(op, g, lg)?, contiguous_view(op, b, lb)?);
    let mut w = contiguous_view_mut(op, w, lw)?;
    let count = same_length(op, w.len(), [g.len(), b.len()])?;
    if count == 0 {
        return Ok(()); // a grid of no blocks is a launch error
    }
    let func = device.get_or_load_custom_func(SGD_WEIGHT, MODULE, ptx()?)?;
    let mut launch = func.builder();
    launch
        .arg(&mut w)
        .arg(&g)
        .arg(&b)
        .arg(&lr)
        .arg(&momentum)
        .arg(&wd)
        .arg(&decays)
        .arg(&step)
        .arg(&count);
    unsafe { launch.launch(LaunchConfig::for_num_elems(count)) }
        .map_err(|e| candle_core::Error::Cuda(format!("{op}: {e}").into()))?;
    Ok(())
}
