//! The shapes of one max pooling, shared by the CPU formulas (`max_pool_ops`) and cuDNN's pooling
//! descriptor (`cuda::cudnn_descriptors`): the output size, each window's extent inside the input,
//! and the first maximum of a window (PyTorch's tie and NaN rules).

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
    pub(crate) fn window(&self, o: usize, len: usize) -> std::ops::Range<usize> {
        let start = (o * self.stride) as isize - self.padding as isize;
        let end = (start + self.k as isize).min(len as isize);
        start.max(0) as usize..end.max(0) as usize
    }

    /// The flat index (within its plane) of the first maximum of output (oy, ox)'s window, and the
    /// maximum.
    pub(crate) fn first_max(&self, plane: &[f32], oy: usize, ox: usize) -> (usize, f32) {
        let (rows, columns) = (self.window(oy, self.h), self.window(ox, self.w));
        // the window's first element, then the first strict maximum after it; the first NaN wins
        // (PyTorch's CPU kernel also lets a NaN win, the last one). Selects, not branches: which
        // element wins is data, and a mispredicted branch per element made this op 3× slower
        let first = rows.start * self.w + columns.start;
        let mut best = (first, plane[first]);
        for y in rows {
            for x in columns.clone() {
                let at = y * self.w + x;
                let v = plane[at];
                let wins = (v > best.1) | (v.is_nan() & !best.1.is_nan());
                best.0 = if wins { at } else { best.0 };
                best.1 = if wins { v } else { best.1 };
            }
        }
        best
    }
}
