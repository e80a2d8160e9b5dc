//! The CUDA side of the fast path's max pooling: forward and backward as one cuDNN call each
//! (`cudnnPoolingForward`, `cudnnPoolingBackward`, `CUDNN_POOLING_MAX_DETERMINISTIC`; cuDNN API
//! reference). cuDNN never lets a padding position win a window, as the CPU formulas of
//! `max_pool_ops`; its backward needs the pooled output, which the backward op is given.

use std::ffi::c_void;

use candle_core::{CudaStorage, Layout, Result};
use cudarc::cudnn::sys;
use cudarc::driver::{DevicePtr, DevicePtrMut};

use super::cudnn_descriptors::{check, one, zero, PoolingDescriptor, TensorDescriptor};
use super::cudnn_handle::CudnnHandle;
use crate::kernels::op_operands::contiguous_view;
use crate::kernels::pool_geometry::PoolGeometry;

/// The input's and the output's descriptors, and the pooling's.
fn descriptors(
    g: &PoolGeometry,
) -> Result<(TensorDescriptor, TensorDescriptor, PoolingDescriptor)> {
    Ok((
        TensorDescriptor::nchw([g.batch, g.channels, g.h, g.w])?,
        TensorDescriptor::nchw([g.batch, g.channels, g.out_h(), g.out_w()])?,
        PoolingDescriptor::max(g)?,
    ))
}

/// x → y.
pub(crate) fn forward(
    g: &PoolGeometry,
    op: &str,
    (x, lx): (&CudaStorage, &Layout),
) -> Result<CudaStorage> {
    let device = &x.device;
    let handle = CudnnHandle::for_device(device)?;
    let stream = handle.stream().clone();
    let x = contiguous_view(op, x, lx)?;
    let (x_desc, y_desc, pool) = descriptors(g)?;
    let mut y = unsafe { device.alloc::<f32>(g.batch * g.channels * g.out_h() * g.out_w()) }?;
    {
        let (x_ptr, _x_order) = x.device_ptr(&stream);
        let (y_ptr, _y_order) = y.device_ptr_mut(&stream);
        check(
            unsafe {
                sys::cudnnPoolingForward(
                    handle.raw,
                    pool.0,
                    one(),
                    x_desc.0,
                    x_ptr as *const c_void,
                    zero(),
                    y_desc.0,
                    y_ptr as *mut c_void,
                )
            },
            "max-pool forward",
        )?;
    }
    Ok(CudaStorage::wrap_cuda_slice(y, device.clone()))
}

/// (x, y, dy) → dx.
pub(crate) fn backward(
    g: &PoolGeometry,
    op: &str,
    [(x, lx), (y, ly), (dy, ld)]: [(&CudaStorage, &Layout); 3],
) -> Result<CudaStorage> {
    let device = &x.device;
    let handle = CudnnHandle::for_device(device)?;
    let stream = handle.stream().clone();
    let (x, y, dy) = (
        contiguous_view(op, x, lx)?,
        contiguous_view(op, y, ly)?,
        contiguous_view(op, dy, ld)?,
    );
    let (x_desc, y_desc, pool) = descriptors(g)?;
    // zeroed: inputs in no window (the last row and column of an odd side under a 2×2 pool) get no
    // gradient, and the API reference does not say that a β of 0 writes them
    let mut dx = device.alloc_zeros::<f32>(g.batch * g.channels * g.h * g.w)?;
    {
        let (x_ptr, _x_order) = x.device_ptr(&stream);
        let (y_ptr, _y_order) = y.device_ptr(&stream);
        let (dy_ptr, _dy_order) = dy.device_ptr(&stream);
        let (dx_ptr, _dx_order) = dx.device_ptr_mut(&stream);
        check(
            unsafe {
                sys::cudnnPoolingBackward(
                    handle.raw,
                    pool.0,
                    one(),
                    y_desc.0,
                    y_ptr as *const c_void,
                    y_desc.0,
                    dy_ptr as *const c_void,
                    x_desc.0,
                    x_ptr as *const c_void,
                    zero(),
                    x_desc.0,
                    dx_ptr as *mut c_void,
                )
            },
            "max-pool backward",
        )?;
    }
    Ok(CudaStorage::wrap_cuda_slice(dx, device.clone()))
}
