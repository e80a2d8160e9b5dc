//! One cuDNN handle per thread and CUDA device, bound to the stream candle runs that device's
//! kernels on (so cuDNN's work is ordered with candle's without synchronising), with what the fast
//! path's cuDNN calls share: one workspace, grown to the largest request and reused by every later
//! call, and the convolution algorithms, chosen once per shape and pass by cuDNN's heuristics
//! (`cudnnGetConvolution*Algorithm_v7`, as eager PyTorch does without `cudnn.benchmark`) and cached.
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

use super::cudnn_descriptors::{
    check, math_type, ConvolutionDescriptor, FilterDescriptor, TensorDescriptor,
};
use super::im2col::ConvGeometry;
use super::ConvMath;

/// The most workspace one convolution may ask for; algorithms wanting more are passed over.
const WORKSPACE_LIMIT: usize = 1 << 30;

/// A convolution pass, for the algorithm cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum ConvPass {
    Forward,
    BackwardData,
    BackwardFilter,
}

/// A chosen algorithm of one pass.
#[derive(Debug, Clone, Copy)]
pub(super) enum Algorithm {
    Forward(sys::cudnnConvolutionFwdAlgo_t),
    BackwardData(sys::cudnnConvolutionBwdDataAlgo_t),
    BackwardFilter(sys::cudnnConvolutionBwdFilterAlgo_t),
}

/// A chosen algorithm, its math type and the workspace it needs, in bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct ChosenAlgorithm {
    pub(super) algorithm: Algorithm,
    pub(super) math: sys::cudnnMathType_t,
    pub(super) workspace: usize,
}

pub(super) struct CudnnHandle {
    pub(super) raw: sys::cudnnHandle_t,
    stream: Arc<CudaStream>,
    workspace: RefCell<Option<CudaSlice<u8>>>,
    algorithms: RefCell<HashMap<(ConvGeometry, ConvMath, ConvPass), ChosenAlgorithm>>,
}

thread_local! {
    static HANDLES: RefCell<HashMap<candle_core::cuda_backend::DeviceId, Rc<CudnnHandle>>> =
        RefCell::new(HashMap::new());
}

