//! Training: the episodic loop with the authors' auxiliary losses and the base-class pre-training
//! stage, on the model, checkpoints and batches of [`crate::model`]; validation runs through
//! [`crate::eval`] (training may call evaluation; evaluation never imports training).

pub mod trainer;
