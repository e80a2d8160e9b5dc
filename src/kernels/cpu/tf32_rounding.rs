//! TF32 on the CPU: an f32 rounded to TF32's 10 explicit mantissa bits (8-bit exponent as f32's),
//! round to nearest with ties away from zero, as the `cvt.rna.tf32.f32` conversion of NVIDIA's PTX ISA
//! rounds (a tensor-core kernel may instead let the hardware drop the low bits; cuDNN does not say
//! which its kernels do). The fast path's CPU convolutions apply it to both operands of
//! every product when a cell asks for `conv_math = "tf32"`, so the accuracy effect of TF32 can be
//! measured without a GPU (the sums stay f32, as on the tensor cores).

use std::borrow::Cow;

use crate::manifest::model::ConvMath;

/// The low mantissa bits TF32 drops (23 − 10).
const DROPPED_BITS: u32 = 13;

/// `v` rounded to TF32 (infinities and NaN unchanged; a value that rounds past the largest finite
/// one becomes infinite, as in the hardware conversion).
pub fn round_to_tf32(v: f32) -> f32 {
    let bits = v.to_bits();
    if bits & 0x7f80_0000 == 0x7f80_0000 {
        return v;
    }
    let half = 1u32 << (DROPPED_BITS - 1);
    let mask = !((1u32 << DROPPED_BITS) - 1);
    // the sign bit is outside the magnitude: adding half a unit to the magnitude rounds ties away
    f32::from_bits(((bits & 0x7fff_ffff) + half) & mask | (bits & 0x8000_0000))
}

/// A product's operand in the arithmetic `math` asks for: itself in f32, a rounded copy in TF32.
pub fn operand(math: ConvMath, data: &[f32]) -> Cow<'_, [f32]> {
    match math {
        ConvMath::F32 => Cow::Borrowed(data),
        ConvMath::Tf32 => Cow::Owned(data.iter().map(|&v| round_to_tf32(v)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_ten_mantissa_bits_to_nearest_with_ties_away() {
        let ulp = 2f32.powi(-10); // TF32's unit in the last place at 1.0
        assert_eq!(round_to_tf32(1.0), 1.0);
        assert_eq!(round_to_tf32(1.0 + ulp), 1.0 + ulp);
        assert_eq!(round_to_tf32(1.0 + 0.49 * ulp), 1.0);
        assert_eq!(round_to_tf32(1.0 + 0.51 * ulp), 1.0 + ulp);
        // exactly half a unit: away from zero, on both signs
        assert_eq!(round_to_tf32(1.0 + 0.5 * ulp), 1.0 + ulp);
        assert_eq!(round_to_tf32(-(1.0 + 0.5 * ulp)), -(1.0 + ulp));
        // the relative error is at most half a unit, for values across the range
        for &v in &[3.3f32, -2.718e-20, 6.02e23, 1e-30, 0.1] {
            let r = round_to_tf32(v);
            assert!(((r - v) / v).abs() <= 0.5 * ulp * 1.0001, "{v} -> {r}");
            assert_eq!(r.to_bits() & 0x1fff, 0, "{v}: low bits kept");
        }
        // a subnormal keeps TF32's absolute grid (fewer significant bits, as in f32)
        assert_eq!(round_to_tf32(1e-40).to_bits() & 0x1fff, 0);
        assert_eq!(round_to_tf32(0.0).to_bits(), 0);
        assert_eq!(round_to_tf32(-0.0).to_bits(), 0x8000_0000);
        assert!(round_to_tf32(f32::NAN).is_nan());
        assert_eq!(round_to_tf32(f32::NEG_INFINITY), f32::NEG_INFINITY);
        assert_eq!(round_to_tf32(f32::MAX), f32::INFINITY);
    }

    #[test]
    fn f32_operands_are_not_copied() {
        let data = [1.0f32 + 2f32.powi(-20)];
        assert!(matches!(operand(ConvMath::F32, &data), Cow::Borrowed(_)));
        assert_eq!(operand(ConvMath::Tf32, &data)[0], 1.0);
    }
}
