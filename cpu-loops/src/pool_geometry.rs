//! The shapes of one max pooling, shared by the CPU formulas (`fewshot::kernels::max_pool_ops`) and
//! cuDNN's pooling descriptor (`fewshot::kernels::cuda::cudnn_descriptors`): the output size, each
//! window's extent inside the input, and the first maximum of a window (PyTorch's tie and NaN rules).

/// The shapes of one max pooling: input (batch, channels, h, w), square window `k`, equal stride and
/// padding on both axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeometry {
    pub batch: usize,
    pub channels: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub padding: usize,
}

impl PoolGeometry {
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.padding - self.k) / self.stride + 1
    }

    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.padding - self.k) / self.stride + 1
    }

    /// The input rows (or columns) of output row `o`'s window that lie inside an axis of `len`.
    #[inline]
    pub fn window(&self, o: usize, len: usize) -> std::ops::Range<usize> {
        let start = (o * self.stride) as isize - self.padding as isize;
        let end = (start + self.k as isize).min(len as isize);
        start.max(0) as usize..end.max(0) as usize
    }

    /// Each output of one (batch, channel) plane (`h`×`w` inputs, `out_h`×`out_w` outputs): its
    /// window's maximum.
    pub fn forward_plane(&self, plane: &[f32], y: &mut [f32]) {
        self.each_first_max(plane, |o, _, v| y[o] = v);
    }

    /// One plane's input gradient: each output's gradient `dy` added at its window's first maximum.
    pub fn backward_plane(&self, plane: &[f32], dy: &[f32], dx: &mut [f32]) {
        self.each_first_max(plane, |o, at, _| dx[at] += dy[o]);
    }

    /// `visit(output index, first maximum's index, maximum)` for each output of one plane, in order.
    /// Unpadded 2×2 windows (Conv-4's and ResNet-12's pooling) are scanned by a loop whose window
    /// size is known when compiling: the same comparisons in the same order, unrolled.
    #[inline]
    fn each_first_max(&self, plane: &[f32], mut visit: impl FnMut(usize, usize, f32)) {
        let ow = self.out_w();
        for oy in 0..self.out_h() {
            for ox in 0..ow {
                let (at, v) = if self.k == 2 && self.padding == 0 {
                    first_max_inside::<2>(plane, self.w, oy * self.stride, ox * self.stride)
                } else {
                    self.first_max(plane, oy, ox)
                };
                visit(oy * ow + ox, at, v);
            }
        }
    }

    /// The flat index (within its plane) of the first maximum of output (oy, ox)'s window, and the
    /// maximum.
    #[inline]
    pub fn first_max(&self, plane: &[f32], oy: usize, ox: usize) -> (usize, f32) {
        let (rows, columns) = (self.window(oy, self.h), self.window(ox, self.w));
        // the window's first element, then the first strict maximum after it; the first NaN wins
        // (PyTorch's CPU kernel also lets a NaN win, the last one). Selects, not branches: which
        // element wins is data, and a mispredicted branch per element made this op 3× slower
        let first = rows.start * self.w + columns.start;
        let mut best = (first, plane[first]);
        for y in rows {
            for x in columns.clone() {
                take_if_wins(&mut best, y * self.w + x, plane[y * self.w + x]);
            }
        }
        best
    }
}

/// [`PoolGeometry::first_max`] of the `K`×`K` window whose top-left input is (`row`, `col`) of a plane
/// `w` wide, the window wholly inside it.
#[inline]
fn first_max_inside<const K: usize>(
    plane: &[f32],
    w: usize,
    row: usize,
    col: usize,
) -> (usize, f32) {
    let first = row * w + col;
    let mut best = (first, plane[first]);
    for y in 0..K {
        for x in 0..K {
            let at = first + y * w + x;
            take_if_wins(&mut best, at, plane[at]);
        }
    }
    best
}

/// `best` becomes (`at`, `v`) where `v` wins: larger, or the first NaN. Selects, not branches.
#[inline]
fn take_if_wins(best: &mut (usize, f32), at: usize, v: f32) {
    let wins = (v > best.1) | (v.is_nan() & !best.1.is_nan());
    best.0 = if wins { at } else { best.0 };
    best.1 = if wins { v } else { best.1 };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The unrolled scan of unpadded 2×2 windows gives what the general scan gives, ties and NaNs
    /// included (values from a few levels, so most windows hold a tie; some NaNs), on both strides.
    #[test]
    fn the_unrolled_two_by_two_scan_is_the_general_scan() {
        let (h, w) = (9, 11);
        let plane: Vec<f32> = (0..h * w)
            .map(|i| match (i * 7919) % 13 {
                0 => f32::NAN,
                r => (r % 4) as f32,
            })
            .collect();
        for stride in [1, 2] {
            let g = PoolGeometry {
                batch: 1,
                channels: 1,
                h,
                w,
                k: 2,
                stride,
                padding: 0,
            };
            let mut seen = 0;
            g.each_first_max(&plane, |o, at, v| {
                let (oy, ox) = (o / g.out_w(), o % g.out_w());
                let (at_general, v_general) = g.first_max(&plane, oy, ox);
                assert_eq!(at, at_general, "stride {stride}, output ({oy}, {ox})");
                assert_eq!(v.to_bits(), v_general.to_bits());
                seen += 1;
            });
            assert_eq!(seen, g.out_h() * g.out_w());
        }
    }
}