impl CudnnHandle {
    /// This thread's handle for `device`, made on first use.
    pub(super) fn for_device(device: &CudaDevice) -> Result<Rc<CudnnHandle>> {
        HANDLES.with(|handles| {
            if let Some(h) = handles.borrow().get(&device.id()) {
                return Ok(h.clone());
            }
            let stream = device.cuda_stream();
            stream.context().bind_to_thread().map_err(|e| {
                candle_core::Error::Cuda(format!("binding the context: {e}").into())
            })?;
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

    pub(super) fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Runs `call` with a workspace of at least `bytes` (a null pointer when none is needed).
    pub(super) fn with_workspace<R>(
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

    /// The algorithm for one pass of convolution `g` (descriptors already made for it): cached,
    /// or the first of cuDNN's heuristic ranking that succeeds within the workspace limit (for f32
    /// in FMA math only, so no TF32) — implicit GEMM when none does — with its workspace as cuDNN
    /// sizes it. cuDNN picks kernels by algorithm and math type together, so the descriptor is set
    /// to the chosen math type (here and before every launch).
    pub(super) fn algorithm(
        &self,
        g: &ConvGeometry,
        arithmetic: ConvMath,
        pass: ConvPass,
        descriptors: (
            &TensorDescriptor,
            &FilterDescriptor,
            &ConvolutionDescriptor,
            &TensorDescriptor,
        ),
    ) -> Result<ChosenAlgorithm> {
        if let Some(chosen) = self.algorithms.borrow().get(&(*g, arithmetic, pass)) {
            return Ok(*chosen);
        }
        let (x, w, conv, y) = descriptors;
        let ranked: Vec<(Algorithm, sys::cudnnStatus_t, sys::cudnnMathType_t, usize)> = unsafe {
            match pass {
                ConvPass::Forward => {
                    let mut perf = [std::mem::zeroed::<sys::cudnnConvolutionFwdAlgoPerf_t>(); 16];
                    let mut n = 0;
                    check(
                        sys::cudnnGetConvolutionForwardAlgorithm_v7(
                            self.raw,
                            x.0,
                            w.0,
                            conv.0,
                            y.0,
                            16,
                            &mut n,
                            perf.as_mut_ptr(),
                        ),
                        "forward algorithm",
                    )?;
                    perf[..n.max(0) as usize]
                        .iter()
                        .map(|p| (Algorithm::Forward(p.algo), p.status, p.mathType, p.memory))
                        .collect()
                }
                ConvPass::BackwardData => {
                    let mut perf =
                        [std::mem::zeroed::<sys::cudnnConvolutionBwdDataAlgoPerf_t>(); 16];
                    let mut n = 0;
                    check(
                        sys::cudnnGetConvolutionBackwardDataAlgorithm_v7(
                            self.raw,
                            w.0,
                            y.0,
                            conv.0,
                            x.0,
                            16,
                            &mut n,
                            perf.as_mut_ptr(),
                        ),
                        "backward-data algorithm",
                    )?;
                    perf[..n.max(0) as usize]
                        .iter()
                        .map(|p| {
                            (
                                Algorithm::BackwardData(p.algo),
                                p.status,
                                p.mathType,
                                p.memory,
                            )
                        })
                        .collect()
                }
                ConvPass::BackwardFilter => {
                    let mut perf =
                        [std::mem::zeroed::<sys::cudnnConvolutionBwdFilterAlgoPerf_t>(); 16];
                    let mut n = 0;
                    check(
                        sys::cudnnGetConvolutionBackwardFilterAlgorithm_v7(
                            self.raw,
                            x.0,
                            y.0,
                            conv.0,
                            w.0,
                            16,
                            &mut n,
                            perf.as_mut_ptr(),
                        ),
                        "backward-filter algorithm",
                    )?;
                    perf[..n.max(0) as usize]
                        .iter()
                        .map(|p| {
                            (
                                Algorithm::BackwardFilter(p.algo),
                                p.status,
                                p.mathType,
                                p.memory,
                            )
                        })
                        .collect()
                }
            }
        };
        // f32 takes FMA kernels only; TF32 takes whatever cuDNN ranks first
        let heuristic = ranked.iter().find(|(_, status, math, memory)| {
            *status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS
                && (arithmetic == ConvMath::Tf32 || *math == sys::cudnnMathType_t::CUDNN_FMA_MATH)
                && *memory <= WORKSPACE_LIMIT
        });
        // without a usable ranking, the implicit-GEMM algorithms, which run in FMA math for any shape
        let (algorithm, math, ranked_memory) = match heuristic {
            Some(&(algorithm, _, math, memory)) => (algorithm, math, memory),
            None => (
                match pass {
                    ConvPass::Forward => Algorithm::Forward(
                        sys::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
                    ),
                    ConvPass::BackwardData => Algorithm::BackwardData(
                        sys::cudnnConvolutionBwdDataAlgo_t::CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
                    ),
                    ConvPass::BackwardFilter => Algorithm::BackwardFilter(
                        sys::cudnnConvolutionBwdFilterAlgo_t::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1,
                    ),
                },
                math_type(arithmetic),
                0,
            ),
        };
        conv.set_math(math)?;
        // the workspace as cuDNN sizes it for this algorithm, or the ranking's figure if larger
        let mut sized = 0usize;
        let status = unsafe {
            match algorithm {
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
            &format!("{pass:?} workspace size of {algorithm:?} for {g:?} (FMA math)"),
        )?;
        let chosen = ChosenAlgorithm {
            algorithm,
            math,
            workspace: sized.max(ranked_memory),
        };
        self.algorithms
            .borrow_mut()
            .insert((*g, arithmetic, pass), chosen);
        Ok(chosen)
    }
}

impl Drop for CudnnHandle {
    fn drop(&mut self) {
        unsafe { sys::cudnnDestroy(self.raw) };
    }
}
