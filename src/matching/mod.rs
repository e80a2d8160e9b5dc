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
