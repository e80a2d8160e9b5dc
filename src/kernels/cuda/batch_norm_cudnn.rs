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

use candle_core::{CudaDevice, CudaStorage, Layout, Result};
use cudarc::cudnn::sys;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut};

use super::cuda_rules::batch_norm_epsilon;
use super::cudnn_descriptors::{check, one, zero, TensorDescriptor};
use super::cudnn_handle::CudnnHandle;
use crate::kernels::op_operands::contiguous_view;

/// What both passes set up: the handle and its stream, the data's (batch, c, h·w, 1) descriptor and
/// the per-channel parameters' one, and the outputs, uninitialised: one the data's size (y or dx)
/// and one of 2c (μ and σ², or dγ and dβ).
struct Call {
    handle: Rc<CudnnHandle>,
    stream: Arc<CudaStream>,
    data: TensorDescriptor,
    parameters: TensorDescriptor,
    data_out: CudaSlice<f32>,
    channel_out: CudaSlice<f32>,
}

impl Call {
    fn new(
        op: &str,
        (batch, channels, planes): (usize, usize, usize),
        eps: f64,
        device: &CudaDevice,
    ) -> Result<Self> {
        // the linked library's minimum (`CUDNN_BN_MIN_EPSILON`: 0 since cuDNN 8), refused here
        // with the layer's value rather than as a bare status code
        let version = unsafe { sys::cudnnGetVersion() };
        batch_norm_epsilon(eps, version)
            .map_err(|e| candle_core::Error::Msg(format!("{op}: {e}")))?;
        let handle = CudnnHandle::for_device(device)?;
        let stream = handle.stream().clone();
        let data = TensorDescriptor::nchw([batch, channels, planes, 1])?;
        let parameters = TensorDescriptor::batch_norm_parameters(&data)?;
        let data_out = unsafe { device.alloc::<f32>(batch * channels * planes) }?;
        let channel_out = unsafe { device.alloc::<f32>(2 * channels) }?;
        Ok(Self {
            handle,
            stream,
            data,
            parameters,
            data_out,
            channel_out,
        })
    }
}

/// (x, γ, β) → (y (batch·c·planes), [μ (c), unbiased σ² (c)]).
pub(crate) fn train_forward(
    op: &str,
    (batch, channels, planes): (usize, usize, usize),
    eps: f64,
    [(x, lx), (gamma, lg), (beta, lb)]: [(&CudaStorage, &Layout); 3],
) -> Result<(CudaStorage, CudaStorage)> {
    let Call {
        handle,
        stream,
        data,
        parameters,
        data_out: mut y,
        channel_out: mut statistics,
    } = Call::new(op, (batch, channels, planes), eps, &x.device)?;
    let device = &x.device;
    let (x, gamma, beta) = (
        contiguous_view(op, x, lx)?,
        contiguous_view(op, gamma, lg)?,
        contiguous_view(op, beta, lb)?,
    );
    // the running buffers are read (times 1 − 1 = 0) before cuDNN writes them: no NaN may be there
    stream
        .memset_zeros(&mut statistics)
        .map_err(|e| candle_core::Error::Cuda(format!("{op}: {e}").into()))?;
    {
        let (x_ptr, _x_order) = x.device_ptr(&stream);
        let (gamma_ptr, _g_order) = gamma.device_ptr(&stream);
        let (beta_ptr, _b_order) = beta.device_ptr(&stream);
        let (out, _out_order) = y.device_ptr_mut(&stream);
        let (mean, _stats_order) = statistics.device_ptr_mut(&stream);
        let var = mean + 4 * channels as u64;
        check(
            unsafe {
                sys::cudnnBatchNormalizationForwardTraining(
                    handle.raw,
                    sys::cudnnBatchNormMode_t::CUDNN_BATCHNORM_SPATIAL,
                    one(),
                    zero(),
                    data.0,
                    x_ptr as *const c_void,
                    data.0,
                    out as *mut c_void,
                    parameters.0,
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
    Ok((
        CudaStorage::wrap_cuda_slice(y, device.clone()),
        CudaStorage::wrap_cuda_slice(statistics, device.clone()),
    ))
}

/// (x, γ, dy) → (dx (batch·c·planes), [dγ (c), dβ (c)]).
pub(crate) fn backward(
    op: &str,
    (batch, channels, planes): (usize, usize, usize),
    eps: f64,
    [(x, lx), (gamma, lg), (dy, ld)]: [(&CudaStorage, &Layout); 3],
) -> Result<(CudaStorage, CudaStorage)> {
    let Call {
        handle,
        stream,
        data,
        parameters,
        data_out: mut dx,
        channel_out: mut parameter_gradients,
    } = Call::new(op, (batch, channels, planes), eps, &x.device)?;
    let device = &x.device;
    let (x, gamma, dy) = (
        contiguous_view(op, x, lx)?,
        contiguous_view(op, gamma, lg)?,
        contiguous_view(op, dy, ld)?,
    );
    {
        let (x_ptr, _x_order) = x.device_ptr(&stream);
        let (gamma_ptr, _g_order) = gamma.device_ptr(&stream);
        let (dy_ptr, _dy_order) = dy.device_ptr(&stream);
        let (out, _out_order) = dx.device_ptr_mut(&stream);
        let (dgamma, _pg_order) = parameter_gradients.device_ptr_mut(&stream);
        let dbeta = dgamma + 4 * channels as u64;
        check(
            unsafe {
                sys::cudnnBatchNormalizationBackward(
                    handle.raw,
                    sys::cudnnBatchNormMode_t::CUDNN_BATCHNORM_SPATIAL,
                    one(),
                    zero(),
                    one(),
                    zero(),
                    data.0,
                    x_ptr as *const c_void,
                    data.0,
                    dy_ptr as *const c_void,
                    data.0,
                    out as *mut c_void,
                    parameters.0,
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
    Ok((
        CudaStorage::wrap_cuda_slice(dx, device.clone()),
        CudaStorage::wrap_cuda_slice(parameter_gradients, device.clone()),
    ))
}
