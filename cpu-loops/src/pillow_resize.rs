//! Pillow's `Image.resize` for 8-bit images (modes `L` and `RGB`), bit for bit: the separable
//! convolution of `libImaging/Resample.c` (Pillow 13) with its fixed-point arithmetic.
//!
//! For each output pixel `xx` of an axis of `in_size` pixels resized to `out_size`:
//! `scale = in_size / out_size`, `filterscale = max(scale, 1)` (antialiasing when shrinking),
//! `support = filter.support · filterscale`, `center = (xx + 0.5) · scale`, taps
//! `xmin = ⌊center − support + 0.5⌋ ∨ 0` to `xmax = ⌊center + support + 0.5⌋ ∧ in_size`, weights
//! `filter((x − center + 0.5) / filterscale)` normalised to sum 1 (in f64), then rounded to integers
//! with 22 fraction bits (`PRECISION_BITS = 32 − 8 − 2`, half away from zero). A pass sums
//! `pixel · weight` from `1 << 21` in i32 and clips `sum >> 22` to 0..=255. The horizontal pass runs
//! first, over the rows the vertical pass needs, into a u8 image; then the vertical pass. An axis
//! whose size does not change is not resampled. torchvision's `Resize`, `RandomResizedCrop` and
//! `resized_crop` on PIL images call exactly this (`Image.resize(size, BILINEAR)`, no `reducing_gap`).
//!
//! Reference: Pillow's `src/libImaging/Resample.c` (`precompute_coeffs`, `normalize_coeffs_8bpc`,
//! `ImagingResampleHorizontal_8bpc`, `ImagingResampleInner`), read, not copied.

/// A resampling filter of Pillow's: its kernel and support (in input pixels at scale 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PillowFilter {
    /// `Image.BILINEAR` (triangle, support 1): torchvision's default interpolation.
    Bilinear,
    /// `Image.BICUBIC` (Keys cubic with a = −0.5, support 2): Pillow's default for `resize`.
    Bicubic,
    /// `Image.LANCZOS` (Lanczos-3, support 3).
    Lanczos,
}

