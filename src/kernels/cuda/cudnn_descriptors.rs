//! The cuDNN descriptors the fast path's CUDA side uses (NCHW f32 tensors, batch-norm parameters,
//! filters, 2-D convolutions, max pooling), each freed when dropped, and the α = 1, β = 0 scaling factors every
//! call here passes (result = 1·op(…) + 0·prior content). They are made per call: creating one is a
//! host-side allocation of a few hundred bytes, no device work (cuDNN API reference,
//! "cudnnCreateTensorDescriptor").

use std::ffi::c_void;

use cudarc::cudnn::sys;

use crate::kernels::cpu::im2col::ConvGeometry;
use crate::kernels::pool_geometry::PoolGeometry;
use crate::manifest::model::ConvMath;

static ONE: f32 = 1.0;
static ZERO: f32 = 0.0;

/// α = 1, as the pointer cuDNN takes (f32 data: f32 scaling factors).
pub(crate) fn one() -> *const c_void {
    &ONE as *const f32 as *const c_void
}

/// β = 0: the output's prior content is ignored.
pub(crate) fn zero() -> *const c_void {
    &ZERO as *const f32 as *const c_void
}

/// A cuDNN status as a candle error naming the call that failed.
pub(crate) fn check(status: sys::cudnnStatus_t, call: &str) -> candle_core::Result<()> {
    status
        .result()
        .map_err(|e| candle_core::Error::Cuda(format!("cuDNN {call}: {e:?}").into()))
}

/// cuDNN takes dimensions as C ints.
fn c_int(n: usize, what: &str) -> candle_core::Result<i32> {
    i32::try_from(n).map_err(|_| {
        candle_core::Error::Cuda(format!("cuDNN: {what} = {n} does not fit a C int").into())
    })
}

