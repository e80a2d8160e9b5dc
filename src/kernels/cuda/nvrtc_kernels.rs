//! The fast path's own CUDA kernels, for the ops cuDNN has no call for: the leaky ReLU's forward and
//! backward (`leaky_relu_ops`), the evaluation-mode batch norm's per-channel normalisation
//! (`batch_norm_eval_ops`) and the SGD update's two in-place passes (`sgd_update_ops`), each the
//! same formula as the op's CPU side. The source is `fast_path_kernels.cu`; build.rs compiles it to
//! PTX with the build machine's nvcc (the toolkit candle's kernels are built with), which is what
//! loads; NVRTC (cudarc's `compile_ptx`, the GPU machine's `libnvrtc`) compiles it again only if the
//! driver refuses that PTX. Launches follow `cuda_rules::launch_grid` (none for an empty tensor,
//! 64-bit indices).

use std::sync::OnceLock;

use candle_core::{CudaDevice, CudaStorage, Layout, Result};
use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::cuda_rules::launch_grid;
use crate::kernels::op_operands::{contiguous_view, contiguous_view_mut};

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

/// The kernels' source, shared by nvcc (build.rs) and NVRTC.
const SOURCE: &str = include_str!("fast_path_kernels.cu");

/// The PTX build.rs made with the build machine's nvcc (the toolkit candle's own kernels were built
/// with, so it loads wherever they do).
const BUILT_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/fast_path_kernels.ptx"));

/// The NVRTC fallback's module, apart from the built one.
const NVRTC_MODULE: &str = "fewshot_fast_path_nvrtc";

/// The module's PTX compiled by NVRTC on first use (or why it could not be): the fallback.
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

/// Kernel `name` on `device`, from the PTX built with the build machine's nvcc, or NVRTC's when
/// the driver refuses that (a PTX ISA newer than the driver knows fails to load; the message says
/// both). A macro, as candle's function type cannot be named outside it.
macro_rules! kernel {
    ($device:expr, $name:expr) => {
        match $device.get_or_load_custom_func($name, MODULE, BUILT_PTX) {
            Ok(f) => f,
            Err(built) => ptx()
                .and_then(|ptx| $device.get_or_load_custom_func($name, NVRTC_MODULE, ptx))
                .map_err(|nvrtc| refused($name, built, nvrtc))?,
        }
    };
}

fn refused(name: &str, built: candle_core::Error, nvrtc: candle_core::Error) -> candle_core::Error {
    candle_core::Error::Cuda(
        format!(
            "loading the fast path's kernel `{name}`: the PTX built with nvcc failed ({built}) and so did NVRTC's ({nvrtc}); a driver older than the CUDA toolkit refuses its PTX: update the driver, or build with the toolkit the driver supports"
        )
        .into(),
    )
}

