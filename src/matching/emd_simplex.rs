//! The transportation simplex for the EMD (the u–v or MODI method; Dantzig, "Linear Programming and
//! Extensions", ch. 15; Hillier & Lieberman, "Introduction to Operations Research", §9.2): a basis is
//! a spanning tree of n + m − 1 cells over the row and column nodes. Start: a row-greedy feasible
//! tree. Pivot: the entering cell by block pricing of reduced costs c_ij − u_i − v_j, the tree path
//! between its row and column closes the cycle, the smallest flow on the cycle's losing cells leaves,
//! and only the subtree that the leaving cell cut off is re-hung (its parents and depths set again,
//! its duals shifted by one amount), with every node's neighbours kept in fixed-capacity lists, so
//! nothing is rebuilt per pivot. At the end every reduced cost is ≥ 0 and every cell with flow is basic (reduced cost 0):
//! the duals certify the optimum. Degenerate pivots can cycle in principle, hence the caller's pivot
//! limit.

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
    let mut basis = row_greedy_start(supply, demand, cost);
    debug_assert_eq!(basis.len(), n + m - 1);
    let c_max = cost.iter().fold(0.0f64, |a, &c| a.max(c.abs()));
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
        tree.unlink(leaving, out.row, n + out.col);
        basis[leaving] = Cell {
            row: enter_row,
            col: enter_col,
            flow: theta,
        };
        tree.link(leaving, enter_row, n + enter_col);
        let (cut, anchor) = if leaving_on_row_side {
            (enter_row, n + enter_col)
        } else {
            (n + enter_col, enter_row)
        };
        tree.hang(cut, anchor, leaving, cost[enter_row * m + enter_col]);
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
    let (mut best, mut best_row) = (-tolerance, NONE);
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
            (best, best_row) = (reduced, i);
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
    // the best row's column: its first cell at the row's minimum, priced the same way
    let row = &cost[best_row * m..(best_row + 1) * m];
    let row_min = row
        .iter()
        .zip(v)
        .fold(f64::INFINITY, |a, (c, vj)| pick(a, c - vj));
    let j = (0..m)
        .find(|&j| row[j] - v[j] == row_min)
        .expect("the minimum is in the row");
    Some((best_row, j))
}

/// The basis tree over the n row nodes (0..n) and m column nodes (n..n+m): each node's neighbours
/// (the node across each incident basic cell, and the cell), and, hung from row 0, each node's
/// parent, the cell to it, its depth and its dual (`dual[..n]` is u, `dual[n..]` is v; u_0 = 0 and
/// u_i + v_j = c_ij on every basic cell).
struct Tree {
    n: usize,
    capacity: usize,
    neighbours: Vec<(u32, u32)>,
    degree: Vec<u32>,
    parent: Vec<u32>,
    parent_cell: Vec<u32>,
    depth: Vec<u32>,
    dual: Vec<f64>,
    stack: Vec<u32>,
}

/// No node (the root's parent).
const NO_NODE: u32 = u32::MAX;

impl Tree {
    /// The tree of `basis`, hung from row 0 with every dual computed from the costs.
    fn new(n: usize, m: usize, basis: &[Cell], cost: &[f64]) -> Self {
        let nodes = n + m;
        let capacity = n.max(m);
        let mut tree = Tree {
            n,
            capacity,
            neighbours: vec![(NO_NODE, NO_NODE); nodes * capacity],
            degree: vec![0; nodes],
            parent: vec![NO_NODE; nodes],
            parent_cell: vec![NO_NODE; nodes],
            depth: vec![0; nodes],
            dual: vec![0.0; nodes],
            stack: vec![0; nodes],
        };
        for (e, cell) in basis.iter().enumerate() {
            tree.link(e, cell.row, n + cell.col);
        }
        // depth-first from row 0: each child's dual from its parent's and the cell's cost
        let mut len = 1;
        tree.stack[0] = 0;
        while len > 0 {
            len -= 1;
            let node = tree.stack[len] as usize;
            let list = node * capacity..node * capacity + tree.degree[node] as usize;
            for k in list {
                let (child, e) = tree.neighbours[k];
                if child == tree.parent[node] {
                    continue;
                }
                let cell = &basis[e as usize];
                tree.parent[child as usize] = node as u32;
                tree.parent_cell[child as usize] = e;
                tree.depth[child as usize] = tree.depth[node] + 1;
                tree.dual[child as usize] = cost[cell.row * m + cell.col] - tree.dual[node];
                tree.stack[len] = child;
                len += 1;
            }
        }
        tree
    }

    fn link(&mut self, e: usize, row_node: usize, col_node: usize) {
        for (k, other) in [(row_node, col_node), (col_node, row_node)] {
            self.neighbours[k * self.capacity + self.degree[k] as usize] = (other as u32, e as u32);
            self.degree[k] += 1;
        }
    }

    fn unlink(&mut self, e: usize, row_node: usize, col_node: usize) {
        for k in [row_node, col_node] {
            let last = self.degree[k] as usize - 1;
            let list = &mut self.neighbours[k * self.capacity..k * self.capacity + last + 1];
            let at = list
                .iter()
                .position(|&(_, cell)| cell == e as u32)
                .expect("a basic cell");
            list.swap(at, last);
            self.degree[k] -= 1;
        }
    }

