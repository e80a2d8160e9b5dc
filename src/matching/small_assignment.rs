//! The fast exact assignment for the small dense matrices LWFM-SPM produces (9×9 for 3×3 maps, 25×25
//! for 5×5), after Jonker & Volgenant (1987, "A shortest augmenting path algorithm for dense and
//! sparse linear assignment problems"): column reduction, reduction transfer, augmenting row
//! reduction, then Dijkstra augmentation with column prices updated at the end of each search.
//! Each problem is copied into a stack matrix whose rows are padded to a whole number of 8-lane
//! vectors with a large cost, so every scan (a row's two cheapest reduced costs, the distance
//! updates, the column minima) is a fixed-width loop the compiler turns into vector compares and
//! selects; on x86-64 with AVX2 (checked at run time) the same code is compiled for 8-lane vectors.
//! One problem allocates nothing. f32 throughout (the costs' own precision). Both builds do the same
//! correctly rounded subtractions in the same order, and minima, compares and selects are exact, so
//! AVX2 and the portable build give the same assignment; ties go to the lowest column, so results
//! are deterministic. Checked against
//! `pathfinding`'s Kuhn–Munkres and brute force in the tests.

/// Largest n the stack arrays hold.
pub const MAX_N: usize = 64;

/// Costs must be smaller than this in magnitude, so reduced costs and path lengths stay far below
/// the padding columns' cost (1e30).
pub const MAX_COST: f32 = 1e20;

/// The cost of a padding column: larger than any reduced cost a real column reaches, finite so that
/// differences stay numbers.
const PAD: f32 = 1e30;
/// A settled column's key in the Dijkstra search: above every real and padding distance.
const SETTLED: f32 = f32::INFINITY;
const FREE: u32 = u32::MAX;

/// The optimal assignment of an `n`×`n` row-major cost matrix into `out` (`out[row] = column`).
/// Costs must be finite and below [`MAX_COST`] in magnitude.
pub fn assign_small(costs: &[f32], n: usize, out: &mut [u32]) {
    assert!(n <= MAX_N, "assign_small handles n <= {MAX_N}, got {n}");
    assert_eq!(costs.len(), n * n, "cost matrix size");
    assert!(out.len() >= n, "output too short");
    // non-branching, so the check vectorises; a NaN would make every lane compare false, and a cost
    // near PAD would be taken for padding
    let in_range = costs.iter().fold(true, |ok, c| ok & (c.abs() < MAX_COST));
    assert!(
        in_range,
        "assignment costs must be finite with magnitude below {MAX_COST:e} (got NaN, infinity or larger)"
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has just been checked to support AVX2.
        unsafe { dispatch_avx2(costs, n, out) };
        return;
    }
    dispatch::<PortableLanes>(costs, n, out);
}

/// [`dispatch`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dispatch_avx2(costs: &[f32], n: usize, out: &mut [u32]) {
    dispatch::<Avx2Lanes>(costs, n, out)
}

/// The solver specialised by size: rows (capacity) and padded row width.
#[inline(always)]
fn dispatch<L: Lanes>(costs: &[f32], n: usize, out: &mut [u32]) {
    match n {
        0 => {}
        1 => out[0] = 0,
        9 => solve::<9, 16, L>(costs, 9, out),
        25 => solve::<25, 32, L>(costs, 25, out),
        n if n <= 16 => solve::<16, 16, L>(costs, n, out),
        n if n <= 32 => solve::<32, 32, L>(costs, n, out),
        n => solve::<MAX_N, MAX_N, L>(costs, n, out),
    }
}

/// The horizontal operations of the scans, over a padded row of `W` lanes (`W` a multiple of 8):
/// the smallest lane, the lanes equal to a value as bits, and the smallest lane other than a given
/// one with its index. Everything else is element-wise and left to the compiler's vectoriser.
trait Lanes {
    fn min_lane<const W: usize>(h: &[f32; W]) -> f32;
    fn lanes_equal<const W: usize>(h: &[f32; W], value: f32) -> u64;
    /// The smallest lane other than `skip` (`skip >= W` skips none) and its lowest index.
    fn smallest_except<const W: usize>(h: &[f32; W], skip: usize) -> (f32, usize);
    /// The smallest lane and the second smallest (equal to the first when two lanes tie).
    fn two_smallest<const W: usize>(h: &[f32; W]) -> (f32, f32);
    /// Each column's minimum over the first `n` rows and its first row (column reduction).
    fn column_minima<const R: usize, const W: usize>(
        c: &[[f32; W]; R],
        n: usize,
    ) -> ([f32; W], [u32; W]);
}

