//! The CUDA side of the fast path's training-mode batch norm: the forward and the backward as one
//! cuDNN call each (`cudnnBatchNormalizationForwardTraining`, `cudnnBatchNormalizationBackward`,
//! spatial mode: statistics per channel over batch, height and width; cuDNN API reference), laid
//! out as the CPU ops lay theirs: forward → y and [μ, σ²] apart, backward → dx and [dγ, dβ] apart.
//!
//! The forward hands cuDNN zeroed running-statistics buffers with an averaging factor of 1, so they
//! come back holding this batch's mean and unbiased variance (r ← (1 − 1)·r + 1·batch), which the
//! caller averages into the model's running statistics. The saved mean and inverse deviation are
//! not kept: the backward recomputes them from x (cuDNN accepts null for both), as the CPU backward
//! does.

use std::ffi::c_void;

use std::rc::Rc;
use std::sync::Arc;

use candle_core::{CudaDevice, CudaStorage, Result};
use cudarc::cudnn::sys;
use cudarc::driver::{CudaSlice, CudaStream, CudaView, DevicePtr, DevicePtrMut};

use super::cuda_rules::batch_norm_epsilon;
use super::cudnn_descriptors::{check, one, zero, TensorDescriptor};
use super::cudnn_handle::CudnnHandle;
use crate::kernels::custom_op::Operand;
use crate::kernels::op_operands::contiguous_view;

/// What both passes set up: the handle and its stream, the data's (batch, c, h·w, 1) descriptor and
/// the per-channel parameters' one, and the outputs, uninitialised: one the data's size (y or dx)
/// and one of 2c (μ and σ², or dγ and dβ).
struct Call {
    device: CudaDevice,
    handle: Rc<CudnnHandle>,
    stream: Arc<CudaStream>,
    data: TensorDescriptor,
    parameters: TensorDescriptor,
    data_out: CudaSlice<f32>,
    channel_out: CudaSlice<f32>,
}

impl Call {
    /// The set-up of a pass over `operands`, and their contiguous views.
    fn new<'a>(
        op: &str,
        (batch, channels, planes): (usize, usize, usize),
        eps: f64,
        operands: [Operand<'a>; 3],
    ) -> Result<(Self, [CudaView<'a, f32>; 3])> {
        // the linked library's minimum (`CUDNN_BN_MIN_EPSILON`: 0 since cuDNN 8), refused here
        // with the layer's value rather than as a bare status code
        let version = unsafe { sys::cudnnGetVersion() };
        batch_norm_epsilon(eps, version)
            .map_err(|e| candle_core::Error::Msg(format!("{op}: {e}")))?;
        let device = operands[0].0.device.clone();
        let handle = CudnnHandle::for_device(&device)?;
        let stream = handle.stream().clone();
        let data = TensorDescriptor::nchw([batch, channels, planes, 1])?;
        let parameters = TensorDescriptor::batch_norm_parameters(&data)?;
        let data_out = unsafe { device.alloc::<f32>(batch * channels * planes) }?;
        let channel_out = unsafe { device.alloc::<f32>(2 * channels) }?;
        let [a, b, c] = operands;
        let views = [
            contiguous_view(op, a.0, a.1)?,
            contiguous_view(op, b.0, b.1)?,
            contiguous_view(op, c.0, c.1)?,
        ];
        let call = Self {
            device,
            handle,
            stream,
            data,
            parameters,
            data_out,
            channel_out,
        };
        Ok((call, views))
    }

    /// The two outputs, as candle storages.
    fn outputs(self) -> (CudaStorage, CudaStorage) {
        (
            CudaStorage::wrap_cuda_slice(self.data_out, self.device.clone()),
            CudaStorage::wrap_cuda_slice(self.channel_out, self.device),
        )
    }
}

/// (x, γ, β) → (y (batch·c·planes), [μ (c), unbiased σ² (c)]).
pub(crate) fn train_forward(
    op: &str,
    shape: (usize, usize, usize),
    eps: f64,
    operands: [Operand<'_>; 3],
) -> Result<(CudaStorage, CudaStorage)> {
    let (mut call, [x, gamma, beta]) = Call::new(op, shape, eps, operands)?;
    let stream = call.stream.clone();
    // the running buffers are read (times 1 − 1 = 0) before cuDNN writes them: no NaN may be there
    stream
        .memset_zeros(&mut call.channel_out)
        .map_err(|e| candle_core::Error::Cuda(format!("{op}: {e}").into()))?;
    {
        let (x_ptr, _x_order) = x.device_ptr(&stream);
        let (gamma_ptr, _g_order) = gamma.device_ptr(&stream);
        let (beta_ptr, _b_order) = beta.device_ptr(&stream);
        let (out, _out_order) = call.data_out.device_ptr_mut(&stream);
        let (mean, _stats_order) = call.channel_out.device_ptr_mut(&stream);
        let var = mean + 4 * shape.1 as u64;
        check(
            unsafe {
                sys::cudnnBatchNormalizationForwardTraining(
                    call.handle.raw,
                    sys::cudnnBatchNormMode_t::CUDNN_BATCHNORM_SPATIAL,
                    one(),
                    zero(),
                    call.data.0,
                    x_ptr as *const c_void,
                    call.data.0,
                    out as *mut c_void,
                    call.parameters.0,
                    gamma_ptr as *const c_void,
                    beta_ptr as *const c_void,
                    1.0,
                    mean as *mut c_void,
                    var as *mut c_void,
                    eps,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            },
            "batch-norm forward (training)",
        )?;
    }
    Ok(call.outputs())
}

/// (x, γ, dy) → (dx (batch·c·planes), [dγ (c), dβ (c)]).
pub(crate) fn backward(
    op: &str,
    shape: (usize, usize, usize),
    eps: f64,
    operands: [Operand<'_>; 3],
) -> Result<(CudaStorage, CudaStorage)> {
    let (mut call, [x, gamma, dy]) = Call::new(op, shape, eps, operands)?;
    let stream = call.stream.clone();
    {
        let (x_ptr, _x_order) = x.device_ptr(&stream);
        let (gamma_ptr, _g_order) = gamma.device_ptr(&stream);
        let (dy_ptr, _dy_order) = dy.device_ptr(&stream);
        let (out, _out_order) = call.data_out.device_ptr_mut(&stream);
        let (dgamma, _pg_order) = call.channel_out.device_ptr_mut(&stream);
        let dbeta = dgamma + 4 * shape.1 as u64;
        check(
            unsafe {
                sys::cudnnBatchNormalizationBackward(
                    call.handle.raw,
                    sys::cudnnBatchNormMode_t::CUDNN_BATCHNORM_SPATIAL,
                    one(),
                    zero(),
                    one(),
                    zero(),
                    call.data.0,
                    x_ptr as *const c_void,
                    call.data.0,
                    dy_ptr as *const c_void,
                    call.data.0,
                    out as *mut c_void,
                    call.parameters.0,
                    gamma_ptr as *const c_void,
                    dgamma as *mut c_void,
                    dbeta as *mut c_void,
                    eps,
                    std::ptr::null(),
                    std::ptr::null(),
                )
            },
            "batch-norm backward",
        )?;
    }
    Ok(call.outputs())
}