    /// Hangs the subtree of `top` (cut off from the root's side) from `anchor` through the basic
    /// cell `via` costing `via_cost`: parents are reversed along the old path, every depth below
    /// `top` is set again, and the subtree's duals all shift by one amount (the subtree's own cells
    /// keep u_i + v_j = c_ij), so no cost is read but the joining one.
    #[inline(always)]
    fn hang(&mut self, top: usize, anchor: usize, via: usize, via_cost: f64) {
        let (n, capacity) = (self.n, self.capacity);
        let neighbours = &self.neighbours[..];
        let degree = &self.degree[..];
        let parent = &mut self.parent[..];
        let parent_cell = &mut self.parent_cell[..];
        let depth = &mut self.depth[..];
        let dual = &mut self.dual[..];
        let stack = &mut self.stack[..];
        let shift = via_cost - dual[anchor] - dual[top];
        // nodes of top's kind (rows or columns) move by +shift, the others by −shift
        let top_is_row = top < n;
        parent[top] = anchor as u32;
        parent_cell[top] = via as u32;
        depth[top] = depth[anchor] + 1;
        dual[top] += shift;
        stack[0] = top as u32;
        let mut len = 1;
        while len > 0 {
            len -= 1;
            let node = stack[len] as usize;
            let (up, below) = (parent[node], depth[node] + 1);
            // the children are of the other kind
            let child_shift = if (node < n) == top_is_row {
                -shift
            } else {
                shift
            };
            let start = node * capacity;
            for &(child, e) in &neighbours[start..start + degree[node] as usize] {
                if child == up {
                    continue;
                }
                let c = child as usize;
                parent[c] = node as u32;
                parent_cell[c] = e;
                depth[c] = below;
                dual[c] += child_shift;
                stack[len] = child;
                len += 1;
            }
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

/// The start: rows in turn ship to their cheapest open column until empty, a column closing when
/// its demand is met (the row closes first when both run out at once); the last row, or every row
/// left once a single column is open, takes the rest. Each step closes exactly one line, so the
/// n + m − 1 cells form a spanning tree. (Vogel's start, tried first, saved a third of the pivots but
/// cost more than they did: 29 µs against 21.8 µs per 25 × 25 problem here, both with full pricing.)
fn row_greedy_start(supply: &[f64], demand: &[f64], cost: &[f64]) -> Vec<Cell> {
    let (n, m) = (supply.len(), demand.len());
    let mut supply = supply.to_vec();
    let mut demand = demand.to_vec();
    let mut basis = Vec::with_capacity(n + m - 1);
    // 0 for an open column, +∞ for a closed one: added to costs, closed cells are never cheapest
    let mut col_mask = vec![0.0f64; m];
    let mut cols_left = m;
    for i in 0..n {
        // row i ships to its cheapest open columns until it is empty or one column is left
        while i < n - 1 && cols_left > 1 {
            let j = cheapest(&cost[i * m..(i + 1) * m], &col_mask);
            if supply[i] <= demand[j] {
                basis.push(Cell {
                    row: i,
                    col: j,
                    flow: supply[i],
                });
                demand[j] -= supply[i];
                supply[i] = 0.0;
                break;
            }
            basis.push(Cell {
                row: i,
                col: j,
                flow: demand[j],
            });
            supply[i] -= demand[j];
            demand[j] = 0.0;
            col_mask[j] = f64::INFINITY;
            cols_left -= 1;
        }
        if i == n - 1 {
            for j in (0..m).filter(|&j| col_mask[j] == 0.0) {
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
                .position(|&c| c == 0.0)
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
    basis
}

/// The index of the cheapest open cell of one line (closed cells carry an infinite `mask`): the
/// minimum in four independent lanes (vectorised, no unpredictable branch), then its first index.
fn cheapest(line: &[f64], mask: &[f64]) -> usize {
    let pick = |a: f64, b: f64| if b < a { b } else { a };
    let mut lanes = [f64::INFINITY; 4];
    let body = line.len() / 4 * 4;
    for (c4, m4) in line[..body]
        .chunks_exact(4)
        .zip(mask[..body].chunks_exact(4))
    {
        for k in 0..4 {
            lanes[k] = pick(lanes[k], c4[k] + m4[k]);
        }
    }
    let mut best = pick(pick(lanes[0], lanes[1]), pick(lanes[2], lanes[3]));
    for (&c, &closed) in line[body..].iter().zip(&mask[body..]) {
        best = pick(best, c + closed);
    }
    line.iter()
        .zip(mask)
        .position(|(&c, &closed)| c + closed == best)
        .expect("an open cell")
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
    fn the_start_is_a_feasible_spanning_tree() {
        let mut rng = CounterRng::new(CounterRng::key_from("emd-start"), 0);
        for _ in 0..100 {
            let (n, m) = (1 + rng.below(12) as usize, 1 + rng.below(12) as usize);
            let (supply, demand, cost) = random_problem(&mut rng, n, m);
            let basis = row_greedy_start(&supply, &demand, &cost);
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