/// Plain Rust lanes, for every target.
struct PortableLanes;

impl Lanes for PortableLanes {
    #[inline(always)]
    fn min_lane<const W: usize>(h: &[f32; W]) -> f32 {
        h[1..].iter().fold(h[0], |m, &x| if x < m { x } else { m })
    }

    #[inline(always)]
    fn lanes_equal<const W: usize>(h: &[f32; W], value: f32) -> u64 {
        let mut mask = 0u64;
        for (j, &x) in h.iter().enumerate() {
            mask |= ((x == value) as u64) << j;
        }
        mask
    }

    #[inline(always)]
    fn smallest_except<const W: usize>(h: &[f32; W], skip: usize) -> (f32, usize) {
        let mut masked = *h;
        for (j, x) in masked.iter_mut().enumerate() {
            *x = if j == skip { SETTLED } else { *x };
        }
        let min = Self::min_lane(&masked);
        (
            min,
            Self::lanes_equal(&masked, min).trailing_zeros() as usize,
        )
    }

    #[inline(always)]
    fn two_smallest<const W: usize>(h: &[f32; W]) -> (f32, f32) {
        let (mut first, mut second) = (SETTLED, SETTLED);
        for &x in h {
            second = if x < first {
                first
            } else if x < second {
                x
            } else {
                second
            };
            first = if x < first { x } else { first };
        }
        (first, second)
    }

    #[inline(always)]
    fn column_minima<const R: usize, const W: usize>(
        c: &[[f32; W]; R],
        n: usize,
    ) -> ([f32; W], [u32; W]) {
        let mut v = c[0];
        let mut arg = [0u32; W];
        for (i, row) in c.iter().enumerate().take(n).skip(1) {
            for j in 0..W {
                let smaller = row[j] < v[j];
                v[j] = if smaller { row[j] } else { v[j] };
                arg[j] = if smaller { i as u32 } else { arg[j] };
            }
        }
        (v, arg)
    }
}

