//! The fast path's SGD update as two in-place custom ops per parameter (momentum buffer, then weight)
//! in place of the seven to nine candle ops `Sgd::step` composes (each a kernel launch and a fresh
//! tensor on a GPU). The arithmetic is the composition's, operation by operation in f32: a product
//! with a scalar x·s is candle's affine map x·s + 0 (the scalar rounded to f32), then the same adds,
//! so both paths give the same bits on the CPU (tested in `model::optimizer`). On CUDA each op is one
//! NVRTC kernel (`nvrtc_kernels`) with every operation rounded on its own, the scalar products as
//! candle's CUDA affine kernel computes them (one fused multiply-add with 0, as nvcc compiles it);
//! `fast_ops_check` requires equal values there (a zero's sign aside).
//!
//! With d = g + w·λ (d = g when λ = 0), momentum μ, learning rate η (PyTorch's `torch.optim.SGD`):
//! - momentum buffer: b ← d on the first step, else b ← b·μ + d;
//! - weight: w ← w − η·s with s = d (no momentum), b (heavy ball) or d + b·μ (Nesterov).

use candle_core::{Result, Tensor};

#[cfg(feature = "cuda")]
use crate::kernels::cuda::nvrtc_kernels;
#[cfg(feature = "cuda")]
use crate::kernels::custom_op::Operand;
use crate::kernels::custom_op::{InPlaceFormulas, Op};

/// An SGD step's scalars, as `Sgd` holds them (f64) and as the kernels use them (f32).
#[derive(Debug, Clone, Copy)]
pub struct SgdScalars {
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
}

/// What the weight update subtracts, η times this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
enum WeightStep {
    /// d
    Decayed = 0,
    /// b
    HeavyBall = 1,
    /// d + b·μ
    Nesterov = 2,
}

/// The scalars of both ops in f32, as candle's affine map rounds them.
#[derive(Debug, Clone, Copy)]
struct Scalars32 {
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    /// λ ≠ 0 (decided in f64, as `Sgd::step` decides it)
    decays: bool,
}

impl From<SgdScalars> for Scalars32 {
    fn from(s: SgdScalars) -> Self {
        Self {
            lr: s.lr as f32,
            momentum: s.momentum as f32,
            weight_decay: s.weight_decay as f32,
            decays: s.weight_decay != 0.0,
        }
    }
}

/// x·s as candle's affine map computes it (x·s + 0: a product of −0 comes out +0).
fn scaled(x: f32, s: f32) -> f32 {
    x * s + 0.0
}

/// d = g + w·λ, or g.
fn decayed(g: f32, w: f32, s: &Scalars32) -> f32 {
    if s.decays {
        g + scaled(w, s.weight_decay)
    } else {
        g
    }
}

/// b ← d (first step) or b·μ + d, in place, from the gradient and the weight before its update.
pub fn update_momentum_buffer(
    buffer: &Tensor,
    gradient: &Tensor,
    weight: &Tensor,
    scalars: SgdScalars,
    first: bool,
) -> Result<()> {
    buffer.inplace_op3(
        gradient,
        weight,
        &Op(MomentumBuffer {
            scalars: scalars.into(),
            first,
        }),
    )
}

/// w ← w − η·s, in place, from the gradient and (with momentum) the buffer already updated.
pub fn update_weight(
    weight: &Tensor,
    gradient: &Tensor,
    buffer: Option<&Tensor>,
    scalars: SgdScalars,
) -> Result<()> {
    let step = match (buffer.is_some(), scalars.nesterov) {
        (false, _) => WeightStep::Decayed,
        (true, false) => WeightStep::HeavyBall,
        (true, true) => WeightStep::Nesterov,
    };
    // without a buffer the gradient stands in for it (never read)
    weight.inplace_op3(
        gradient,
        buffer.unwrap_or(gradient),
        &Op(Weight {
            scalars: scalars.into(),
            step,
        }),
    )
}

/// (b in place; g, w).
struct MomentumBuffer {
    scalars: Scalars32,
    first: bool,
}

impl InPlaceFormulas for MomentumBuffer {
    const NAME: &'static str = "fast-sgd-momentum-buffer";

    fn cpu(&self, b: &mut [f32], [g, w]: [&[f32]; 2]) -> Result<()> {
        same_sizes(Self::NAME, [b.len(), g.len(), w.len()])?;
        let s = &self.scalars;
        for ((b, &g), &w) in b.iter_mut().zip(g).zip(w) {
            let d = decayed(g, w, s);
            *b = if self.first {
                d
            } else {
                scaled(*b, s.momentum) + d
            };
        }
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda(
        &self,
        b: (&mut candle_core::CudaStorage, &candle_core::Layout),
        gw: [Operand<'_>; 2],
    ) -> Result<()> {
        let s = &self.scalars;
        nvrtc_kernels::sgd_momentum_buffer(
            Self::NAME,
            b,
            gw,
            [s.momentum, s.weight_decay],
            [s.decays as u32, self.first as u32],
        )
    }
}

/// (w in place; g, b).
struct Weight {
    scalars: Scalars32,
    step: WeightStep,
}

impl InPlaceFormulas for Weight {
    const NAME: &'static str = "fast-sgd-weight";

    fn cpu(&self, w: &mut [f32], [g, b]: [&[f32]; 2]) -> Result<()> {
        same_sizes(Self::NAME, [w.len(), g.len(), b.len()])?;
        let s = &self.scalars;
        for ((w, &g), &b) in w.iter_mut().zip(g).zip(b) {
            let step = match self.step {
                WeightStep::Decayed => decayed(g, *w, s),
                WeightStep::HeavyBall => b,
                WeightStep::Nesterov => decayed(g, *w, s) + scaled(b, s.momentum),
            };
            *w -= scaled(step, s.lr);
        }
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda(
        &self,
        w: (&mut candle_core::CudaStorage, &candle_core::Layout),
        gb: [Operand<'_>; 2],
    ) -> Result<()> {
        let s = &self.scalars;
        nvrtc_kernels::sgd_weight(
            Self::NAME,
            w,
            gb,
            [s.lr, s.momentum, s.weight_decay],
            [s.decays as u32, self.step as u32],
        )
    }
}

fn same_sizes(op: &str, sizes: [usize; 3]) -> Result<()> {
    if sizes[1..].iter().any(|&n| n != sizes[0]) {
        candle_core::bail!("{op}: operands differ in size: {sizes:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::seeded;

    // the bits against `Sgd::step`'s composition of candle ops: `model::optimizer`'s tests

    #[test]
    fn operands_of_different_sizes_are_refused() {
        let w = seeded(&[4], "sgd-w", 0.0);
        let g = seeded(&[5], "sgd-g", 0.0);
        let s = SgdScalars {
            lr: 0.1,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        };
        let e = update_weight(&w, &g, None, s).unwrap_err().to_string();
        assert!(
            e.contains("fast-sgd-weight") && e.contains("differ in size"),
            "{e}"
        );
    }
}
