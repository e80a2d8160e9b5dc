//! The files of a run folder (`runs/<cell hash>/`): the one place their names are spelled. Training
//! writes the first five, evaluation the episodes and summary (with a suffix for the other
//! evaluations: [`episodes`], [`eval`]), `fewshot cell` the phases and the lock, `reproduce` the log.
//! A leaf module: training, evaluation, reports, `run_folders` and xtask all name these files.

/// The cell's config as it ran.
pub const CELL: &str = "cell.toml";
/// A copy of the training state (the checkpoint holds the state it was written with).
pub const STATE: &str = "state.json";
/// Weights, momentum and training state, committed as one rename after every epoch.
pub const CHECKPOINT_LAST: &str = "checkpoint-last.safetensors";
/// The weights of the best validation accuracy.
pub const CHECKPOINT_BEST: &str = "checkpoint-best.safetensors";
/// One JSON line per epoch.
pub const TRAIN_LOG: &str = "train-log.jsonl";
/// The test evaluation's per-episode accuracies.
pub const EPISODES: &str = "episodes.jsonl";
/// The test evaluation's summary and provenance.
pub const EVAL: &str = "eval.json";
/// Seconds per phase (train, eval) and the device.
pub const PHASES: &str = "phases.json";
/// Held (flock) while a process works in the folder.
pub const LOCK: &str = ".lock";
/// The output of the process `reproduce` ran for the cell.
pub const REPRODUCE_LOG: &str = "reproduce.log";

/// The per-episode file of an evaluation with `suffix` ("" for the test evaluation).
pub fn episodes(suffix: &str) -> String {
    format!("episodes{suffix}.jsonl")
}

/// The summary of an evaluation with `suffix` ("" for the test evaluation).
pub fn eval(suffix: &str) -> String {
    format!("eval{suffix}.json")
}
