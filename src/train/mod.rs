//! Training: the few-shot model (backbone + head + base-class classifier), its seeded
//! initialisation, SGD with Nesterov momentum and weight decay, checkpoints that resume exactly, and
//! the episodic loop with the authors' auxiliary losses.

pub mod checkpoint;
pub mod episode_batch;
pub mod init;
pub mod model;
pub mod optimizer;
pub mod run_context;
pub mod trainer;
