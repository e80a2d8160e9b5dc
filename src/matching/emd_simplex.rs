//! The transportation simplex for the EMD (the u–v or MODI method; Dantzig, "Linear Programming and
//! Extensions", ch. 15; Hillier & Lieberman, "Introduction to Operations Research", §9.2): a basis is
//! a spanning tree of n + m − 1 cells over the row and column nodes. Start: a row-greedy feasible
//! tree. Pivot: the entering cell by block pricing of reduced costs c_ij − u_i − v_j, the tree path
//! between its row and column closes the cycle, the smallest flow on the cycle's losing cells leaves,
//! and only the subtree that the leaving cell cut off is re-hung: the tree keeps its preorder as a
//! thread (Bradley, Brown & Graves, 1977; Ahuja, Magnanti & Orlin, "Network Flows", §11.3), so the
//! cut subtree is walked once along it, its parents reversed only along the stem to the entering
//! cell, its depths and duals shifted, and nothing is rebuilt per pivot. At the end every reduced
//! cost is ≥ 0 and every cell with flow is basic (reduced cost 0): the duals certify the optimum.
//! Degenerate pivots can cycle in principle, hence the caller's pivot limit.

/// Nothing.
const NONE: usize = usize::MAX;

/// Rows priced per block. Measured on 25 × 25 random problems (this machine, 2026-11-28, one core):
/// pricing every row (Dantzig) took 34 pivots and 21.8 µs per problem, blocks of 8 rows 43 pivots
/// and 19.2 µs, blocks of 1 row 67 pivots and 21.9 µs. (A candidate list, 8 rows' cells re-priced
/// for up to 4 pivots, measured no faster on 2026-11-29: 39–48 pivots, 19.4–22.5 µs against 17.4 µs.)
const PRICING_BLOCK: usize = 8;

/// The optimal flow (row-major `n × m`) and dual prices `(u, v)` for balanced weights, or `None`
/// after `max_pivots` pivots. On x86-64 with AVX2 (checked at run time) the same code is compiled
/// for 4-lane f64 vectors; the arithmetic is the same exact-rounded operations either way.
pub(crate) fn solve(
    supply: &[f64],
    demand: &[f64],
    cost: &[f64],
    max_pivots: usize,
) -> Option<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has just been checked to support AVX2.
        return unsafe { solve_avx2(supply, demand, cost, max_pivots) };
    }
    solve_inlined(supply, demand, cost, max_pivots)
}

/// [`solve_inlined`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn solve_avx2(
    supply: &[f64],
    demand: &[f64],
    cost: &[f64],
    max_pivots: usize,
) -> Option<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    solve_inlined(supply, demand, cost, max_pivots)
}

