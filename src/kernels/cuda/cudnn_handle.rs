//! One cuDNN handle per thread and CUDA device, bound to the stream candle runs that device's
//! kernels on (so cuDNN's work is ordered with candle's without synchronising), with what the fast
//! path's cuDNN calls share: one workspace, grown to the largest request and reused by every later
//! call, and the convolution algorithms: cuDNN's heuristic ranking (`cudnnGetConvolution*Algorithm_v7`,
//! as eager PyTorch without `cudnn.benchmark`) filtered by `cuda_rules` (deterministic by default),
//! walked by `conv_cudnn` until one runs, and cached per shape, settings and pass.
//! cuDNN handles are not thread-safe (cuDNN developer guide, "Thread Safety"), hence per thread, as
//! candle keeps its own.
//!
//! Compiled in CI (`--features cuda`); not yet run on a GPU (the device script
//! `benches/device/run_step_timing.sh` checks it first, with `examples/fast_ops_check.rs`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;
use std::rc::Rc;
use std::sync::Arc;

use candle_core::{CudaDevice, Result};
use cudarc::cudnn::sys;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtrMut};

use super::cuda_rules::{record_choice, usable_algorithms, Candidate, KernelMath, Ranked};
use super::cudnn_descriptors::{check, ConvolutionDescriptor, FilterDescriptor, TensorDescriptor};
use crate::kernels::conv_settings::ConvSettings;
use crate::kernels::cpu::im2col::ConvGeometry;

/// The most workspace one convolution may ask for; algorithms wanting more are passed over.
const WORKSPACE_LIMIT: usize = 1 << 30;

/// A convolution pass, for the algorithm cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ConvPass {
    Forward,
    BackwardData,
    BackwardFilter,
}

/// A chosen algorithm of one pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Algorithm {
    Forward(sys::cudnnConvolutionFwdAlgo_t),
    BackwardData(sys::cudnnConvolutionBwdDataAlgo_t),
    BackwardFilter(sys::cudnnConvolutionBwdFilterAlgo_t),
}

/// A chosen algorithm, the math type it runs in and the workspace it needs, in bytes.
pub(crate) type ChosenAlgorithm = Candidate<Algorithm>;

pub(crate) struct CudnnHandle {
    pub(crate) raw: sys::cudnnHandle_t,
    stream: Arc<CudaStream>,
    workspace: RefCell<Option<CudaSlice<u8>>>,
    algorithms: RefCell<HashMap<(ConvGeometry, ConvSettings, ConvPass), ChosenAlgorithm>>,
}

thread_local! {
    static HANDLES: RefCell<HashMap<candle_core::cuda_backend::DeviceId, Rc<CudnnHandle>>> =
        RefCell::new(HashMap::new());
}

impl CudnnHandle {
    /// This thread's handle for `device`, made on first use.
    pub(crate) fn for_device(device: &CudaDevice) -> Result<Rc<CudnnHandle>> {
        // every cuDNN entry point comes through here: bind this device's context each time, since
        // a thread may have bound another device's since (cuDNN works in the current context)
        let stream = device.cuda_stream();
        stream
            .context()
            .bind_to_thread()
            .map_err(|e| candle_core::Error::Cuda(format!("binding the context: {e}").into()))?;
        HANDLES.with(|handles| {
            if let Some(h) = handles.borrow().get(&device.id()) {
                return Ok(h.clone());
            }
            let mut raw = std::ptr::null_mut();
            check(unsafe { sys::cudnnCreate(&mut raw) }, "create handle")?;
            let handle = Rc::new(CudnnHandle {
                raw,
                stream: stream.clone(),
                workspace: RefCell::new(None),
                algorithms: RefCell::new(HashMap::new()),
            });
            check(
                unsafe { sys::cudnnSetStream(raw, stream.cu_stream() as sys::cudaStream_t) },
                "set stream",
            )?;
            handles.borrow_mut().insert(device.id(), handle.clone());
            Ok(handle)
        })
    }

    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Runs `call` with a workspace of at least `bytes` (a null pointer when none is needed).
    pub(crate) fn with_workspace<R>(
        &self,
        bytes: usize,
        call: impl FnOnce(*mut c_void) -> Result<R>,
    ) -> Result<R> {
        if bytes == 0 {
            return call(std::ptr::null_mut());
        }
        let mut workspace = self.workspace.borrow_mut();
        if workspace.as_ref().is_none_or(|w| w.len() < bytes) {
            // the old buffer is freed in stream order, after the work queued on it
            *workspace = None;
            *workspace = Some(unsafe { self.stream.alloc::<u8>(bytes) }.map_err(|e| {
                candle_core::Error::Cuda(format!("cuDNN workspace of {bytes} bytes: {e}").into())
            })?);
        }
        let buffer = workspace.as_mut().expect("allocated above");
        let (ptr, _ordering) = buffer.device_ptr_mut(&self.stream);
        call(ptr as *mut c_void)
    }

