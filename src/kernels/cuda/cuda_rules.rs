//! The CUDA path's decisions that need no GPU, kept apart from the cuDNN and NVRTC calls so the CPU
//! tests can check them: which of cuDNN's ranked convolution algorithms may run and in what order
//! (`usable_algorithms`), the walk that keeps the first one that runs (`first_that_runs`), the
//! launch grid of the fast path's own kernels (`launch_grid`: no launch for an empty tensor, 64-bit
//! grid-stride indices), the batch norm's ε against the linked cuDNN's minimum
//! (`batch_norm_epsilon`), and the record of what was chosen per shape (`record_choice`), which
//! `examples/fast_ops_check.rs` and `examples/step_timing.rs` print so a first GPU run shows it.
//!
//! cuDNN's ranking and its fields: `cudnnGetConvolution*Algorithm_v7` and `cudnnConvolution*AlgoPerf_t`
//! (status, math type, determinism, memory) in the cuDNN API reference.

use std::sync::Mutex;

use crate::manifest::model::ConvAlgorithms;
use crate::manifest::model::ConvMath;

/// The math type a ranked result reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelMath {
    /// `CUDNN_FMA_MATH`: f32 products, no tensor cores.
    Fma,
    /// `CUDNN_DEFAULT_MATH`: cuDNN's choice; launched in FMA math when f32 is asked for.
    Default,
    /// `CUDNN_TENSOR_OP_MATH`: tensor cores (TF32 for f32 data).
    TensorOp,
    /// `CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION`: tensor cores, operands converted.
    TensorOpAllowConversion,
}

impl KernelMath {
    fn uses_tensor_cores(self) -> bool {
        matches!(
            self,
            KernelMath::TensorOp | KernelMath::TensorOpAllowConversion
        )
    }
}

/// One entry of cuDNN's heuristic ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ranked<A> {
    pub algorithm: A,
    /// The entry's status is `CUDNN_STATUS_SUCCESS`.
    pub supported: bool,
    pub deterministic: bool,
    pub math: KernelMath,
    /// Workspace in bytes.
    pub workspace: usize,
}

/// An algorithm to try, with the math type to launch it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<A> {
    pub algorithm: A,
    pub math: KernelMath,
    pub workspace: usize,
}

/// The algorithms to try, in cuDNN's order: supported ones within `workspace_limit`; for f32 none
/// that uses tensor cores (those reporting the default math run in FMA math, so TF32 never enters
/// silently); when determinism is asked for, only deterministic ones; then `fallback` (implicit
/// GEMM, deterministic and FMA for every shape) if the list does not hold it already.
pub fn usable_algorithms<A: Copy + PartialEq>(
    ranked: &[Ranked<A>],
    math: ConvMath,
    algorithms: ConvAlgorithms,
    workspace_limit: usize,
    fallback: A,
) -> Vec<Candidate<A>> {
    let mut out: Vec<Candidate<A>> = ranked
        .iter()
        .filter(|r| r.supported && r.workspace <= workspace_limit)
        .filter(|r| algorithms == ConvAlgorithms::Fastest || r.deterministic)
        .filter_map(|r| {
            let launch = match math {
                ConvMath::F32 if r.math.uses_tensor_cores() => return None,
                ConvMath::F32 => KernelMath::Fma,
                ConvMath::Tf32 => r.math,
            };
            Some(Candidate {
                algorithm: r.algorithm,
                math: launch,
                workspace: r.workspace,
            })
        })
        .collect();
    if !out.iter().any(|c| c.algorithm == fallback) {
        out.push(Candidate {
            algorithm: fallback,
            math: match math {
                ConvMath::F32 => KernelMath::Fma,
                ConvMath::Tf32 => KernelMath::Default,
            },
            workspace: 0,
        });
    }
    out
}

/// The candidates that failed, each with its error.
pub type Failures<C, E> = Vec<(C, E)>;

/// The candidate that ran, what it gave, and those that failed before it.
#[derive(Debug)]
pub struct Walked<C, R, E> {
    pub value: R,
    pub failed: Failures<C, E>,
}

/// Tries `candidates` in order and returns what the first that `run` accepts gave, with the
/// failures before it (to log); or every failure when none runs.
pub fn first_that_runs<C: Copy, R, E>(
    candidates: &[C],
    mut run: impl FnMut(C) -> Result<R, E>,
) -> Result<Walked<C, R, E>, Failures<C, E>> {
    let mut failed = Vec::new();
    for &c in candidates {
        match run(c) {
            Ok(value) => return Ok(Walked { value, failed }),
            Err(e) => failed.push((c, e)),
        }
    }
    Err(failed)
}

