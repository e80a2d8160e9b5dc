//! The fast exact assignment for the small dense matrices LWFM-SPM produces (9×9 for 3×3 maps, 25×25
//! for 5×5), after Jonker & Volgenant (1987, "A shortest augmenting path algorithm for dense and
//! sparse linear assignment problems"): column reduction, augmenting row reduction, then Dijkstra
//! augmentation with lazily updated column prices. Fixed-size stack arrays specialised per size, so
//! one problem allocates nothing and the 9×9 and 25×25 loops are compiled for their size. f32
//! throughout (the costs' own precision). Ties are broken by the fixed scan order, so results are
//! deterministic. Checked against `pathfinding`'s Kuhn–Munkres and brute force in the tests.

/// Largest n the stack arrays hold.
pub const MAX_N: usize = 64;

/// The optimal assignment of an `n`×`n` row-major cost matrix into `out` (`out[row] = column`).
pub fn assign_small(costs: &[f32], n: usize, out: &mut [u32]) {
    assert!(n <= MAX_N, "assign_small handles n <= {MAX_N}, got {n}");
    assert_eq!(costs.len(), n * n, "cost matrix size");
    assert!(out.len() >= n, "output too short");
    match n {
        0 => {}
        9 => solve::<9>(costs, 9, out),
        25 => solve::<25>(costs, 25, out),
        n if n <= 16 => solve::<16>(costs, n, out),
        n if n <= 32 => solve::<32>(costs, n, out),
        n => solve::<MAX_N>(costs, n, out),
    }
}