/// A cuDNN descriptor type: the owned handle, created empty by `create` (the constructors below then
/// set it) and destroyed when dropped.
macro_rules! descriptor {
    ($(#[$doc:meta])* $name:ident, $raw:ty, $create:ident, $destroy:ident, $what:literal) => {
        $(#[$doc])*
        pub(crate) struct $name(pub(crate) $raw);

        impl $name {
            fn create() -> candle_core::Result<Self> {
                let mut raw = std::ptr::null_mut();
                check(unsafe { sys::$create(&mut raw) }, concat!("create ", $what))?;
                Ok(Self(raw))
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                unsafe { sys::$destroy(self.0) };
            }
        }
    };
}

descriptor!(
    /// A dense NCHW f32 tensor.
    TensorDescriptor,
    sys::cudnnTensorDescriptor_t,
    cudnnCreateTensorDescriptor,
    cudnnDestroyTensorDescriptor,
    "tensor descriptor"
);

impl TensorDescriptor {
    pub(crate) fn nchw(dims: [usize; 4]) -> candle_core::Result<Self> {
        let desc = Self::create()?;
        let [n, c, h, w] = dims;
        check(
            unsafe {
                sys::cudnnSetTensor4dDescriptor(
                    desc.0,
                    sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
                    sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
                    c_int(n, "batch")?,
                    c_int(c, "channels")?,
                    c_int(h, "height")?,
                    c_int(w, "width")?,
                )
            },
            "set tensor descriptor",
        )?;
        Ok(desc)
    }

    /// The (1, c, 1, 1) descriptor of per-channel batch-norm parameters for data described by `x`.
    pub(crate) fn batch_norm_parameters(x: &TensorDescriptor) -> candle_core::Result<Self> {
        let desc = Self::create()?;
        check(
            unsafe {
                sys::cudnnDeriveBNTensorDescriptor(
                    desc.0,
                    x.0,
                    sys::cudnnBatchNormMode_t::CUDNN_BATCHNORM_SPATIAL,
                )
            },
            "derive batch-norm descriptor",
        )?;
        Ok(desc)
    }
}

descriptor!(
    /// A (c_out, c_in, k, k) f32 filter.
    FilterDescriptor,
    sys::cudnnFilterDescriptor_t,
    cudnnCreateFilterDescriptor,
    cudnnDestroyFilterDescriptor,
    "filter descriptor"
);

impl FilterDescriptor {
    pub(crate) fn of(g: &ConvGeometry) -> candle_core::Result<Self> {
        let desc = Self::create()?;
        check(
            unsafe {
                sys::cudnnSetFilter4dDescriptor(
                    desc.0,
                    sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
                    sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
                    c_int(g.c_out, "output channels")?,
                    c_int(g.c_in, "input channels")?,
                    c_int(g.k, "kernel")?,
                    c_int(g.k, "kernel")?,
                )
            },
            "set filter descriptor",
        )?;
        Ok(desc)
    }
}

/// The cuDNN math type of a convolution arithmetic: FMA (no tensor cores, results match candle's f32
/// kernels to rounding) for f32; the default math for TF32, which on Ampere and later GPUs lets
/// cuDNN use TF32 tensor cores for f32 data (as eager PyTorch's `allow_tf32` does).
pub(crate) fn math_type(math: ConvMath) -> sys::cudnnMathType_t {
    match math {
        ConvMath::F32 => sys::cudnnMathType_t::CUDNN_FMA_MATH,
        ConvMath::Tf32 => sys::cudnnMathType_t::CUDNN_DEFAULT_MATH,
    }
}

descriptor!(
    /// A 2-D cross-correlation (what deep-learning frameworks call convolution) with f32 accumulation,
    /// in the math type of [`math_type`].
    ConvolutionDescriptor,
    sys::cudnnConvolutionDescriptor_t,
    cudnnCreateConvolutionDescriptor,
    cudnnDestroyConvolutionDescriptor,
    "convolution descriptor"
);

impl ConvolutionDescriptor {
    pub(crate) fn of(g: &ConvGeometry, math: ConvMath) -> candle_core::Result<Self> {
        let desc = Self::create()?;
        let (pad, stride) = (c_int(g.padding, "padding")?, c_int(g.stride, "stride")?);
        check(
            unsafe {
                sys::cudnnSetConvolution2dDescriptor(
                    desc.0,
                    pad,
                    pad,
                    stride,
                    stride,
                    1,
                    1,
                    sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
                    sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
                )
            },
            "set convolution descriptor",
        )?;
        check(
            unsafe { sys::cudnnSetConvolutionMathType(desc.0, math_type(math)) },
            "set convolution math type",
        )?;
        Ok(desc)
    }

    /// Sets the math type of the algorithm chosen for it (cuDNN picks kernels by both).
    pub(crate) fn set_math(&self, math: sys::cudnnMathType_t) -> candle_core::Result<()> {
        check(
            unsafe { sys::cudnnSetConvolutionMathType(self.0, math) },
            "set convolution math type",
        )
    }
}

descriptor!(
    /// A 2-D max pooling whose padding never wins a window; deterministic backward.
    PoolingDescriptor,
    sys::cudnnPoolingDescriptor_t,
    cudnnCreatePoolingDescriptor,
    cudnnDestroyPoolingDescriptor,
    "pooling descriptor"
);

impl PoolingDescriptor {
    pub(crate) fn max(g: &PoolGeometry) -> candle_core::Result<Self> {
        let desc = Self::create()?;
        let (k, pad, stride) = (
            c_int(g.k, "window")?,
            c_int(g.padding, "padding")?,
            c_int(g.stride, "stride")?,
        );
        check(
            unsafe {
                sys::cudnnSetPooling2dDescriptor(
                    desc.0,
                    sys::cudnnPoolingMode_t::CUDNN_POOLING_MAX_DETERMINISTIC,
                    sys::cudnnNanPropagation_t::CUDNN_PROPAGATE_NAN,
                    k,
                    k,
                    pad,
                    pad,
                    stride,
                    stride,
                )
            },
            "set pooling descriptor",
        )?;
        Ok(desc)
    }
}