    /// The algorithm chosen earlier for one pass of convolution `g` in `settings`, if any.
    pub(crate) fn cached(
        &self,
        g: &ConvGeometry,
        settings: ConvSettings,
        pass: ConvPass,
    ) -> Option<ChosenAlgorithm> {
        self.algorithms.borrow().get(&(*g, settings, pass)).copied()
    }

    /// Keeps the algorithm that ran for one pass and shape, and records it (once per shape) for
    /// the examples' output: algorithm, math type, workspace, and those that failed before it.
    pub(crate) fn remember(
        &self,
        (g, settings, pass): (&ConvGeometry, ConvSettings, ConvPass),
        chosen: ChosenAlgorithm,
        failed: &[String],
    ) {
        self.algorithms
            .borrow_mut()
            .insert((*g, settings, pass), chosen);
        let skipped = if failed.is_empty() {
            String::new()
        } else {
            format!(" after {}", failed.join(", "))
        };
        record_choice(format!(
            "cudnn conv {pass:?} {g:?} {:?} {:?}: {:?} math={:?} workspace={}{skipped}",
            settings.math, settings.algorithms, chosen.algorithm, chosen.math, chosen.workspace
        ));
    }

    /// The algorithms to try for one pass of convolution `g` (descriptors already made for it), in
    /// the order of cuDNN's heuristic ranking (`cudnnGetConvolution*Algorithm_v7`, as eager
    /// PyTorch without `cudnn.benchmark`) filtered by `cuda_rules::usable_algorithms`:
    /// deterministic only unless the cell allows the fastest, f32 without tensor cores, implicit
    /// GEMM last.
    pub(crate) fn candidates(
        &self,
        settings: ConvSettings,
        pass: ConvPass,
        (x, w, conv, y): (
            &TensorDescriptor,
            &FilterDescriptor,
            &ConvolutionDescriptor,
            &TensorDescriptor,
        ),
    ) -> Result<Vec<Candidate<Algorithm>>> {
        macro_rules! ranking {
            ($perf:ty, $query:ident, $variant:ident, $args:expr, $what:literal) => {{
                let mut perf = [std::mem::zeroed::<$perf>(); 16];
                let mut n = 0;
                let (a, b, c, d) = $args;
                check(
                    sys::$query(self.raw, a, b, c, d, 16, &mut n, perf.as_mut_ptr()),
                    $what,
                )?;
                perf[..n.max(0) as usize]
                    .iter()
                    .map(|p| Ranked {
                        algorithm: Algorithm::$variant(p.algo),
                        supported: p.status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS,
                        deterministic: p.determinism
                            == sys::cudnnDeterminism_t::CUDNN_DETERMINISTIC,
                        math: kernel_math(p.mathType),
                        workspace: p.memory,
                    })
                    .collect::<Vec<_>>()
            }};
        }
        let ranked = unsafe {
            match pass {
                ConvPass::Forward => ranking!(
                    sys::cudnnConvolutionFwdAlgoPerf_t,
                    cudnnGetConvolutionForwardAlgorithm_v7,
                    Forward,
                    (x.0, w.0, conv.0, y.0),
                    "forward algorithm"
                ),
                ConvPass::BackwardData => ranking!(
                    sys::cudnnConvolutionBwdDataAlgoPerf_t,
                    cudnnGetConvolutionBackwardDataAlgorithm_v7,
                    BackwardData,
                    (w.0, y.0, conv.0, x.0),
                    "backward-data algorithm"
                ),
                ConvPass::BackwardFilter => ranking!(
                    sys::cudnnConvolutionBwdFilterAlgoPerf_t,
                    cudnnGetConvolutionBackwardFilterAlgorithm_v7,
                    BackwardFilter,
                    (x.0, y.0, conv.0, w.0),
                    "backward-filter algorithm"
                ),
            }
        };
        // implicit GEMM: deterministic and FMA for every shape (cuDNN API reference, per algorithm)
        let fallback = match pass {
            ConvPass::Forward => Algorithm::Forward(
                sys::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
            ),
            ConvPass::BackwardData => Algorithm::BackwardData(
                sys::cudnnConvolutionBwdDataAlgo_t::CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
            ),
            ConvPass::BackwardFilter => Algorithm::BackwardFilter(
                sys::cudnnConvolutionBwdFilterAlgo_t::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1,
            ),
        };
        Ok(usable_algorithms(
            &ranked,
            settings.math,
            settings.algorithms,
            WORKSPACE_LIMIT,
            fallback,
        ))
    }

