//! What training and evaluation share, below both: the few-shot model (backbone + head + base-class
//! classifier) and its seeded initialisation, SGD with Nesterov momentum and weight decay (its state
//! is part of a checkpoint), checkpoints that resume exactly, a cell's data and run paths, and the
//! episode batches built from stores with the cell's transforms.

pub mod checkpoint;
pub mod episode_batch;
pub mod fast_ops_check;
pub mod few_shot;
pub mod init;
pub mod optimizer;
pub mod run_context;
pub mod sgd_update_ops;
