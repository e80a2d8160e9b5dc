//! The CPU formulas of the fast convolution path, on plain f32 slices: a convolution as image-to-
//! column unfolding plus one matrix product per image (Chellapilla, Puri & Simard, "High Performance
//! Convolutional Neural Networks for Document Processing", 2006), and its two gradients the same way:
//! - forward: out_b (O × P) = W (O × CKK) · cols(x_b) (CKK × P);
//! - backward-data: dx_b = col2im(Wᵀ (CKK × O) · g_b (O × P));
//! - backward-filter: dW (O × CKK) = Σ_b g_b (O × P) · cols(x_b)ᵀ (P × CKK);
//!
//! with P = out_h·out_w and CKK = in_channels·k·k. Images run in parallel (rayon), each product on one
//! thread (the `gemm` crate candle itself uses), with one unfolding buffer per worker.

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

/// The shapes of one convolution: input (batch, c_in, h, w), weight (c_out, c_in, k, k), square
/// kernel, equal stride and zero padding on both axes, no dilation, no groups, no bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvGeometry {
    pub batch: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvGeometry {
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.padding - self.k) / self.stride + 1
    }

    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.padding - self.k) / self.stride + 1
    }

    /// Output pixels per image.
    pub fn pixels(&self) -> usize {
        self.out_h() * self.out_w()
    }

    /// Rows of the unfolded image: c_in·k·k.
    pub fn patch(&self) -> usize {
        self.c_in * self.k * self.k
    }

    fn image(&self) -> usize {
        self.c_in * self.h * self.w
    }

    /// Visits every run of (unfolded row, output pixel)s whose input positions lie inside the
    /// image, as (index into the unfolded buffer, index into the image, length, input step): along
    /// an output row the valid pixels are one run, read every `stride` input columns; positions in
    /// the padding are never visited.
    fn for_each_run(&self, mut visit: impl FnMut(usize, usize, usize, usize)) {
        let (oh, ow, p) = (self.out_h(), self.out_w(), self.pixels());
        let (s, pad) = (self.stride, self.padding);
        for c in 0..self.c_in {
            for kh in 0..self.k {
                for kw in 0..self.k {
                    let row = (c * self.k + kh) * self.k + kw;
                    // output columns whose input column ox·s + kw − pad lies in [0, w)
                    let first = pad.saturating_sub(kw).div_ceil(s);
                    let end = if self.w + pad > kw {
                        ((self.w + pad - kw - 1) / s + 1).min(ow)
                    } else {
                        0
                    };
                    if first >= end {
                        continue;
                    }
                    for oy in 0..oh {
                        let iy = (oy * s + kh) as isize - pad as isize;
                        if iy < 0 || iy >= self.h as isize {
                            continue;
                        }
                        let image_row = (c * self.h + iy as usize) * self.w;
                        let ix = first * s + kw - pad;
                        visit(row * p + oy * ow + first, image_row + ix, end - first, s);
                    }
                }
            }
        }
    }
}

/// Unfolds one image (c_in × h × w) into `cols` (c_in·k·k × out_h·out_w); padding reads as zero.
pub fn im2col(geometry: &ConvGeometry, image: &[f32], cols: &mut [f32]) {
    cols.fill(0.0);
    geometry.for_each_run(|at, from, len, step| {
        let dst = &mut cols[at..at + len];
        if step == 1 {
            dst.copy_from_slice(&image[from..from + len]);
        } else {
            for (d, v) in dst.iter_mut().zip(image[from..].iter().step_by(step)) {
                *d = *v;
            }
        }
    });
}

/// Folds `cols` back onto one image, adding every tap into the input position it was read from.
pub fn col2im(geometry: &ConvGeometry, cols: &[f32], image: &mut [f32]) {
    image.fill(0.0);
    geometry.for_each_run(|at, to, len, step| {
        let src = &cols[at..at + len];
        if step == 1 {
            image[to..to + len]
                .iter_mut()
                .zip(src)
                .for_each(|(d, v)| *d += v);
        } else {
            for (d, v) in image[to..].iter_mut().step_by(step).zip(src) {
                *d += v;
            }
        }
    });
}