/// AVX2 lanes: 8-lane vector min, an in-register horizontal min, compare-and-movemask, all on
/// registers (a scalar store into a row that is then loaded as vectors would stall store
/// forwarding). Its methods are safe functions that execute AVX2 instructions, so this type must stay
/// private to this module: only [`dispatch_avx2`] uses it, after checking the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
struct Avx2Lanes;

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Vectors per row: at most 64 lanes.
    pub const MAX_VECTORS: usize = 8;

    /// The row as vectors, lanes equal to `skip` replaced by `fill`.
    /// SAFETY (callers): AVX2 available; `W` a multiple of 8, at most 64.
    #[inline(always)]
    pub unsafe fn load<const W: usize>(
        h: &[f32; W],
        skip: usize,
        fill: f32,
    ) -> [__m256; MAX_VECTORS] {
        let mut rows = [_mm256_setzero_ps(); MAX_VECTORS];
        let skip = _mm256_set1_epi32(skip as i32);
        let fill = _mm256_set1_ps(fill);
        for (k, row) in rows.iter_mut().enumerate().take(W / 8) {
            let lanes = _mm256_add_epi32(
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                _mm256_set1_epi32(8 * k as i32),
            );
            let hit = _mm256_castsi256_ps(_mm256_cmpeq_epi32(lanes, skip));
            *row = _mm256_blendv_ps(_mm256_loadu_ps(h.as_ptr().add(8 * k)), fill, hit);
        }
        rows
    }

    /// The smallest lane of `W / 8` vectors.
    #[inline(always)]
    pub unsafe fn min<const W: usize>(rows: &[__m256; MAX_VECTORS]) -> f32 {
        let mut m = rows[0];
        for row in rows.iter().take(W / 8).skip(1) {
            m = _mm256_min_ps(m, *row);
        }
        let m4 = _mm_min_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m2 = _mm_min_ps(m4, _mm_movehl_ps(m4, m4));
        let m1 = _mm_min_ss(m2, _mm_shuffle_ps::<1>(m2, m2));
        _mm_cvtss_f32(m1)
    }

    /// The smallest and second smallest lane of `W / 8` vectors: a (smallest, second) pair per lane
    /// across the vectors, then the pairs merged by halving, in registers.
    #[inline(always)]
    pub unsafe fn two_smallest<const W: usize>(rows: &[__m256; MAX_VECTORS]) -> (f32, f32) {
        let mut first = rows[0];
        let mut second = _mm256_set1_ps(f32::INFINITY);
        for row in rows.iter().take(W / 8).skip(1) {
            second = _mm256_min_ps(second, _mm256_max_ps(first, *row));
            first = _mm256_min_ps(first, *row);
        }
        // merging pairs (a1 <= a2) and (b1 <= b2): min(a1, b1), then min(max(a1, b1), a2, b2)
        let (a1, a2) = (
            _mm256_castps256_ps128(first),
            _mm256_castps256_ps128(second),
        );
        let (b1, b2) = (
            _mm256_extractf128_ps::<1>(first),
            _mm256_extractf128_ps::<1>(second),
        );
        let f4 = _mm_min_ps(a1, b1);
        let s4 = _mm_min_ps(_mm_max_ps(a1, b1), _mm_min_ps(a2, b2));
        let (b1, b2) = (_mm_movehl_ps(f4, f4), _mm_movehl_ps(s4, s4));
        let f2 = _mm_min_ps(f4, b1);
        let s2 = _mm_min_ps(_mm_max_ps(f4, b1), _mm_min_ps(s4, b2));
        let (b1, b2) = (_mm_shuffle_ps::<1>(f2, f2), _mm_shuffle_ps::<1>(s2, s2));
        let f1 = _mm_min_ss(f2, b1);
        let s1 = _mm_min_ss(_mm_max_ss(f2, b1), _mm_min_ss(s2, b2));
        (_mm_cvtss_f32(f1), _mm_cvtss_f32(s1))
    }

    /// A bit per lane of `W / 8` vectors equal to `value`.
    #[inline(always)]
    pub unsafe fn equal<const W: usize>(rows: &[__m256; MAX_VECTORS], value: f32) -> u64 {
        let target = _mm256_set1_ps(value);
        let mut mask = 0u64;
        for (k, row) in rows.iter().enumerate().take(W / 8) {
            let hit = _mm256_cmp_ps::<_CMP_EQ_OQ>(*row, target);
            mask |= (_mm256_movemask_ps(hit) as u32 as u64) << (8 * k);
        }
        mask
    }
}

#[cfg(target_arch = "x86_64")]
impl Lanes for Avx2Lanes {
    #[inline(always)]
    fn min_lane<const W: usize>(h: &[f32; W]) -> f32 {
        // SAFETY: inlined only into `dispatch_avx2`, which runs after the AVX2 check; W is a
        // multiple of 8 and at most 64.
        unsafe { avx2::min::<W>(&avx2::load(h, usize::MAX, 0.0)) }
    }

    #[inline(always)]
    fn lanes_equal<const W: usize>(h: &[f32; W], value: f32) -> u64 {
        // SAFETY: as in `min_lane`.
        unsafe { avx2::equal::<W>(&avx2::load(h, usize::MAX, 0.0), value) }
    }

    #[inline(always)]
    fn smallest_except<const W: usize>(h: &[f32; W], skip: usize) -> (f32, usize) {
        // SAFETY: as in `min_lane`.
        unsafe {
            let rows = avx2::load(h, skip, SETTLED);
            let min = avx2::min::<W>(&rows);
            (min, avx2::equal::<W>(&rows, min).trailing_zeros() as usize)
        }
    }

