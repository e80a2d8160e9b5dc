//! The files of a run folder (`runs/<cell hash>/`): the one place their names are spelled. Training
//! writes the first five, evaluation the episodes and summary (with a suffix for the other
//! evaluations: [`episodes`], [`eval`]), the trainer and `fewshot cell` the phases (training time at
//! each commit, evaluation time after it), `fewshot cell` the lock, `reproduce` the log.
//! A leaf module: training, evaluation, reports, `run_folders` and xtask all name these files.

/// The cell's config as it ran.
pub const CELL: &str = "cell.toml";
/// A copy of the training state (the checkpoint holds the state it was written with).
pub const STATE: &str = "state.json";
/// Weights, momentum and training state, committed as one rename after every epoch.
pub const CHECKPOINT_LAST: &str = "checkpoint-last.safetensors";
/// The weights of the best validation accuracy.
pub const CHECKPOINT_BEST: &str = "checkpoint-best.safetensors";
/// The weights of an epoch that beat the best, from before that epoch's commit until the rename to
/// [`CHECKPOINT_BEST`] right after it; `epochs_done` counts that epoch.
pub fn pending_best(epochs_done: usize) -> String {
    format!("{PENDING_BEST}{epochs_done}.safetensors")
}

/// The `epochs_done` of a [`pending_best`] file name (None for any other name).
pub fn pending_best_epochs(name: &str) -> Option<usize> {
    let n = name
        .strip_prefix(PENDING_BEST)?
        .strip_suffix(".safetensors")?;
    n.parse().ok()
}

const PENDING_BEST: &str = "checkpoint-best-pending-after-";

/// Whether a [`pending_best`] file waits in the run folder `dir` (a kill cut its run off between the
/// commit and the publication; the resume or an evaluation publishes it).
pub fn has_pending_best(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| pending_best_epochs(&e.file_name().to_string_lossy()).is_some())
    })
}

/// One JSON line per epoch, written before the epoch's commit (so a kill between them repeats an
/// epoch's line: readers keep its last).
pub const TRAIN_LOG: &str = "train-log.jsonl";
/// The test evaluation's per-episode accuracies and losses (`eval::episode_file`).
pub const EPISODES: &str = "episodes.jsonl";
/// The test evaluation's summary and provenance.
pub const EVAL: &str = "eval.json";
/// Seconds per phase (train, eval) and the device.
pub const PHASES: &str = "phases.json";
/// Held (flock) while a process works in the folder.
pub const LOCK: &str = ".lock";
/// The output of the process `reproduce` ran for the cell.
pub const REPRODUCE_LOG: &str = "reproduce.log";
/// What a Slurm task writes into its run folder (and the report job into the submission folder):
/// `running`, `done` or `failed <code>`, then its job id and host (`cargo xtask reproduce --executor slurm`).
pub const SLURM_STATUS: &str = "slurm-status";

/// The per-episode file of an evaluation with `suffix` ("" for the test evaluation).
pub fn episodes(suffix: &str) -> String {
    format!("episodes{suffix}.jsonl")
}

/// The summary of an evaluation with `suffix` ("" for the test evaluation).
pub fn eval(suffix: &str) -> String {
    format!("eval{suffix}.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_best_checkpoint_names_its_epoch_count() {
        assert_eq!(pending_best_epochs(&pending_best(7)), Some(7));
        assert_eq!(pending_best_epochs(CHECKPOINT_BEST), None);
        assert_eq!(pending_best_epochs(CHECKPOINT_LAST), None);
    }
}