impl PillowFilter {
    fn support(self) -> f64 {
        match self {
            PillowFilter::Bilinear => 1.0,
            PillowFilter::Bicubic => 2.0,
            PillowFilter::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            PillowFilter::Bilinear => (1.0 - x.abs()).max(0.0),
            PillowFilter::Bicubic => {
                let x = x.abs();
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            PillowFilter::Lanczos => {
                let sinc = |x: f64| {
                    if x == 0.0 {
                        1.0
                    } else {
                        let px = x * std::f64::consts::PI;
                        px.sin() / px
                    }
                };
                // Pillow's window is [-3, 3), not symmetric at its ends
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }

    /// The name Pillow gives it (`Image.Resampling.<NAME>`).
    pub fn name(self) -> &'static str {
        match self {
            PillowFilter::Bilinear => "BILINEAR",
            PillowFilter::Bicubic => "BICUBIC",
            PillowFilter::Lanczos => "LANCZOS",
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// One axis's taps: for each output pixel its first input pixel, and its integer weights.
struct Taps {
    first: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

fn taps(in_size: usize, out_size: usize, filter: PillowFilter) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let (mut first, mut weights) = (Vec::with_capacity(out_size), Vec::with_capacity(out_size));
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // C's (int) truncates toward zero; the sums are clamped at 0 right after
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let raw: Vec<f64> = (xmin..xmax)
            .map(|x| filter.weight((x as f64 - center + 0.5) / filterscale))
            .collect();
        let total: f64 = raw.iter().sum();
        let fixed = raw
            .iter()
            .map(|&w| {
                let w = if total != 0.0 { w / total } else { w };
                let scaled = w * (1u32 << PRECISION_BITS) as f64;
                if w < 0.0 {
                    (scaled - 0.5) as i32
                } else {
                    (scaled + 0.5) as i32
                }
            })
            .collect();
        first.push(xmin);
        weights.push(fixed);
    }
    Taps { first, weights }
}

fn clip8(sum: i32) -> u8 {
    if sum >= (1 << PRECISION_BITS << 8) {
        255
    } else if sum <= 0 {
        0
    } else {
        (sum >> PRECISION_BITS) as u8
    }
}

/// Resizes an HWC u8 image of `width`×`height` with `channels` (1 or 3) to `out_width`×`out_height`
/// as Pillow's `Image.resize((out_width, out_height), filter)` does.
pub fn resize(
    pixels: &[u8],
    (width, height): (usize, usize),
    channels: usize,
    (out_width, out_height): (usize, usize),
    filter: PillowFilter,
) -> Vec<u8> {
    assert_eq!(pixels.len(), width * height * channels, "image size");
    let c = channels;
    let vertical = taps(height, out_height, filter);
    // the horizontal pass covers only the rows the vertical pass reads
    let (row0, row1) = if out_height != height {
        let last = out_height - 1;
        (
            vertical.first[0],
            vertical.first[last] + vertical.weights[last].len(),
        )
    } else {
        (0, height)
    };
    let (mut image, mut w) = (pixels[row0 * width * c..row1 * width * c].to_vec(), width);
    if out_width != width {
        let t = taps(width, out_width, filter);
        let mut out = vec![0u8; (row1 - row0) * out_width * c];
        for (y, row) in out.chunks_exact_mut(out_width * c).enumerate() {
            let src = &image[y * width * c..(y + 1) * width * c];
            for (xx, px) in row.chunks_exact_mut(c).enumerate() {
                for (k, v) in px.iter_mut().enumerate() {
                    let mut sum = 1i32 << (PRECISION_BITS - 1);
                    for (i, &wt) in t.weights[xx].iter().enumerate() {
                        sum += src[(t.first[xx] + i) * c + k] as i32 * wt;
                    }
                    *v = clip8(sum);
                }
            }
        }
        (image, w) = (out, out_width);
    }
    if out_height == height {
        return image;
    }
    let mut out = vec![0u8; out_height * w * c];
    for (yy, row) in out.chunks_exact_mut(w * c).enumerate() {
        let top = vertical.first[yy] - row0;
        for (j, v) in row.iter_mut().enumerate() {
            let mut sum = 1i32 << (PRECISION_BITS - 1);
            for (i, &wt) in vertical.weights[yy].iter().enumerate() {
                sum += image[(top + i) * w * c + j] as i32 * wt;
            }
            *v = clip8(sum);
        }
    }
    out
}

/// The box (x, y, w, h) of an HWC image `width` pixels wide (Pillow's `Image.crop`, inside bounds).
pub fn crop_box(
    pixels: &[u8],
    width: usize,
    c: usize,
    (x, y, w, h): (usize, usize, usize, usize),
) -> Vec<u8> {
    (y..y + h)
        .flat_map(|row| &pixels[(row * width + x) * c..(row * width + x + w) * c])
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_of_an_output_pixel_sum_to_one_in_fixed_point_up_to_rounding() {
        for (n, m) in [(84, 92), (92, 84), (105, 28), (500, 84), (7, 3)] {
            let t = taps(n, m, PillowFilter::Bilinear);
            for w in &t.weights {
                let sum: i64 = w.iter().map(|&x| x as i64).sum();
                assert!(
                    (sum - (1 << PRECISION_BITS)).abs() <= w.len() as i64,
                    "{n}->{m}"
                );
            }
        }
    }

    #[test]
    fn a_flat_image_stays_flat_and_same_size_is_a_copy() {
        let flat = vec![77u8; 84 * 84 * 3];
        let out = resize(&flat, (84, 84), 3, (92, 92), PillowFilter::Bilinear);
        assert!(out.iter().all(|&p| p == 77));
        let noise: Vec<u8> = (0..30 * 20).map(|i| (i * 37 % 251) as u8).collect();
        assert_eq!(
            resize(&noise, (30, 20), 1, (30, 20), PillowFilter::Lanczos),
            noise
        );
    }
}