/// dst (m × n, row-major) = lhs · rhs, or += when `accumulate`, with explicit row/column strides for
/// the operands (a transposed operand is a stride swap, never a copy).
#[allow(clippy::too_many_arguments)]
fn product(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    assert!(m > 0 && n > 0 && k > 0, "empty product");
    assert!(dst.len() >= m * n && lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
    assert!(rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    // SAFETY: the asserts above keep every read and write inside the three slices
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// out (batch × c_out × out_h × out_w) from x (batch × c_in × h × w) and weight (c_out × c_in × k × k).
pub fn conv_forward(geometry: &ConvGeometry, x: &[f32], weight: &[f32]) -> Vec<f32> {
    let (p, ckk, o) = (geometry.pixels(), geometry.patch(), geometry.c_out);
    let mut out = vec![0.0f32; geometry.batch * o * p];
    out.par_chunks_mut(o * p)
        .zip(x.par_chunks(geometry.image()))
        .for_each_init(
            || vec![0.0f32; ckk * p],
            |cols, (out_b, x_b)| {
                im2col(geometry, x_b, cols);
                product((o, p, ckk), out_b, false, weight, (ckk, 1), cols, (p, 1));
            },
        );
    out
}

/// dx (batch × c_in × h × w) from the output gradient g (batch × c_out × out_h × out_w) and the weight.
pub fn conv_backward_data(geometry: &ConvGeometry, grad: &[f32], weight: &[f32]) -> Vec<f32> {
    let (p, ckk, o) = (geometry.pixels(), geometry.patch(), geometry.c_out);
    let mut dx = vec![0.0f32; geometry.batch * geometry.image()];
    dx.par_chunks_mut(geometry.image())
        .zip(grad.par_chunks(o * p))
        .for_each_init(
            || vec![0.0f32; ckk * p],
            |cols, (dx_b, g_b)| {
                // Wᵀ: row r of the product is column r of W (stride 1 down, ckk across)
                product((ckk, p, o), cols, false, weight, (1, ckk), g_b, (p, 1));
                col2im(geometry, cols, dx_b);
            },
        );
    dx
}

/// Images per partial sum of the weight gradient: fixed, not the thread count, so the summation
/// order (and so every bit of dW) is the same on any machine and with any number of threads.
const IMAGES_PER_PARTIAL_SUM: usize = 4;

/// dW (c_out × c_in × k × k) from x and the output gradient g, summed over the batch: partial sums
/// over fixed runs of images in parallel, then added in image order.
pub fn conv_backward_filter(geometry: &ConvGeometry, x: &[f32], grad: &[f32]) -> Vec<f32> {
    let (p, ckk, o) = (geometry.pixels(), geometry.patch(), geometry.c_out);
    let (image, run) = (geometry.image(), IMAGES_PER_PARTIAL_SUM);
    let partials: Vec<Vec<f32>> = x
        .par_chunks(image * run)
        .zip(grad.par_chunks(o * p * run))
        .map_init(
            || vec![0.0f32; ckk * p],
            |cols, (xs, gs)| {
                let mut dw = vec![0.0f32; o * ckk];
                for (x_b, g_b) in xs.chunks(image).zip(gs.chunks(o * p)) {
                    im2col(geometry, x_b, cols);
                    // colsᵀ: row r of the right operand is column r of cols (stride 1 down, p across)
                    product((o, ckk, p), &mut dw, true, g_b, (p, 1), cols, (1, p));
                }
                dw
            },
        )
        .collect();
    let mut partials = partials.into_iter();
    let mut dw = partials.next().unwrap_or_else(|| vec![0.0f32; o * ckk]);
    for partial in partials {
        dw.iter_mut().zip(&partial).for_each(|(a, b)| *a += b);
    }
    dw
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::philox::CounterRng;

    fn random(n: usize, rng: &mut CounterRng) -> Vec<f32> {
        (0..n).map(|_| rng.unit_f32() * 2.0 - 1.0).collect()
    }

    /// The convolution by its definition, in f64: the reference the products are checked against.
    fn direct(geometry: &ConvGeometry, x: &[f32], weight: &[f32]) -> Vec<f64> {
        let g = geometry;
        let (oh, ow) = (g.out_h(), g.out_w());
        let mut out = vec![0.0f64; g.batch * g.c_out * oh * ow];
        for b in 0..g.batch {
            for o in 0..g.c_out {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut sum = 0.0f64;
                        for c in 0..g.c_in {
                            for kh in 0..g.k {
                                for kw in 0..g.k {
                                    let iy = (oy * g.stride + kh) as isize - g.padding as isize;
                                    let ix = (ox * g.stride + kw) as isize - g.padding as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize
                                    {
                                        continue;
                                    }
                                    let xv = x[((b * g.c_in + c) * g.h + iy as usize) * g.w
                                        + ix as usize];
                                    let wv = weight[((o * g.c_in + c) * g.k + kh) * g.k + kw];
                                    sum += xv as f64 * wv as f64;
                                }
                            }
                        }
                        out[((b * g.c_out + o) * oh + oy) * ow + ox] = sum;
                    }
                }
            }
        }
        out
    }

    fn geometries() -> Vec<ConvGeometry> {
        let mut all = Vec::new();
        for (k, stride, padding) in [
            (3, 1, 1),
            (3, 2, 1),
            (1, 2, 0),
            (1, 1, 0),
            (7, 2, 3),
            (3, 1, 0),
        ] {
            all.push(ConvGeometry {
                batch: 3,
                c_in: 2,
                h: 9,
                w: 7,
                c_out: 4,
                k,
                stride,
                padding,
            });
        }
        all
    }

    #[test]
    fn forward_equals_the_definition() {
        let mut rng = CounterRng::new(CounterRng::key_from("im2col-fwd"), 0);
        for g in geometries() {
            let x = random(g.batch * g.image(), &mut rng);
            let w = random(g.c_out * g.patch(), &mut rng);
            let fast = conv_forward(&g, &x, &w);
            let reference = direct(&g, &x, &w);
            assert_eq!(fast.len(), reference.len(), "{g:?}");
            for (a, b) in fast.iter().zip(&reference) {
                assert!((*a as f64 - b).abs() < 1e-5, "{g:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn every_pass_is_bit_identical_for_any_thread_count() {
        let mut rng = CounterRng::new(CounterRng::key_from("im2col-threads"), 0);
        let g = ConvGeometry {
            batch: 11,
            c_in: 3,
            h: 12,
            w: 10,
            c_out: 5,
            k: 3,
            stride: 1,
            padding: 1,
        };
        let x = random(g.batch * g.image(), &mut rng);
        let w = random(g.c_out * g.patch(), &mut rng);
        let r = random(g.batch * g.c_out * g.pixels(), &mut rng);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                (
                    conv_forward(&g, &x, &w),
                    conv_backward_data(&g, &r, &w),
                    conv_backward_filter(&g, &x, &r),
                )
            })
        };
        let one = run(1);
        assert_eq!(one, run(3));
        assert_eq!(one, run(2));
    }

    /// The loss L = Σ out ⊙ r is linear in x and in W, so a central difference of the forward pass
    /// is its exact gradient (up to f32 rounding): the backward formulas are checked against the
    /// forward formula they differentiate, not against another library.
    #[test]
    fn backward_formulas_match_finite_differences_of_the_forward() {
        let mut rng = CounterRng::new(CounterRng::key_from("im2col-bwd"), 0);
        for g in geometries() {
            let x = random(g.batch * g.image(), &mut rng);
            let w = random(g.c_out * g.patch(), &mut rng);
            let r = random(g.batch * g.c_out * g.pixels(), &mut rng);
            let loss = |x: &[f32], w: &[f32]| -> f64 {
                conv_forward(&g, x, w)
                    .iter()
                    .zip(&r)
                    .map(|(o, r)| *o as f64 * *r as f64)
                    .sum()
            };
            let dx = conv_backward_data(&g, &r, &w);
            assert_eq!(
                conv_backward_filter(&g, &x, &r),
                conv_backward_filter(&g, &x, &r),
                "bit-identical across calls"
            );
            let dw = conv_backward_filter(&g, &x, &r);
            // every fifth input, every weight: a central difference against the formula
            let check =
                |name: &str, at: &[f32], step: usize, grad: &[f32], f: &dyn Fn(&[f32]) -> f64| {
                    let h = 0.25f32;
                    for i in (0..at.len()).step_by(step) {
                        let (mut plus, mut minus) = (at.to_vec(), at.to_vec());
                        plus[i] += h;
                        minus[i] -= h;
                        let numeric = (f(&plus) - f(&minus)) / (2.0 * h as f64);
                        let analytic = grad[i] as f64;
                        assert!(
                            (numeric - analytic).abs() < 2e-4,
                            "{g:?} {name}[{i}]: {numeric} vs {analytic}"
                        );
                    }
                };
            check("dx", &x, 5, &dx, &|x| loss(x, &w));
            check("dw", &w, 1, &dw, &|w| loss(&x, w));
        }
    }
}