/// The launch of `n` elements (`cuda_rules::launch_grid`), or `None` for none.
fn launch_config(n: usize) -> Option<LaunchConfig> {
    launch_grid(n).map(|(blocks, threads)| LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// Compiles the module with NVRTC (no device needed, only `libnvrtc`) and checks that the PTX defines
/// every kernel the launchers load; returns the PTX's size in bytes. `examples/fast_ops_check.rs
/// kernels` runs it where the CUDA build is made, so a kernel that does not compile is found before
/// any GPU time is spent.
pub fn compile_module() -> Result<usize> {
    let ptx = ptx()?;
    for (source, ptx) in [("NVRTC", ptx), ("nvcc", BUILT_PTX)] {
        for name in KERNELS {
            if !ptx.contains(&format!(".entry {name}(")) {
                return Err(candle_core::Error::Cuda(
                    format!("the fast path's PTX from {source} has no kernel `{name}`").into(),
                ));
            }
        }
    }
    Ok(ptx.len())
}

fn narrow(n: usize) -> Result<u32> {
    u32::try_from(n)
        .map_err(|_| candle_core::Error::Cuda(format!("fast path kernel: {n} exceeds u32").into()))
}

/// y = leaky_relu(x).
pub(crate) fn leaky_relu_forward(
    op: &str,
    (x, lx): (&CudaStorage, &Layout),
    slope: f32,
) -> Result<CudaStorage> {
    let device: &CudaDevice = &x.device;
    let x = contiguous_view(op, x, lx)?;
    let n = x.len();
    let count = n as u64;
    let mut y = unsafe { device.alloc::<f32>(n) }?;
    let Some(config) = launch_config(n) else {
        return Ok(CudaStorage::wrap_cuda_slice(y, device.clone()));
    };
    let func = kernel!(device, LEAKY_RELU_FORWARD);
    let mut launch = func.builder();
    launch.arg(&x).arg(&mut y).arg(&slope).arg(&count);
    unsafe { launch.launch(config) }
        .map_err(|e| candle_core::Error::Cuda(format!("{op}: {e}").into()))?;
    Ok(CudaStorage::wrap_cuda_slice(y, device.clone()))
}

/// The leaky ReLU's dx from (x, dy).
pub(crate) fn leaky_relu_backward(
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
    let count = n as u64;
    let mut dx = unsafe { device.alloc::<f32>(n) }?;
    let Some(config) = launch_config(n) else {
        return Ok(CudaStorage::wrap_cuda_slice(dx, device.clone()));
    };
    let func = kernel!(device, LEAKY_RELU_BACKWARD);
    let mut launch = func.builder();
    launch.arg(&x).arg(&dy).arg(&mut dx).arg(&slope).arg(&count);
    unsafe { launch.launch(config) }
        .map_err(|e| candle_core::Error::Cuda(format!("{op}: {e}").into()))?;
    Ok(CudaStorage::wrap_cuda_slice(dx, device.clone()))
}

/// y = ((x − r_μ) / d)·γ + β per channel, from x and [r_μ, d, γ, β]; each operation rounded on its
/// own (no fused multiply-add), as on the CPU.
pub(crate) fn channel_normalise(
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
    let count = n as u64;
    let (channels, planes) = (narrow(channels)?, narrow(planes)?);
    let mut y = unsafe { device.alloc::<f32>(n) }?;
    let Some(config) = launch_config(n) else {
        return Ok(CudaStorage::wrap_cuda_slice(y, device.clone()));
    };
    let func = kernel!(device, CHANNEL_NORMALISE);
    let mut launch = func.builder();
    launch
        .arg(&x)
        .arg(&p)
        .arg(&mut y)
        .arg(&channels)
        .arg(&planes)
        .arg(&count);
    unsafe { launch.launch(config) }
        .map_err(|e| candle_core::Error::Cuda(format!("{op}: {e}").into()))?;
    Ok(CudaStorage::wrap_cuda_slice(y, device.clone()))
}

/// Checks that an in-place op's operands are the size of the tensor it writes.
fn same_length(op: &str, n: usize, others: [usize; 2]) -> Result<usize> {
    if others.iter().any(|&m| m != n) {
        candle_core::bail!("{op}: operands differ in size ({n} and {others:?})");
    }
    Ok(n)
}

/// b ← d or b·μ + d in place, from [g, w]; `[μ, λ]`, `[λ ≠ 0, first step]`.
pub(crate) fn sgd_momentum_buffer(
    op: &str,
    (b, lb): (&mut CudaStorage, &Layout),
    [(g, lg), (w, lw)]: [(&CudaStorage, &Layout); 2],
    [momentum, wd]: [f32; 2],
    [decays, first]: [u32; 2],
) -> Result<()> {
    let device: CudaDevice = b.device.clone();
    let (g, w) = (contiguous_view(op, g, lg)?, contiguous_view(op, w, lw)?);
    let mut b = contiguous_view_mut(op, b, lb)?;
    let n = same_length(op, b.len(), [g.len(), w.len()])?;
    let Some(config) = launch_config(n) else {
        return Ok(()); // a grid of no blocks is a launch error
    };
    let count = n as u64;
    let func = kernel!(&device, SGD_MOMENTUM_BUFFER);
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
    unsafe { launch.launch(config) }
        .map_err(|e| candle_core::Error::Cuda(format!("{op}: {e}").into()))?;
    Ok(())
}

/// w ← w − η·s in place, from [g, b]; `[η, μ, λ]`, `[λ ≠ 0, step kind]`.
pub(crate) fn sgd_weight(
    op: &str,
    (w, lw): (&mut CudaStorage, &Layout),
    [(g, lg), (b, lb)]: [(&CudaStorage, &Layout); 2],
    [lr, momentum, wd]: [f32; 3],
    [decays, step]: [u32; 2],
) -> Result<()> {
    let device: CudaDevice = w.device.clone();
    let (g, b) = (contiguous_view(op, g, lg)?, contiguous_view(op, b, lb)?);
    let mut w = contiguous_view_mut(op, w, lw)?;
    let n = same_length(op, w.len(), [g.len(), b.len()])?;
    let Some(config) = launch_config(n) else {
        return Ok(()); // a grid of no blocks is a launch error
    };
    let count = n as u64;
    let func = kernel!(&device, SGD_WEIGHT);
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
    unsafe { launch.launch(config) }
        .map_err(|e| candle_core::Error::Cuda(format!("{op}: {e}").into()))?;
    Ok(())
}
