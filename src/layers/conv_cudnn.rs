//! The CUDA side of the fast path's convolution ops: forward, backward-data and backward-filter as
//! one cuDNN call each (`cudnnConvolutionForward`, `…BackwardData`, `…BackwardFilter`; cuDNN API
//! reference), in f32 with FMA math or with TF32 tensor cores (`conv_math`), algorithms cached per
//! shape and one shared workspace
//! (`cudnn_handle`). The same three passes as `im2col`'s CPU formulas, which the CPU tests check
//! against finite differences; on a GPU `layers::fast_ops_check` checks these against candle's
//! stock convolution before a model uses them.

use std::ffi::c_void;

use candle_core::{CudaStorage, Layout, Result};
use cudarc::cudnn::sys;
use cudarc::driver::{CudaView, DevicePtr, DevicePtrMut};

use super::cudnn_descriptors::{
    check, one, zero, ConvolutionDescriptor, FilterDescriptor, TensorDescriptor,
};
use super::cudnn_handle::{Algorithm, ConvPass, CudnnHandle};
use super::im2col::ConvGeometry;
use super::op_operands::contiguous_view;
use super::ConvMath;

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
/// elements.
fn run_pass(
    g: &ConvGeometry,
    math: ConvMath,
    pass: ConvPass,
    (a, b): (CudaView<'_, f32>, CudaView<'_, f32>),
    device: &candle_core::CudaDevice,
    len: usize,
) -> Result<CudaStorage> {
    let handle = CudnnHandle::for_device(device)?;
    let d = Descriptors::of(g, math)?;
    let chosen = handle.algorithm(g, math, pass, (&d.x, &d.w, &d.conv, &d.y))?;
    d.conv.set_math(chosen.math)?;
    let mut out = unsafe { device.alloc::<f32>(len) }?;
    let stream = handle.stream().clone();
    handle.with_workspace(chosen.workspace, |workspace| {
        let (a_ptr, _a_order) = a.device_ptr(&stream);
        let (b_ptr, _b_order) = b.device_ptr(&stream);
        let (out_ptr, _out_order) = out.device_ptr_mut(&stream);
        let (a_ptr, b_ptr) = (a_ptr as *const c_void, b_ptr as *const c_void);
        let out_ptr = out_ptr as *mut c_void;
        let size = chosen.workspace;
        let status = unsafe {
            match chosen.algorithm {
                Algorithm::Forward(algo) => sys::cudnnConvolutionForward(
                    handle.raw,
                    one(),
                    d.x.0,
                    a_ptr,
                    d.w.0,
                    b_ptr,
                    d.conv.0,
                    algo,
                    workspace,
                    size,
                    zero(),
                    d.y.0,
                    out_ptr,
                ),
                Algorithm::BackwardData(algo) => sys::cudnnConvolutionBackwardData(
                    handle.raw,
                    one(),
                    d.w.0,
                    b_ptr,
                    d.y.0,
                    a_ptr,
                    d.conv.0,
                    algo,
                    workspace,
                    size,
                    zero(),
                    d.x.0,
                    out_ptr,
                ),
                Algorithm::BackwardFilter(algo) => sys::cudnnConvolutionBackwardFilter(
                    handle.raw,
                    one(),
                    d.x.0,
                    a_ptr,
                    d.y.0,
                    b_ptr,
                    d.conv.0,
                    algo,
                    workspace,
                    size,
                    zero(),
                    d.w.0,
                    out_ptr,
                ),
            }
        };
        check(status, &format!("convolution {pass:?}"))
    })?;
    Ok(CudaStorage::wrap_cuda_slice(out, device.clone()))
}

/// (x, weight) → out (batch, c_out, out_h, out_w).
pub(super) fn forward(
    g: &ConvGeometry,
    math: ConvMath,
    op: &str,
    (x, lx): (&CudaStorage, &Layout),
    (w, lw): (&CudaStorage, &Layout),
) -> Result<CudaStorage> {
    let len = g.batch * g.c_out * g.pixels();
    let inputs = (contiguous_view(op, x, lx)?, contiguous_view(op, w, lw)?);
    run_pass(g, math, ConvPass::Forward, inputs, &x.device, len)
}

/// (grad, weight) → dx (batch, c_in, h, w).
pub(super) fn backward_data(
    g: &ConvGeometry,
    math: ConvMath,
    op: &str,
    (grad, lg): (&CudaStorage, &Layout),
    (w, lw): (&CudaStorage, &Layout),
) -> Result<CudaStorage> {
    let len = g.batch * g.c_in * g.h * g.w;
    let inputs = (contiguous_view(op, grad, lg)?, contiguous_view(op, w, lw)?);
    run_pass(g, math, ConvPass::BackwardData, inputs, &grad.device, len)
}

/// (x, grad) → dW (c_out, c_in, k, k).
pub(super) fn backward_filter(
    g: &ConvGeometry,
    math: ConvMath,
    op: &str,
    (x, lx): (&CudaStorage, &Layout),
    (grad, lg): (&CudaStorage, &Layout),
) -> Result<CudaStorage> {
    let len = g.c_out * g.patch();
    let inputs = (contiguous_view(op, x, lx)?, contiguous_view(op, grad, lg)?);
    run_pass(g, math, ConvPass::BackwardFilter, inputs, &x.device, len)
}