/// The solver, inlined into each target's entry point.
#[inline(always)]
fn solve_inlined(
    supply: &[f64],
    demand: &[f64],
    cost: &[f64],
    max_pivots: usize,
) -> Option<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let (n, m) = (supply.len(), demand.len());
    let (mut basis, c_max) = row_greedy_start(supply, demand, cost);
    debug_assert_eq!(basis.len(), n + m - 1);
    let tolerance = 1e-11 * (1.0 + c_max);
    let mut tree = Tree::new(n, m, &basis, cost);
    let mut side_row = Vec::with_capacity(n + m);
    let mut side_col = Vec::with_capacity(n + m);
    let mut pivots = 0usize;
    let mut start_row = 0;
    loop {
        let Some((enter_row, enter_col)) = entering_cell(
            cost,
            &tree.dual[..n],
            &tree.dual[n..],
            tolerance,
            &mut start_row,
        ) else {
            let mut flow = vec![0.0f64; n * m];
            for cell in &basis {
                flow[cell.row * m + cell.col] = cell.flow;
            }
            let v = tree.dual.split_off(n);
            return Some((flow, tree.dual, v));
        };
        pivots += 1;
        if pivots > max_pivots {
            return None;
        }

        // the cycle: the entering cell gains, then the tree path from its column back to its row
        // alternates lose, gain, …, lose (counted from each end, the odd steps lose)
        side_row.clear();
        side_col.clear();
        let (mut a, mut b) = (enter_row, n + enter_col);
        while a != b {
            if tree.depth[a] >= tree.depth[b] {
                side_row.push(tree.parent_cell[a] as usize);
                a = tree.parent[a] as usize;
            } else {
                side_col.push(tree.parent_cell[b] as usize);
                b = tree.parent[b] as usize;
            }
        }
        let (mut theta, mut leaving, mut leaving_on_row_side) = (f64::INFINITY, NONE, true);
        for (side, on_row_side) in [(&side_row, true), (&side_col, false)] {
            for &e in side.iter().step_by(2) {
                if basis[e].flow < theta {
                    (theta, leaving, leaving_on_row_side) = (basis[e].flow, e, on_row_side);
                }
            }
        }
        for side in [&side_row, &side_col] {
            for (k, &e) in side.iter().enumerate() {
                if k % 2 == 0 {
                    basis[e].flow -= theta;
                } else {
                    basis[e].flow += theta;
                }
            }
        }
        // the leaving cell cuts off the subtree holding one end of the entering cell (its row if
        // the leaving cell was on the row's side of the cycle); that subtree is hung again from the
        // entering cell, and only its duals, parents and depths change
        let out = basis[leaving];
        let below = if tree.parent_cell[out.row] == leaving as u32 {
            out.row
        } else {
            n + out.col
        };
        basis[leaving] = Cell {
            row: enter_row,
            col: enter_col,
            flow: theta,
        };
        let (cut, anchor) = if leaving_on_row_side {
            (enter_row, n + enter_col)
        } else {
            (n + enter_col, enter_row)
        };
        tree.hang(cut, below, anchor, leaving, cost[enter_row * m + enter_col]);
        #[cfg(test)]
        tree.check(&basis, cost, m);
    }
}

/// The entering cell by block pricing: rows are priced in turn from `start` (where the last pricing
/// stopped), `PRICING_BLOCK` at a time, and the most negative reduced cost c_ij − u_i − v_j below
/// `−tolerance` of the first block that has one enters; `None` when no row has one (optimal). Each
/// row's minimum is taken in four independent lanes, which the compiler vectorises, and its column
/// only for a row that beats the best so far.
#[inline(always)]
fn entering_cell(
    cost: &[f64],
    u: &[f64],
    v: &[f64],
    tolerance: f64,
    start: &mut usize,
) -> Option<(usize, usize)> {
    let m = v.len();
    let n = u.len();
    let (mut best, mut best_row, mut best_raw) = (-tolerance, NONE, 0.0);
    let mut scanned = 0;
    let mut i = *start;
    let pick = |a: f64, b: f64| if b < a { b } else { a };
    while scanned < n {
        // min_j (c_ij − v_j) − u_i: one subtraction per cell, u_i once per row
        let row = &cost[i * m..(i + 1) * m];
        let mut lanes = [f64::INFINITY; 4];
        let body = m / 4 * 4;
        for (c4, v4) in row[..body].chunks_exact(4).zip(v[..body].chunks_exact(4)) {
            for k in 0..4 {
                lanes[k] = pick(lanes[k], c4[k] - v4[k]);
            }
        }
        let mut row_min = pick(pick(lanes[0], lanes[1]), pick(lanes[2], lanes[3]));
        for j in body..m {
            row_min = pick(row_min, row[j] - v[j]);
        }
        let reduced = row_min - u[i];
        if reduced < best {
            (best, best_row, best_raw) = (reduced, i, row_min);
        }
        scanned += 1;
        i = if i + 1 == n { 0 } else { i + 1 };
        if best_row != NONE && scanned % PRICING_BLOCK == 0 {
            break;
        }
    }
    *start = i;
    if best_row == NONE {
        return None;
    }
    // the best row's column: its first cell at the row's minimum c_ij − v_j (the same subtraction)
    let row = &cost[best_row * m..(best_row + 1) * m];
    let j = (0..m)
        .find(|&j| row[j] - v[j] == best_raw)
        .expect("the minimum is in the row");
    Some((best_row, j))
}

