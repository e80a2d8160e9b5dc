//! The CUDA side of the fast path's convolution ops: forward, backward-data and backward-filter as
//! one cuDNN call each (`cudnnConvolutionForward`, `…BackwardData`, `…BackwardFilter`; cuDNN API
//! reference), in f32 with FMA math or with TF32 tensor cores (`conv_math`), deterministic
//! algorithms unless the cell allows the fastest (`conv_algorithms`), cached per shape, and one
//! shared workspace
//! (`cudnn_handle`). The same three passes as `im2col`'s CPU formulas, which the CPU tests check
//! against finite differences; on a GPU `model::fast_ops_check` checks these against candle's
//! stock convolution before a model uses them.

use std::ffi::c_void;

use candle_core::{CudaStorage, Result};
use cudarc::cudnn::sys;
use cudarc::driver::{CudaSlice, CudaView, DevicePtr, DevicePtrMut};

use super::cuda_rules::{first_that_runs, Candidate};
use super::cudnn_descriptors::{
    check, one, zero, ConvolutionDescriptor, FilterDescriptor, TensorDescriptor,
};
use super::cudnn_handle::{launch_math, Algorithm, ChosenAlgorithm, ConvPass, CudnnHandle};
use crate::kernels::conv_settings::ConvSettings;
use crate::kernels::cpu::im2col::ConvGeometry;
use crate::kernels::custom_op::Operand;
use crate::kernels::op_operands::contiguous_view;
use crate::manifest::model::ConvMath;

/// Which operand is which in one pass: (x or dx, w or dw, y or dy).
struct Descriptors {
    x: TensorDescriptor,
    w: FilterDescriptor,
    conv: ConvolutionDescriptor,
    y: TensorDescriptor,
}

impl Descriptors {
    fn of(g: &ConvGeometry, math: ConvMath) -> Result<Self> {
        Ok(Self {
            x: TensorDescriptor::nchw([g.batch, g.c_in, g.h, g.w])?,
            w: FilterDescriptor::of(g)?,
            conv: ConvolutionDescriptor::of(g, math)?,
            y: TensorDescriptor::nchw([g.batch, g.c_out, g.out_h(), g.out_w()])?,
        })
    }
}

/// Runs one pass: `a` and `b` are its two inputs in cuDNN's argument order, the output has `len`
/// elements. The first time a shape is seen, cuDNN's usable algorithms are tried in order and the
/// first that sizes its workspace and runs is kept (a NOT_SUPPORTED or failing one is passed over
/// and named in the record); later calls run the kept one.
fn run_pass(
    g: &ConvGeometry,
    settings: ConvSettings,
    pass: ConvPass,
    (a, b): (CudaView<'_, f32>, CudaView<'_, f32>),
    device: &candle_core::CudaDevice,
    len: usize,
) -> Result<CudaStorage> {
    let handle = CudnnHandle::for_device(device)?;
    let d = Descriptors::of(g, settings.math)?;
    let descriptors = (&d.x, &d.w, &d.conv, &d.y);
    let mut out = unsafe { device.alloc::<f32>(len) }?;
    let stream = handle.stream().clone();
    let launch = |chosen: &ChosenAlgorithm, out: &mut CudaSlice<f32>| -> Result<()> {
        d.conv.set_math(launch_math(chosen.math))?;
        handle.with_workspace(chosen.workspace, |workspace| {
            let (a_ptr, _a_order) = a.device_ptr(&stream);
            let (b_ptr, _b_order) = b.device_ptr(&stream);
            let (out_ptr, _out_order) = out.device_ptr_mut(&stream);
            let operands = (
                a_ptr as *const c_void,
                b_ptr as *const c_void,
                out_ptr as *mut c_void,
            );
            check(
                unsafe { launch_pass(&handle, &d, chosen, operands, workspace) },
                &format!("convolution {pass:?} with {:?}", chosen.algorithm),
            )
        })
    };
    if let Some(chosen) = handle.cached(g, settings, pass) {
        launch(&chosen, &mut out)?;
    } else {
        let candidates = handle.candidates(settings, pass, descriptors)?;
        let walked = first_that_runs(&candidates, |candidate| -> Result<ChosenAlgorithm> {
            d.conv.set_math(launch_math(candidate.math))?;
            let chosen = Candidate {
                workspace: handle.workspace_size(&candidate, descriptors)?,
                ..candidate
            };
            launch(&chosen, &mut out)?;
            Ok(chosen)
        });
        match walked {
            Ok(walked) => {
                let failed: Vec<String> = walked
                    .failed
                    .iter()
                    .map(|(c, e)| format!("{:?} ({e})", c.algorithm))
                    .collect();
                handle.remember((g, settings, pass), walked.value, &failed);
            }
            Err(failed) => {
                let tried: Vec<String> = failed
                    .iter()
                    .map(|(c, e)| format!("{:?}: {e}", c.algorithm))
                    .collect();
                candle_core::bail!(
                    "convolution {pass:?} {g:?}: no cuDNN algorithm ran ({})",
                    tried.join("; ")
                );
            }
        }
    }
    Ok(CudaStorage::wrap_cuda_slice(out, device.clone()))
}

/// One cuDNN convolution call of `chosen`'s pass: (a, b) → out, in cuDNN's argument order.
unsafe fn launch_pass(
    handle: &CudnnHandle,
    d: &Descriptors,
    chosen: &ChosenAlgorithm,
    (a, b, out): (*const c_void, *const c_void, *mut c_void),
    workspace: *mut c_void,
) -> sys::cudnnStatus_t {
    let size = chosen.workspace;
    match chosen.algorithm {
        Algorithm::Forward(algo) => sys::cudnnConvolutionForward(
            handle.raw,
            one(),
            d.x.0,
            a,
            d.w.0,
            b,
            d.conv.0,
            algo,
            workspace,
            size,
            zero(),
            d.y.0,
            out,
        ),
        Algorithm::BackwardData(algo) => sys::cudnnConvolutionBackwardData(
            handle.raw,
            one(),
            d.w.0,
            b,
            d.y.0,
            a,
            d.conv.0,
            algo,
            workspace,
            size,
            zero(),
            d.x.0,
            out,
        ),
        Algorithm::BackwardFilter(algo) => sys::cudnnConvolutionBackwardFilter(
            handle.raw,
            one(),
            d.x.0,
            a,
            d.y.0,
            b,
            d.conv.0,
            algo,
            workspace,
            size,
            zero(),
            d.w.0,
            out,
        ),
    }
}

/// One pass of the convolution, (a, b) → out in the pass's operand order: forward (x, weight) →
/// out (batch, c_out, out_h, out_w); backward-data (grad, weight) → dx (batch, c_in, h, w);
/// backward-filter (x, grad) → dW (c_out, c_in, k, k).
pub(crate) fn convolution_pass(
    g: &ConvGeometry,
    settings: ConvSettings,
    pass: ConvPass,
    op: &str,
    [(a, la), (b, lb)]: [Operand<'_>; 2],
) -> Result<CudaStorage> {
    let len = match pass {
        ConvPass::Forward => g.batch * g.c_out * g.pixels(),
        ConvPass::BackwardData => g.batch * g.c_in * g.h * g.w,
        ConvPass::BackwardFilter => g.c_out * g.patch(),
    };
    let inputs = (contiguous_view(op, a, la)?, contiguous_view(op, b, lb)?);
    run_pass(g, settings, pass, inputs, &a.device, len)
}