    #[inline(always)]
    fn two_smallest<const W: usize>(h: &[f32; W]) -> (f32, f32) {
        // SAFETY: as in `min_lane`.
        unsafe { avx2::two_smallest::<W>(&avx2::load(h, usize::MAX, 0.0)) }
    }

    #[inline(always)]
    fn column_minima<const R: usize, const W: usize>(
        c: &[[f32; W]; R],
        n: usize,
    ) -> ([f32; W], [u32; W]) {
        use std::arch::x86_64::*;
        let (mut v, mut arg) = ([0f32; W], [0u32; W]);
        // SAFETY: as in `min_lane`; every access is 8 lanes inside a row of `c`, `v` or `arg`.
        unsafe {
            for k in (0..W).step_by(8) {
                let mut min = _mm256_loadu_ps(c[0].as_ptr().add(k));
                let mut at = _mm256_setzero_si256();
                for (i, row) in c.iter().enumerate().take(n).skip(1) {
                    let x = _mm256_loadu_ps(row.as_ptr().add(k));
                    let smaller = _mm256_cmp_ps::<_CMP_LT_OQ>(x, min);
                    min = _mm256_min_ps(x, min);
                    at = _mm256_castps_si256(_mm256_blendv_ps(
                        _mm256_castsi256_ps(at),
                        _mm256_castsi256_ps(_mm256_set1_epi32(i as i32)),
                        smaller,
                    ));
                }
                _mm256_storeu_ps(v.as_mut_ptr().add(k), min);
                _mm256_storeu_si256(arg.as_mut_ptr().add(k) as *mut __m256i, at);
            }
        }
        (v, arg)
    }
}

/// The reduced costs `c - v` of one padded row.
#[inline(always)]
fn reduced<const W: usize>(row: &[f32; W], v: &[f32; W]) -> [f32; W] {
    let mut h = [0f32; W];
    for j in 0..W {
        h[j] = row[j] - v[j];
    }
    h
}