/// The basis tree over the n row nodes (0..n) and m column nodes (n..n+m), hung from row 0: each
/// node's parent, the cell to it, its depth, its dual (`dual[..n]` is u, `dual[n..]` is v; u_0 = 0
/// and u_i + v_j = c_ij on every basic cell), and the preorder as a cyclic thread (`thread[x]` is
/// the node after x, `before[x]` the node before; the last node leads back to the root), so that a
/// subtree is the run of nodes after its top that lie deeper than it (Bradley, Brown & Graves'
/// augmented threaded index; Ahuja, Magnanti & Orlin, "Network Flows", §11.3).
struct Tree {
    parent: Vec<u32>,
    parent_cell: Vec<u32>,
    depth: Vec<u32>,
    dual: Vec<f64>,
    thread: Vec<u32>,
    before: Vec<u32>,
    /// +1 for a row node, −1 for a column node.
    kind: Vec<f64>,
    stem: Vec<u32>,
}

/// No node (the root's parent).
const NO_NODE: u32 = u32::MAX;

impl Tree {
    /// The tree of `basis`, hung from row 0 with every dual computed from the costs.
    fn new(n: usize, m: usize, basis: &[Cell], cost: &[f64]) -> Self {
        let nodes = n + m;
        // neighbour lists, for this depth-first walk only
        let mut start = vec![0usize; nodes + 1];
        for cell in basis {
            start[cell.row + 1] += 1;
            start[n + cell.col + 1] += 1;
        }
        for k in 0..nodes {
            start[k + 1] += start[k];
        }
        let mut fill = start.clone();
        let mut adjacent = vec![(0u32, 0u32); 2 * basis.len()];
        for (e, cell) in basis.iter().enumerate() {
            for (a, b) in [(cell.row, n + cell.col), (n + cell.col, cell.row)] {
                adjacent[fill[a]] = (b as u32, e as u32);
                fill[a] += 1;
            }
        }
        let mut tree = Tree {
            parent: vec![NO_NODE; nodes],
            parent_cell: vec![NO_NODE; nodes],
            depth: vec![0; nodes],
            dual: vec![0.0; nodes],
            thread: vec![0; nodes],
            before: vec![0; nodes],
            kind: (0..nodes).map(|x| if x < n { 1.0 } else { -1.0 }).collect(),
            stem: Vec::with_capacity(nodes),
        };
        // depth-first from row 0: each child's dual from its parent's and the cell's cost; the
        // order nodes leave the stack is a preorder
        let mut stack = vec![0u32];
        let mut last = NO_NODE;
        while let Some(node) = stack.pop() {
            let node = node as usize;
            if last != NO_NODE {
                tree.thread[last as usize] = node as u32;
                tree.before[node] = last;
            }
            last = node as u32;
            for &(child, e) in &adjacent[start[node]..start[node + 1]] {
                if child == tree.parent[node] {
                    continue;
                }
                let cell = &basis[e as usize];
                let c = child as usize;
                tree.parent[c] = node as u32;
                tree.parent_cell[c] = e;
                tree.depth[c] = tree.depth[node] + 1;
                tree.dual[c] = cost[cell.row * m + cell.col] - tree.dual[node];
                stack.push(child);
            }
        }
        tree.thread[last as usize] = 0;
        tree.before[0] = last;
        tree
    }

