//! candle's custom-op plumbing, written once for every fast-path op: an op states its formulas as
//! [`Formulas`] over `N` operands (the CPU formula on contiguous f32 slices, the CUDA call, the
//! output's shape, and the backward if it has one), and [`Op`] is the `CustomOp1/2/3` candle applies,
//! reading each operand as contiguous f32 (an error naming the op otherwise).

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, InplaceOp3, Layout, Result, Shape, Tensor,
};

use super::op_operands::{contiguous_f32, contiguous_f32_mut};

/// A CUDA operand: its storage and layout.
#[cfg(feature = "cuda")]
pub(crate) type Operand<'a> = (&'a candle_core::CudaStorage, &'a Layout);

/// One op of `N` f32 operands, stated by its formulas.
pub(crate) trait Formulas<const N: usize>: Send + Sync + 'static {
    /// candle's name for the op (its errors name it).
    const NAME: &'static str;

    /// The output's shape; `first` is the first operand's layout. By default the first operand's
    /// shape (the elementwise ops and batch norm).
    fn shape(&self, first: &Layout) -> Shape {
        first.shape().clone()
    }

    /// The CPU formula over the operands' contiguous f32 data.
    fn cpu(&self, operands: [&[f32]; N]) -> Result<Vec<f32>>;

    /// The same formula on CUDA (a cuDNN call or one of the fast path's kernels).
    #[cfg(feature = "cuda")]
    fn cuda(&self, operands: [Operand<'_>; N]) -> Result<candle_core::CudaStorage>;

    /// The operands' gradients from the operands, the output and its gradient (None where an
    /// operand needs none). By default the op has none: the backward ops have no gradient of their
    /// own (no second-order derivatives).
    fn backward(
        &self,
        _operands: [&Tensor; N],
        _out: &Tensor,
        _grad: &Tensor,
    ) -> Result<[Option<Tensor>; N]> {
        Err(candle_core::Error::BackwardNotSupported { op: Self::NAME })
    }
}

/// The candle custom op of some [`Formulas`].
pub(crate) struct Op<F>(pub F);

/// candle's `CustomOpN` for `Op<F>` over `N` operands (named by the storage, layout, argument and
/// gradient identifiers given for each), the first operand's layout giving the output's shape.
macro_rules! impl_custom_op {
    ($trait:ident, $n:literal, $first:ident; $(($s:ident, $l:ident, $a:ident, $g:ident)),+; $grads:ty) => {
        #[allow(unused_parens)] // one operand: a gradient, not a tuple
        impl<F: Formulas<$n>> $trait for Op<F> {
            fn name(&self) -> &'static str {
                F::NAME
            }

            fn cpu_fwd(&self, $($s: &CpuStorage, $l: &Layout),+) -> Result<(CpuStorage, Shape)> {
                let data = self.0.cpu([$(contiguous_f32(F::NAME, $s, $l)?),+])?;
                Ok((CpuStorage::F32(data), self.0.shape($first)))
            }

            #[cfg(feature = "cuda")]
            fn cuda_fwd(
                &self,
                $($s: &candle_core::CudaStorage, $l: &Layout),+
            ) -> Result<(candle_core::CudaStorage, Shape)> {
                Ok((self.0.cuda([$(($s, $l)),+])?, self.0.shape($first)))
            }

            fn bwd(&self, $($a: &Tensor,)+ out: &Tensor, grad: &Tensor) -> Result<$grads> {
                let [$($g),+] = self.0.backward([$($a),+], out, grad)?;
                Ok(($($g),+))
            }
        }
    };
}

impl_custom_op!(CustomOp1, 1, l1; (s1, l1, a1, g1); Option<Tensor>);
impl_custom_op!(CustomOp2, 2, l1; (s1, l1, a1, g1), (s2, l2, a2, g2); (Option<Tensor>, Option<Tensor>));
impl_custom_op!(
    CustomOp3, 3, l1;
    (s1, l1, a1, g1), (s2, l2, a2, g2), (s3, l3, a3, g3);
    (Option<Tensor>, Option<Tensor>, Option<Tensor>)
);

/// An in-place op: a target written in place from two more f32 operands (the SGD update's passes).
pub(crate) trait InPlaceFormulas: Send + Sync + 'static {
    /// candle's name for the op (its errors name it).
    const NAME: &'static str;

    /// The CPU formula: `target` updated from the operands' contiguous f32 data.
    fn cpu(&self, target: &mut [f32], operands: [&[f32]; 2]) -> Result<()>;

    /// The same formula on CUDA.
    #[cfg(feature = "cuda")]
    fn cuda(
        &self,
        target: (&mut candle_core::CudaStorage, &Layout),
        operands: [Operand<'_>; 2],
    ) -> Result<()>;
}

impl<F: InPlaceFormulas> InplaceOp3 for Op<F> {
    fn name(&self) -> &'static str {
        F::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        let operands = [
            contiguous_f32(F::NAME, s2, l2)?,
            contiguous_f32(F::NAME, s3, l3)?,
        ];
        self.0.cpu(contiguous_f32_mut(F::NAME, s1, l1)?, operands)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &mut candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<()> {
        self.0.cuda((s1, l1), [(s2, l2), (s3, l3)])
    }
}