/// The solver on arrays of capacity `N` >= `n`. Row potentials are implicit, as in Jonker &
/// Volgenant: every row's assigned column minimises `c[row][j] - v[j]` over j.
// the scans `for k in up..n` move `up` on purpose: the range is fixed when the scan starts
#[allow(clippy::mut_range_bound)]
#[inline(always)]
fn solve<const N: usize>(costs: &[f32], n: usize, out: &mut [u32]) {
    const FREE: usize = usize::MAX;
    let mut v = [0f32; N];
    let mut col_of_row = [FREE; N];
    let mut row_of_col = [FREE; N];
    // column reduction: v[j] = min_i c[i][j] (rows scanned in order, columns side by side, so the
    // compare-and-select runs without branches); its argmin row takes column j if still free
    let mut arg = [0u32; N];
    v[..n].copy_from_slice(&costs[..n]);
    for i in 1..n {
        let row = &costs[i * n..i * n + n];
        for j in 0..n {
            let smaller = row[j] < v[j];
            v[j] = if smaller { row[j] } else { v[j] };
            arg[j] = if smaller { i as u32 } else { arg[j] };
        }
    }
    for (j, &i) in arg.iter().enumerate().take(n) {
        let i = i as usize;
        if col_of_row[i] == FREE {
            col_of_row[i] = j;
            row_of_col[j] = i;
        }
    }
    // reduction transfer: an assigned row's column price drops until the row is indifferent between
    // it and its next-best column, so free rows are less drawn to taken columns
    for row in 0..n {
        let j1 = col_of_row[row];
        if j1 == FREE {
            continue;
        }
        let row_costs = &costs[row * n..row * n + n];
        let mut next_best = f32::INFINITY;
        for j in 0..n {
            let h = if j == j1 {
                f32::INFINITY
            } else {
                row_costs[j] - v[j]
            };
            next_best = if h < next_best { h } else { next_best };
        }
        if next_best.is_finite() {
            v[j1] = row_costs[j1] - next_best;
        }
    }
    // augmenting row reduction: a free row takes its cheapest column j1 (by c - v), and v[j1] drops
    // by the gap to the row's second-cheapest, so j1 stays the row's minimum and every other row's
    // condition holds; j1's previous row becomes free and is tried next. Bounded, since it need
    // not converge; what stays free is augmented below.
    let mut free = [0usize; N];
    let mut free_len = 0;
    for (row, &col) in col_of_row.iter().enumerate().take(n) {
        if col == FREE {
            free[free_len] = row;
            free_len += 1;
        }
    }
    let mut steps = 0;
    let mut next = 0;
    while next < free_len && steps < 2 * n {
        steps += 1;
        let row = free[next];
        next += 1;
        let row_costs = &costs[row * n..row * n + n];
        let (mut first, mut second) = (f32::INFINITY, f32::INFINITY);
        let (mut j1, mut j2) = (0usize, FREE);
        for (j, (&c, &vj)) in row_costs.iter().zip(&v[..n]).enumerate() {
            // branch-free: random costs make these comparisons unpredictable
            let h = c - vj;
            let (below_first, below_second) = (h < first, h < second);
            second = if below_first {
                first
            } else if below_second {
                h
            } else {
                second
            };
            j2 = if below_first {
                j1
            } else if below_second {
                j
            } else {
                j2
            };
            first = if below_first { h } else { first };
            j1 = if below_first { j } else { j1 };
        }
        let mut take = j1;
        let gain = if second.is_finite() {
            second - first
        } else {
            0.0
        };
        if gain > 0.0 {
            v[j1] -= gain;
        } else if j2 != FREE && row_of_col[j2] == FREE {
            take = j2;
        }
        let previous = row_of_col[take];
        row_of_col[take] = row;
        col_of_row[row] = take;
        if previous != FREE {
            col_of_row[previous] = FREE;
            // the displaced row is tried next when this step gained something; after a tie it is
            // left to the augmentation below
            if gain > 0.0 {
                next -= 1;
                free[next] = previous;
            }
        }
    }
    // augmentation: Dijkstra over columns from each free row on reduced costs, scanning every
    // column at the current minimum distance before raising it (JV's "todo" list); the prices of
    // the columns settled before the last raise move by their distance, the path is flipped
    let mut dist = [0f32; N];
    let mut pred = [0usize; N];
    let mut cols = [0usize; N];
    for start in 0..n {
        if col_of_row[start] != FREE {
            continue;
        }
        let start_costs = &costs[start * n..start * n + n];
        for j in 0..n {
            dist[j] = start_costs[j] - v[j];
            pred[j] = start;
            cols[j] = j;
        }
        // cols[..low] settled, cols[low..up] at distance `min` and not yet scanned, cols[up..] open
        let (mut low, mut up) = (0usize, 0usize);
        let mut settled_before_min = 0usize;
        let mut min = 0f32;
        let end = 'search: loop {
            if up == low {
                settled_before_min = low;
                min = dist[cols[up]];
                up += 1;
                for k in up..n {
                    let j = cols[k];
                    let h = dist[j];
                    if h <= min {
                        if h < min {
                            up = low;
                            min = h;
                        }
                        cols[k] = cols[up];
                        cols[up] = j;
                        up += 1;
                    }
                }
                for &j in &cols[low..up] {
                    if row_of_col[j] == FREE {
                        break 'search j;
                    }
                }
            }
            let j1 = cols[low];
            low += 1;
            let i = row_of_col[j1];
            let row_costs = &costs[i * n..i * n + n];
            let offset = row_costs[j1] - v[j1] - min;
            for k in up..n {
                let j = cols[k];
                let h = row_costs[j] - v[j] - offset;
                if h < dist[j] {
                    pred[j] = i;
                    dist[j] = h;
                    if h == min {
                        if row_of_col[j] == FREE {
                            break 'search j;
                        }
                        cols[k] = cols[up];
                        cols[up] = j;
                        up += 1;
                    }
                }
            }
        };
        for &j in &cols[..settled_before_min] {
            v[j] += dist[j] - min;
        }
        let mut j = end;
        loop {
            let i = pred[j];
            row_of_col[j] = i;
            let previous = col_of_row[i];
            col_of_row[i] = j;
            if i == start {
                break;
            }
            j = previous;
        }
    }
    for (row, &col) in col_of_row.iter().enumerate().take(n) {
        out[row] = col as u32;
    }
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
    fn equals_pathfinding_on_random_matrices_up_to_25() {
        let mut rng = CounterRng::new(CounterRng::key_from("small-assignment"), 0);
        for n in [1, 2, 3, 5, 9, 15, 16, 25, 31, 40, 64] {
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

    #[test]
    fn a_hand_computed_case_and_ties() {
        let costs = [9.0, 9.0, 1.0, 2.0, 9.0, 9.0, 9.0, 1.0, 9.0];
        let mut out = [0u32; 3];
        assign_small(&costs, 3, &mut out);
        assert_eq!(out, [2, 0, 1]);
        let flat = [0.5f32; 81];
        let (mut a, mut b) = ([0u32; 9], [0u32; 9]);
        assign_small(&flat, 9, &mut a);
        assign_small(&flat, 9, &mut b);
        assert_eq!(a, b);
    }
}