    /// The workspace `algorithm` needs as cuDNN sizes it (descriptor set to its math type), or the
    /// ranking's figure if larger.
    pub(crate) fn workspace_size(
        &self,
        candidate: &Candidate<Algorithm>,
        (x, w, conv, y): (
            &TensorDescriptor,
            &FilterDescriptor,
            &ConvolutionDescriptor,
            &TensorDescriptor,
        ),
    ) -> Result<usize> {
        let mut sized = 0usize;
        let status = unsafe {
            match candidate.algorithm {
                Algorithm::Forward(a) => sys::cudnnGetConvolutionForwardWorkspaceSize(
                    self.raw, x.0, w.0, conv.0, y.0, a, &mut sized,
                ),
                Algorithm::BackwardData(a) => sys::cudnnGetConvolutionBackwardDataWorkspaceSize(
                    self.raw, w.0, y.0, conv.0, x.0, a, &mut sized,
                ),
                Algorithm::BackwardFilter(a) => {
                    sys::cudnnGetConvolutionBackwardFilterWorkspaceSize(
                        self.raw, x.0, y.0, conv.0, w.0, a, &mut sized,
                    )
                }
            }
        };
        check(
            status,
            &format!("workspace size of {:?}", candidate.algorithm),
        )?;
        Ok(sized.max(candidate.workspace))
    }
}

/// cuDNN's math type as the rules see it.
fn kernel_math(math: sys::cudnnMathType_t) -> KernelMath {
    match math {
        sys::cudnnMathType_t::CUDNN_FMA_MATH => KernelMath::Fma,
        sys::cudnnMathType_t::CUDNN_TENSOR_OP_MATH => KernelMath::TensorOp,
        sys::cudnnMathType_t::CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION => {
            KernelMath::TensorOpAllowConversion
        }
        _ => KernelMath::Default,
    }
}

/// The math type to set on the descriptor to launch in `math`.
pub(crate) fn launch_math(math: KernelMath) -> sys::cudnnMathType_t {
    match math {
        KernelMath::Fma => sys::cudnnMathType_t::CUDNN_FMA_MATH,
        KernelMath::Default => sys::cudnnMathType_t::CUDNN_DEFAULT_MATH,
        KernelMath::TensorOp => sys::cudnnMathType_t::CUDNN_TENSOR_OP_MATH,
        KernelMath::TensorOpAllowConversion => {
            sys::cudnnMathType_t::CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION
        }
    }
}

impl Drop for CudnnHandle {
    fn drop(&mut self) {
        unsafe { sys::cudnnDestroy(self.raw) };
    }
}