    /// Cuts the subtree of `below` (whose cell to its parent left the basis) and hangs it again
    /// from `anchor` through the entering cell `via` (costing `via_cost`), rooted at `top`, the
    /// entering cell's end inside it. Parents reverse along the stem from `top` up to `below`; the
    /// subtree is walked once along the thread, in the new preorder (each stem node's own part
    /// after the part below it), every depth moving by its stem node's change and every dual by one
    /// shift (the subtree's own cells keep u_i + v_j = c_ij), so no cost is read but the joining one.
    #[inline(always)]
    fn hang(&mut self, top: usize, below: usize, anchor: usize, via: usize, via_cost: f64) {
        let shift = (via_cost - self.dual[anchor] - self.dual[top]) * self.kind[top];
        self.stem.clear();
        let mut s = top;
        self.stem.push(s as u32);
        while s != below {
            s = self.parent[s] as usize;
            self.stem.push(s as u32);
        }
        let before_below = self.before[below];
        let base_depth = self.depth[anchor] + 1;
        let (thread, before, depth, dual, kind) = (
            &mut self.thread[..],
            &mut self.before[..],
            &mut self.depth[..],
            &mut self.dual[..],
            &self.kind[..],
        );
        // the walk: stem node i's part is its old subtree without stem node i − 1's, which the
        // thread skips over (from the node before it to the node after it)
        let (mut skip_from, mut skip_to) = (NO_NODE, NO_NODE);
        let mut last = NO_NODE;
        let mut after = NO_NODE;
        for (i, &s) in self.stem.iter().enumerate() {
            let s = s as usize;
            if i > 0 {
                thread[last as usize] = s as u32;
                before[s] = last;
            }
            let old_depth = depth[s];
            let delta = (base_depth + i as u32).wrapping_sub(old_depth);
            let mut x = s;
            loop {
                depth[x] = depth[x].wrapping_add(delta);
                dual[x] += shift * kind[x];
                let mut y = thread[x];
                if y == skip_from {
                    thread[x] = skip_to;
                    before[skip_to as usize] = x as u32;
                    y = skip_to;
                }
                if depth[y as usize] <= old_depth {
                    (last, after) = (x as u32, y);
                    break;
                }
                x = y as usize;
            }
            (skip_from, skip_to) = (s as u32, after);
        }
        // out of the old place, in as the anchor's first child
        thread[before_below as usize] = after;
        before[after as usize] = before_below;
        let next = thread[anchor];
        thread[anchor] = top as u32;
        before[top] = anchor as u32;
        thread[last as usize] = next;
        before[next as usize] = last;
        // parents and their cells reverse along the stem
        let mut cell = via as u32;
        let mut up = anchor as u32;
        for &s in &self.stem {
            let s = s as usize;
            let old_cell = self.parent_cell[s];
            self.parent[s] = up;
            self.parent_cell[s] = cell;
            (up, cell) = (s as u32, old_cell);
        }
    }
}

#[cfg(test)]
impl Tree {
    /// Panics unless the thread is a preorder of the parent links, every depth is its parent's + 1,
    /// each parent cell joins the node to its parent, and every basic cell is tight.
    fn check(&self, basis: &[Cell], cost: &[f64], m: usize) {
        let nodes = self.parent.len();
        let n = nodes - m;
        let mut order = vec![0usize];
        let mut x = self.thread[0] as usize;
        while x != 0 {
            assert!(
                order.len() < nodes,
                "the thread does not return to the root"
            );
            order.push(x);
            x = self.thread[x] as usize;
        }
        assert_eq!(order.len(), nodes, "the thread misses nodes");
        for (k, &x) in order.iter().enumerate() {
            assert_eq!(self.before[self.thread[x] as usize] as usize, x);
            if x != 0 {
                let p = self.parent[x] as usize;
                assert_eq!(self.depth[x], self.depth[p] + 1, "depth of node {x}");
                let cell = basis[self.parent_cell[x] as usize];
                let (r, c) = if x < n { (x, p - n) } else { (p, x - n) };
                assert_eq!((cell.row, cell.col), (r, c), "parent cell of node {x}");
            }
            // the nodes after x deeper than it are exactly its descendants
            let is_descendant = |mut y: usize| {
                while y != 0 && y != x {
                    y = self.parent[y] as usize;
                }
                y == x
            };
            let run = order[k + 1..]
                .iter()
                .take_while(|&&y| self.depth[y] > self.depth[x])
                .count();
            let descendants = order
                .iter()
                .filter(|&&y| y != x && is_descendant(y))
                .count();
            assert_eq!(
                run, descendants,
                "subtree of node {x} is not one run of the thread"
            );
            assert!(order[k + 1..k + 1 + run].iter().all(|&y| is_descendant(y)));
        }
        for cell in basis {
            let reduced =
                cost[cell.row * m + cell.col] - self.dual[cell.row] - self.dual[n + cell.col];
            assert!(
                reduced.abs() < 1e-9,
                "basic cell ({}, {}) not tight",
                cell.row,
                cell.col
            );
        }
    }
}

/// A basic cell and its flow.
#[derive(Debug, Clone, Copy)]
struct Cell {
    row: usize,
    col: usize,
    flow: f64,
}