/// Threads per block of the fast path's element-wise kernels.
pub const BLOCK: u32 = 256;
/// The most blocks one launch asks for; the kernels' grid-stride loops cover the rest.
pub const MAX_GRID: u32 = 65_535;

/// (blocks, threads per block) for `n` elements, or `None` for an empty tensor (a grid of no blocks
/// is a launch error). The kernels index with 64-bit integers (`unsigned long long`), so no `n` that
/// fits in memory wraps: the largest index visited is below n + blocks·threads.
pub fn launch_grid(n: usize) -> Option<(u32, u32)> {
    if n == 0 {
        return None;
    }
    let blocks = n.div_ceil(BLOCK as usize).min(MAX_GRID as usize) as u32;
    Some((blocks, BLOCK))
}

/// The smallest batch-norm ε the linked cuDNN takes (`CUDNN_BN_MIN_EPSILON`): 1e-5 before cuDNN 8,
/// 0 since (`cudnnGetVersion`: major·10,000 + minor·100 + patch from 9 on, major·1,000 + … before).
pub fn batch_norm_min_epsilon(cudnn_version: usize) -> f64 {
    if cudnn_version < 8000 {
        1e-5
    } else {
        0.0
    }
}

/// Whether cuDNN takes `eps`: at least the library's minimum, compared in f32 too, since a layer's
/// 1e-5 that passed through f32 is 9.99999975e-6.
pub fn batch_norm_epsilon(eps: f64, cudnn_version: usize) -> Result<(), String> {
    let min = batch_norm_min_epsilon(cudnn_version);
    if eps >= min || (eps as f32) >= (min as f32) {
        Ok(())
    } else {
        Err(format!(
            "cuDNN {cudnn_version} needs a batch-norm ε of at least {min}, the layer has {eps}"
        ))
    }
}

