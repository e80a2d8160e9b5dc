//! Matching on cost matrices, plain f32 slices in and assignments/flows out, solved on the host in
//! batches (rayon): the exact assignment LWFM-SPM's SPM needs (one per query × support × layer) and
//! the exact weighted EMD of the DeepEMD-style head. Gradients never flow through these: the heads
//! gather features by the returned indices or weight similarities by the returned flows.

pub mod assignment;
pub mod emd;
mod emd_shortest_paths;
mod emd_simplex;
pub mod small_assignment;

pub use assignment::{assign_batch, assign_one, ASSIGNMENT_SCALE};
pub use emd::{emd_batch, emd_flow, emd_flow_with_prices, EmdProblem};
pub use small_assignment::{assign_small, MAX_N};

/// Asserts that a row-major `supply.len() × demand.len()` transport plan sends each source its
/// supply (within `row_tol`) and each sink its demand (within `col_tol`); `what` leads the message.
#[cfg(test)]
pub(crate) fn assert_marginals(
    plan: &[f64],
    supply: &[f64],
    demand: &[f64],
    (row_tol, col_tol): (f64, f64),
    what: &str,
) {
    let m = demand.len();
    for (i, s) in supply.iter().enumerate() {
        let row: f64 = plan[i * m..(i + 1) * m].iter().sum();
        assert!((row - s).abs() < row_tol, "{what}, row {i}: {row} vs {s}");
    }
    for (j, d) in demand.iter().enumerate() {
        let col: f64 = (0..supply.len()).map(|i| plan[i * m + j]).sum();
        assert!(
            (col - d).abs() < col_tol,
            "{what}, column {j}: {col} vs {d}"
        );
    }
}