/// The start, and the largest cost magnitude (read in the same pass): rows in turn ship to their
/// cheapest open column until empty, "cheapest" measured against each column's own minimum
/// (c_ij − min_k c_kj, which took 40.6 pivots instead of 43.3 on the bench's 25 × 25 problems), a
/// column closing when its demand is met (the row closes first when both run out at once); the last
/// row, or every row left once a single column is open, takes the rest. Each step closes exactly
/// one line, so the n + m − 1 cells form a spanning tree. (Vogel's start, tried first, saved a third
/// of the pivots but cost more than they did: 29 µs against 21.8 µs per 25 × 25 problem here, both
/// with full pricing; rows taken in order of their regret, the gap between their two cheapest
/// columns, measured 11.5 against 10.3 µs.)
fn row_greedy_start(supply: &[f64], demand: &[f64], cost: &[f64]) -> (Vec<Cell>, f64) {
    let (n, m) = (supply.len(), demand.len());
    let mut supply = supply.to_vec();
    let mut demand = demand.to_vec();
    let mut basis = Vec::with_capacity(n + m - 1);
    // −(the column's minimum) for an open column, +∞ for a closed one: added to costs, closed cells
    // are never cheapest
    let mut col_mask = vec![f64::INFINITY; m];
    let mut col_magnitude = vec![0.0f64; m];
    for row in cost.chunks_exact(m) {
        for j in 0..m {
            let c = row[j];
            col_mask[j] = if c < col_mask[j] { c } else { col_mask[j] };
            col_magnitude[j] = if c.abs() > col_magnitude[j] {
                c.abs()
            } else {
                col_magnitude[j]
            };
        }
    }
    let c_max = col_magnitude.iter().fold(0.0f64, |a, &b| a.max(b));
    for x in col_mask.iter_mut() {
        *x = -*x;
    }
    let mut cols_left = m;
    for i in 0..n {
        // row i ships to its cheapest open columns until it is empty or one column is left
        while i < n - 1 && cols_left > 1 {
            let j = cheapest(&cost[i * m..(i + 1) * m], &col_mask);
            // the smaller side empties (to exactly 0: x - x is +0)
            let row_empties = supply[i] <= demand[j];
            let flow = if row_empties { supply[i] } else { demand[j] };
            basis.push(Cell {
                row: i,
                col: j,
                flow,
            });
            supply[i] -= flow;
            demand[j] -= flow;
            if row_empties {
                break;
            }
            col_mask[j] = f64::INFINITY;
            cols_left -= 1;
        }
        if i == n - 1 {
            for j in (0..m).filter(|&j| col_mask[j] != f64::INFINITY) {
                basis.push(Cell {
                    row: i,
                    col: j,
                    flow: demand[j],
                });
            }
            break;
        }
        if cols_left == 1 {
            let j = col_mask
                .iter()
                .position(|&c| c != f64::INFINITY)
                .expect("one open column");
            for (ii, &left) in supply.iter().enumerate().skip(i) {
                basis.push(Cell {
                    row: ii,
                    col: j,
                    flow: left,
                });
            }
            break;
        }
    }
    (basis, c_max)
}