static CHOICES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records one choice (e.g. a convolution's algorithm, math type and workspace for a shape), once.
pub fn record_choice(line: String) {
    let mut choices = CHOICES.lock().unwrap_or_else(|e| e.into_inner());
    if !choices.contains(&line) {
        tracing::info!("{line}");
        choices.push(line);
    }
}

/// Every choice recorded in this process, in order.
pub fn choices() -> Vec<String> {
    CHOICES.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranked(
        algorithm: u8,
        deterministic: bool,
        math: KernelMath,
        workspace: usize,
    ) -> Ranked<u8> {
        Ranked {
            algorithm,
            supported: true,
            deterministic,
            math,
            workspace,
        }
    }

    fn order(c: &[Candidate<u8>]) -> Vec<(u8, KernelMath)> {
        c.iter().map(|c| (c.algorithm, c.math)).collect()
    }

    #[test]
    fn deterministic_f32_keeps_cudnns_order_without_atomics_or_tensor_cores() {
        // cuDNN often ranks an atomics-based backward algorithm first (here 3)
        let list = [
            ranked(3, false, KernelMath::Fma, 0),
            ranked(5, true, KernelMath::TensorOp, 0),
            ranked(0, true, KernelMath::Default, 64),
            ranked(2, true, KernelMath::TensorOpAllowConversion, 0),
            Ranked {
                supported: false,
                ..ranked(6, true, KernelMath::Fma, 0)
            },
            ranked(7, true, KernelMath::Fma, 1 << 31),
            ranked(1, true, KernelMath::Fma, 0),
        ];
        let det = usable_algorithms(
            &list,
            ConvMath::F32,
            ConvAlgorithms::Deterministic,
            1 << 30,
            1,
        );
        // default math runs as FMA; 5 (tensor ops), 6 (unsupported), 7 (workspace) are passed over
        assert_eq!(order(&det), [(0, KernelMath::Fma), (1, KernelMath::Fma)]);
        let fast = usable_algorithms(&list, ConvMath::F32, ConvAlgorithms::Fastest, 1 << 30, 1);
        assert_eq!(order(&fast)[0], (3, KernelMath::Fma));
        // TF32 takes tensor-op kernels with the math cuDNN reported
        let tf32 = usable_algorithms(
            &list,
            ConvMath::Tf32,
            ConvAlgorithms::Deterministic,
            1 << 30,
            1,
        );
        assert_eq!(
            order(&tf32),
            [
                (5, KernelMath::TensorOp),
                (0, KernelMath::Default),
                (2, KernelMath::TensorOpAllowConversion),
                (1, KernelMath::Fma)
            ]
        );
    }

    #[test]
    fn the_fallback_ends_every_list_once() {
        let none = usable_algorithms::<u8>(&[], ConvMath::F32, ConvAlgorithms::Deterministic, 0, 1);
        assert_eq!(order(&none), [(1, KernelMath::Fma)]);
        let only_atomics = [ranked(3, false, KernelMath::Fma, 0)];
        let c = usable_algorithms(
            &only_atomics,
            ConvMath::F32,
            ConvAlgorithms::Deterministic,
            0,
            1,
        );
        assert_eq!(order(&c), [(1, KernelMath::Fma)]);
        let tf32 = usable_algorithms::<u8>(&[], ConvMath::Tf32, ConvAlgorithms::Fastest, 0, 1);
        assert_eq!(order(&tf32), [(1, KernelMath::Default)]);
    }

    #[test]
    fn the_walk_keeps_the_first_that_runs_and_reports_the_rest() {
        // e.g. the top-ranked algorithm returns CUDNN_STATUS_NOT_SUPPORTED when launched
        let walked = first_that_runs(&[4u8, 2, 9], |a| {
            if a == 4 {
                Err("NOT_SUPPORTED")
            } else {
                Ok(a * 10)
            }
        })
        .unwrap();
        assert_eq!(walked.value, 20);
        assert_eq!(walked.failed, [(4, "NOT_SUPPORTED")]);
        let mut tried = Vec::new();
        let all = first_that_runs(&[1u8, 2], |a| {
            tried.push(a);
            Err::<(), _>("EXECUTION_FAILED")
        })
        .unwrap_err();
        assert_eq!(tried, [1, 2]);
        assert_eq!(all.len(), 2);
    }

    /// Every index below `n` visited exactly once by the kernels' loop
    /// `for (i = blockIdx·blockDim + threadIdx; i < n; i += blockDim·gridDim)`, in u64 as they do.
    fn visits(n: u64, (blocks, threads): (u32, u32)) -> Vec<u32> {
        let mut seen = vec![0u32; n as usize];
        let stride = u64::from(blocks) * u64::from(threads);
        for thread in 0..stride {
            let mut i = thread;
            while i < n {
                seen[i as usize] += 1;
                i += stride;
            }
        }
        seen
    }

    #[test]
    fn empty_tensors_launch_nothing_and_every_element_is_covered_once() {
        assert_eq!(launch_grid(0), None);
        assert_eq!(launch_grid(1), Some((1, BLOCK)));
        for n in [1usize, 255, 256, 257, 10_000] {
            let grid = launch_grid(n).unwrap();
            assert!(visits(n as u64, grid).iter().all(|&v| v == 1), "n = {n}");
        }
        // past the grid cap the loop strides: checked on a cap-sized grid with fewer threads
        let n = 3 * 7 + 2;
        assert!(visits(n, (3, 7)).iter().all(|&v| v == 1));
    }

    #[test]
    fn indices_do_not_wrap_past_32_bits() {
        // 5·2³⁰ elements (20 GiB of f32): more than u32 counts; the grid is capped and the 64-bit
        // index of the last step stays exact
        let n: usize = 5 << 30;
        let (blocks, threads) = launch_grid(n).unwrap();
        assert_eq!(blocks, MAX_GRID);
        let stride = u64::from(blocks) * u64::from(threads);
        let last = (n as u64 - 1) + stride;
        assert!(
            last > u64::from(u32::MAX),
            "the case 32-bit indices would wrap"
        );
        assert!(last.checked_add(stride).is_some());
    }

    #[test]
    fn epsilon_follows_the_linked_cudnn() {
        // cuDNN 9.13 (91300): any ε ≥ 0, also below 1e-5
        assert!(batch_norm_epsilon(1e-6, 91_300).is_ok());
        assert!(batch_norm_epsilon(0.0, 91_300).is_ok());
        assert!(batch_norm_epsilon(-1e-3, 91_300).is_err());
        // cuDNN 7.6 (7605): 1e-5, also when it went through f32
        assert!(batch_norm_epsilon(f64::from(1e-5f32), 7605).is_ok());
        assert!(f64::from(1e-5f32) < 1e-5);
        let e = batch_norm_epsilon(1e-6, 7605).unwrap_err();
        assert!(e.contains("1e-5") || e.contains("0.00001"), "{e}");
    }

    #[test]
    fn a_choice_is_recorded_once() {
        record_choice("test-choice conv 3x3 → algo 1".into());
        record_choice("test-choice conv 3x3 → algo 1".into());
        let n = choices()
            .iter()
            .filter(|c| c.starts_with("test-choice"))
            .count();
        assert_eq!(n, 1);
    }
}