/// The solver on a stack matrix of `R` rows of `W` lanes (`n <= R`, `n <= W`, `n >= 2`). Row
/// potentials are implicit, as in Jonker & Volgenant: every assigned row's column minimises
/// `c[row][j] - v[j]` over j.
#[inline(always)]
fn solve<const R: usize, const W: usize, L: Lanes>(costs: &[f32], n: usize, out: &mut [u32]) {
    // whole 8-lane vectors, and bit masks and indices that fit a u64
    const { assert!(W.is_multiple_of(8) && W <= 64 && R <= 64) };
    let mut c = [[PAD; W]; R];
    for (row, source) in c.iter_mut().zip(costs.chunks_exact(n)) {
        row[..n].copy_from_slice(source);
    }
    let mut col_of_row = [FREE; R];
    let mut row_of_col = [FREE; W];
    // a bit per real column that no row holds
    let mut free_cols: u64 = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
    // column reduction: v[j] = min_i c[i][j] (rows in order, so the first minimal row wins); its
    // argmin row takes column j if still free
    let (mut v, arg) = L::column_minima(&c, n);
    // padding columns keep price 0, so their reduced cost stays PAD
    for (j, price) in v.iter_mut().enumerate() {
        *price = if j < n { *price } else { 0.0 };
    }
    for (j, &i) in arg.iter().enumerate().take(n) {
        if col_of_row[i as usize] == FREE {
            col_of_row[i as usize] = j as u32;
            row_of_col[j] = i;
            free_cols &= !(1u64 << j);
        }
    }
    // reduction transfer: an assigned row's column price drops until the row is indifferent between
    // it and its next-best column, so free rows are less drawn to taken columns
    for row in 0..n {
        let j1 = col_of_row[row];
        if j1 == FREE {
            continue;
        }
        let j1 = j1 as usize;
        let h = reduced(&c[row], &v);
        v[j1] = c[row][j1] - L::smallest_except(&h, j1).0;
    }
    // augmenting row reduction: a free row takes its cheapest column j1 (by c - v), and v[j1] drops
    // by the gap to the row's second-cheapest, so j1 stays the row's minimum and every other row's
    // condition holds; j1's previous row becomes free and is tried next. Bounded, since it need
    // not converge; what stays free is augmented below.
    let mut free_rows = [0u32; R];
    let mut free_len = 0;
    for (row, &col) in col_of_row.iter().enumerate().take(n) {
        if col == FREE {
            free_rows[free_len] = row as u32;
            free_len += 1;
        }
    }
    let mut steps = 0;
    let mut next = 0;
    while next < free_len && steps < 2 * n {
        steps += 1;
        let row = free_rows[next] as usize;
        next += 1;
        let h = reduced(&c[row], &v);
        let (first, second) = L::two_smallest(&h);
        let j1 = L::lanes_equal(&h, first).trailing_zeros() as usize;
        let gain = second - first;
        let mut take = j1;
        if gain > 0.0 {
            v[j1] -= gain;
        } else {
            let j2 = L::smallest_except(&h, j1).1;
            if row_of_col[j2] == FREE {
                take = j2;
            }
        }
        let previous = row_of_col[take];
        row_of_col[take] = row as u32;
        col_of_row[row] = take as u32;
        free_cols &= !(1u64 << take);
        if previous != FREE {
            col_of_row[previous as usize] = FREE;
            // the displaced row is tried next when this step gained something; after a tie it is
            // left to the augmentation below
            if gain > 0.0 {
                next -= 1;
                free_rows[next] = previous;
            }
        }
    }
    // augmentation: Dijkstra over columns from each free row on reduced costs. `key` holds each
    // open column's tentative distance (SETTLED once scanned); the nearest open column is settled
    // and its row scanned, until the nearest is a free column. Settled columns' prices then move by
    // their distance below the final one, and the path is flipped.
    for start in 0..n {
        if col_of_row[start] != FREE {
            continue;
        }
        let mut key = reduced(&c[start], &v);
        let mut pred = [start as u32; W];
        let mut settled = [0u32; R];
        let mut settled_dist = [0f32; R];
        let mut settled_len = 0;
        let (end, end_dist) = loop {
            let min = L::min_lane(&key);
            let nearest = L::lanes_equal(&key, min);
            let free_nearest = nearest & free_cols;
            if free_nearest != 0 {
                break (free_nearest.trailing_zeros() as usize, min);
            }
            let j = nearest.trailing_zeros() as usize;
            settled[settled_len] = j as u32;
            settled_dist[settled_len] = min;
            settled_len += 1;
            let i = row_of_col[j] as usize;
            let offset = c[i][j] - v[j] - min;
            let row = &c[i];
            for k in 0..W {
                // column j is settled here, in the same vector pass (no scalar store before it)
                let h = row[k] - v[k] - offset;
                let closer = h < key[k] && key[k] != SETTLED && k != j;
                key[k] = if k == j {
                    SETTLED
                } else if closer {
                    h
                } else {
                    key[k]
                };
                pred[k] = if closer { i as u32 } else { pred[k] };
            }
        };
        for (&j, &d) in settled[..settled_len].iter().zip(&settled_dist) {
            v[j as usize] += d - end_dist;
        }
        let mut j = end;
        free_cols &= !(1u64 << end);
        loop {
            let i = pred[j];
            row_of_col[j] = i;
            let previous = col_of_row[i as usize];
            col_of_row[i as usize] = j as u32;
            if i as usize == start {
                break;
            }
            j = previous as usize;
        }
    }
    out[..n].copy_from_slice(&col_of_row[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::philox::CounterRng;
    use crate::matching::assignment::assign_one;

    fn total(costs: &[f32], n: usize, perm: &[u32]) -> f64 {
        (0..n).map(|r| costs[r * n + perm[r] as usize] as f64).sum()
    }

    #[test]
    fn equals_pathfinding_on_random_matrices_up_to_64() {
        let mut rng = CounterRng::new(CounterRng::key_from("small-assignment"), 0);
        for n in [1, 2, 3, 5, 9, 15, 16, 17, 25, 31, 33, 40, 64] {
            for _ in 0..40 {
                let costs: Vec<f32> = (0..n * n).map(|_| 2.0 * rng.unit_f32()).collect();
                let mut fast = vec![0u32; n];
                assign_small(&costs, n, &mut fast);
                let reference = assign_one(&costs, n);
                let mut sorted = fast.clone();
                sorted.sort();
                assert_eq!(sorted, (0..n as u32).collect::<Vec<_>>(), "a permutation");
                // pathfinding works on costs rounded to 1e-6, so totals agree to n * 1e-6
                assert!(
                    (total(&costs, n, &fast) - total(&costs, n, &reference)).abs()
                        <= n as f64 * 1e-6
                );
            }
        }
    }

    /// Costs on a coarse grid, so many lanes tie: both lane implementations must break ties alike.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn portable_and_avx2_lanes_give_the_same_assignment() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let mut rng = CounterRng::new(CounterRng::key_from("lanes-agree"), 0);
        for n in [2, 3, 7, 9, 16, 17, 20, 25, 32, 33, 63, 64] {
            for trial in 0..60 {
                let levels = if trial % 2 == 0 { 4.0 } else { 1e6 };
                let costs: Vec<f32> = (0..n * n)
                    .map(|_| (levels * rng.unit_f32()).floor() / levels)
                    .collect();
                let (mut portable, mut avx) = (vec![0u32; n], vec![0u32; n]);
                dispatch::<PortableLanes>(&costs, n, &mut portable);
                // SAFETY: AVX2 was checked above.
                unsafe { dispatch_avx2(&costs, n, &mut avx) };
                assert_eq!(portable, avx, "n={n} trial={trial}");
                let reference = assign_one(&costs, n);
                assert!(
                    (total(&costs, n, &portable) - total(&costs, n, &reference)).abs()
                        <= n as f64 * 1e-6,
                    "n={n} trial={trial}"
                );
            }
        }
    }

    #[test]
    fn brute_force_agrees_on_tiny_matrices() {
        let mut rng = CounterRng::new(CounterRng::key_from("small-brute"), 0);
        for n in 2..=6usize {
            for _ in 0..50 {
                let costs: Vec<f32> = (0..n * n).map(|_| (8.0 * rng.unit_f32()).floor()).collect();
                let mut got = vec![0u32; n];
                assign_small(&costs, n, &mut got);
                let mut best = f64::INFINITY;
                let mut perm: Vec<u32> = (0..n as u32).collect();
                // every permutation by repeated next-permutation
                loop {
                    best = best.min(total(&costs, n, &perm));
                    let Some(i) = (0..n - 1).rev().find(|&i| perm[i] < perm[i + 1]) else {
                        break;
                    };
                    let k = (i + 1..n).rev().find(|&k| perm[k] > perm[i]).unwrap();
                    perm.swap(i, k);
                    perm[i + 1..].reverse();
                }
                assert_eq!(total(&costs, n, &got), best, "n={n}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "must be finite with magnitude below")]
    fn a_nan_cost_is_refused() {
        let mut costs = [0.5f32; 9];
        costs[4] = f32::NAN;
        assign_small(&costs, 3, &mut [0u32; 3]);
    }

    #[test]
    #[should_panic(expected = "must be finite with magnitude below")]
    fn a_cost_that_could_pass_for_padding_is_refused() {
        let mut costs = [0.5f32; 9];
        costs[2] = 1e25;
        assign_small(&costs, 3, &mut [0u32; 3]);
    }

    #[test]
    fn a_hand_computed_case_and_ties() {
        let costs = [9.0, 9.0, 1.0, 2.0, 9.0, 9.0, 9.0, 1.0, 9.0];
        let mut out = [0u32; 3];
        assign_small(&costs, 3, &mut out);
        assert_eq!(out, [2, 0, 1]);
        // all costs equal: any permutation is optimal; the portable build returns one, and (tested
        // above) the AVX2 build the same
        let flat = [0.5f32; 81];
        let mut portable = [0u32; 9];
        dispatch::<PortableLanes>(&flat, 9, &mut portable);
        let mut sorted = portable;
        sorted.sort();
        assert_eq!(sorted, [0, 1, 2, 3, 4, 5, 6, 7, 8]);
        let mut public = [0u32; 9];
        assign_small(&flat, 9, &mut public);
        assert_eq!(public, portable);
    }
}