/// The index of the cheapest open cell of one line (closed cells carry an infinite `mask`; its first
/// index on ties): the minimum and where it is, in four independent lanes (vectorised, no
/// unpredictable branch), then across the lanes.
fn cheapest(line: &[f64], mask: &[f64]) -> usize {
    let mut lanes = [f64::INFINITY; 4];
    let mut at = [0u64; 4];
    let body = line.len() / 4 * 4;
    for (k, (c4, m4)) in line[..body]
        .chunks_exact(4)
        .zip(mask[..body].chunks_exact(4))
        .enumerate()
    {
        for l in 0..4 {
            let x = c4[l] + m4[l];
            if x < lanes[l] {
                lanes[l] = x;
                at[l] = (4 * k + l) as u64;
            }
        }
    }
    let (mut best, mut best_at) = (f64::INFINITY, u64::MAX);
    for l in 0..4 {
        if lanes[l] < best || (lanes[l] == best && at[l] < best_at) {
            (best, best_at) = (lanes[l], at[l]);
        }
    }
    for (j, (&c, &closed)) in line[body..].iter().zip(&mask[body..]).enumerate() {
        if c + closed < best {
            (best, best_at) = (c + closed, (body + j) as u64);
        }
    }
    debug_assert!(best.is_finite(), "no open cell");
    best_at as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::philox::CounterRng;
    use crate::matching::emd_shortest_paths;

    fn random_problem(rng: &mut CounterRng, n: usize, m: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let supply: Vec<f64> = (0..n).map(|_| 0.05 + rng.unit_f32() as f64).collect();
        let demand: Vec<f64> = (0..m).map(|_| 0.05 + rng.unit_f32() as f64).collect();
        let scale = supply.iter().sum::<f64>() / demand.iter().sum::<f64>();
        let demand = demand.iter().map(|d| d * scale).collect();
        let cost = (0..n * m).map(|_| 2.0 * rng.unit_f32() as f64).collect();
        (supply, demand, cost)
    }

    fn total(flow: &[f64], cost: &[f64]) -> f64 {
        flow.iter().zip(cost).map(|(f, c)| f * c).sum()
    }

    #[test]
    fn the_simplex_reaches_the_shortest_path_optimum_without_the_fallback() {
        let mut rng = CounterRng::new(CounterRng::key_from("emd-simplex"), 0);
        for _ in 0..300 {
            let (n, m) = (1 + rng.below(30) as usize, 1 + rng.below(30) as usize);
            let (supply, demand, cost) = random_problem(&mut rng, n, m);
            let (flow, _, _) = solve(&supply, &demand, &cost, 20 * (n + m))
                .expect("random continuous weights do not cycle");
            let (reference, _, _) = emd_shortest_paths::solve(supply, demand, &cost);
            assert!((total(&flow, &cost) - total(&reference, &cost)).abs() < 1e-9);
        }
    }

    #[test]
    fn cheapest_skips_closed_cells_and_takes_the_first_of_ties() {
        let inf = f64::INFINITY;
        for m in 1..=13 {
            let mut rng = CounterRng::new(CounterRng::key_from("emd-cheapest"), m as u64);
            for _ in 0..50 {
                // few distinct values, so ties are common
                let line: Vec<f64> = (0..m).map(|_| rng.below(3) as f64).collect();
                let mut mask: Vec<f64> = (0..m)
                    .map(|_| if rng.below(3) == 0 { inf } else { 0.0 })
                    .collect();
                let open = rng.below(m as u32) as usize;
                mask[open] = 0.0;
                let expected = (0..m)
                    .filter(|&j| mask[j] == 0.0)
                    .min_by(|&a, &b| line[a].total_cmp(&line[b]).then(a.cmp(&b)))
                    .unwrap();
                assert_eq!(cheapest(&line, &mask), expected, "{line:?} {mask:?}");
            }
        }
    }

    #[test]
    fn the_start_is_a_feasible_spanning_tree() {
        let mut rng = CounterRng::new(CounterRng::key_from("emd-start"), 0);
        for _ in 0..100 {
            let (n, m) = (1 + rng.below(12) as usize, 1 + rng.below(12) as usize);
            let (supply, demand, cost) = random_problem(&mut rng, n, m);
            let (basis, _) = row_greedy_start(&supply, &demand, &cost);
            assert_eq!(basis.len(), n + m - 1);
            let mut rows = vec![0.0; n];
            let mut cols = vec![0.0; m];
            // union-find over the n + m nodes: n + m − 1 cells without a cycle span them
            let mut root: Vec<usize> = (0..n + m).collect();
            fn find(root: &mut [usize], k: usize) -> usize {
                if root[k] == k {
                    k
                } else {
                    let r = find(root, root[k]);
                    root[k] = r;
                    r
                }
            }
            for cell in &basis {
                assert!(cell.flow >= 0.0);
                rows[cell.row] += cell.flow;
                cols[cell.col] += cell.flow;
                let (a, b) = (find(&mut root, cell.row), find(&mut root, n + cell.col));
                assert_ne!(a, b, "the start's cells close a cycle");
                root[a] = b;
            }
            for i in 0..n {
                assert!((rows[i] - supply[i]).abs() < 1e-9);
            }
            for j in 0..m {
                assert!((cols[j] - demand[j]).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn the_pivot_limit_hands_the_problem_back() {
        let mut rng = CounterRng::new(CounterRng::key_from("emd-limit"), 0);
        let mut handed_back = 0;
        for _ in 0..20 {
            let (supply, demand, cost) = random_problem(&mut rng, 25, 25);
            if solve(&supply, &demand, &cost, 0).is_none() {
                handed_back += 1;
            }
        }
        // the greedy start is rarely optimal on 25 × 25 random problems
        assert!(handed_back > 10, "{handed_back}");
    }
}
