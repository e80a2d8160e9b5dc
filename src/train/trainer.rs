//! The episodic training loop of one cell (METHOD.md §5–6): per step one training episode (support and
//! query through the backbone together) and, if configured, one auxiliary base-class batch through it
//! separately; loss = λ·CE(episode) + CE(fc(GAP(aux))) + CE(fc(attended queries)) (the last for
//! LWFM-SPM); gradient clipping; SGD with Nesterov momentum and weight decay; MultiStepLR per epoch;
//! validation on the frozen validation episodes after each epoch, keeping the best checkpoint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor, Var, D};
use serde::Serialize;

use crate::atomic_write::write_json;
use crate::data::episodes::{EpisodeSampler, EpisodeSpec, SplitIndex};
use crate::data::store::Store;
use crate::data::transforms::Transform;
use crate::error::{Error, Result};
use crate::eval::runner::{evaluate, summarise};
use crate::manifest::cell::{CellConfig, PretrainConfig};
use crate::model::checkpoint::{self, TrainState};
use crate::model::episode_batch::{base_class_batch, load_episode, slots_of, transforms};
use crate::model::few_shot::FewShotModel;
use crate::model::optimizer::Sgd;
use crate::model::run_context::{CellData, RunPaths};
use crate::progress::count_bar;
use crate::run_files as files;

/// What a training run did.
#[derive(Debug, Clone, Serialize)]
pub struct TrainOutcome {
    pub cell_hash: String,
    pub epochs_done: usize,
    pub global_step: u64,
    pub best_val: Option<f64>,
    pub best_epoch: Option<usize>,
    pub seconds_per_step: f64,
    /// Epochs (pre-training and episodic, its node's included) this call ran.
    pub epochs_run: usize,
    /// Pre-training epochs done and planned by this cell itself (0 and 0 unless it is a node).
    pub pretrain_epochs_done: usize,
    pub pretrain_epochs: usize,
}

#[derive(Serialize)]
struct EpochLog {
    epoch: usize,
    lr: f64,
    mean_loss: f64,
    val_accuracy: Option<f64>,
    seconds: f64,
    /// The commit the binary that ran this epoch was built from.
    commit: &'static str,
    /// The processor that ran it on the CPU (`threads::cpu_description`).
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu: Option<&'static str>,
}

fn c(e: candle_core::Error) -> Error {
    let text = e.to_string();
    if text.to_ascii_lowercase().contains("out of memory") {
        return Error::invalid(format!(
            "training ran out of device memory ({text}); lower episode.n_query, train.aux_batch, train.pretrain.batch or image_size in the cell config"
        ));
    }
    Error::invalid(format!("training failed: {text}"))
}

/// Learning rate of `epoch` under MultiStepLR: `base · gamma^(milestones passed)`.
pub fn multistep_lr(base: f64, gamma: f64, milestones: &[usize], epoch: usize) -> f64 {
    let passed = milestones.iter().filter(|&&m| m <= epoch).count();
    base * gamma.powi(passed as i32)
}

/// Trains `cell` (resuming from `runs/<hash>/` when a checkpoint is there). `stop_after_epochs`
/// ends the process's work early, as a kill would (used by the resume test).
pub fn train_cell(
    cell: &CellConfig,
    paths: &RunPaths,
    device: &Device,
    stop_after_epochs: Option<usize>,
) -> Result<TrainOutcome> {
    // the shared pre-training node first (its own run folder, resumed there), before this cell's
    // stores are opened
    if cell.is_pretrain_node() && crate::run_folders::pretrain_done(&paths.run_dir(cell)) {
        let state = read_state(&paths.run_dir(cell).join(files::STATE))?;
        return outcome(cell, &state, 0.0, 0);
    }
    // (a node written before d0f3750 differs from its own `pretrain_node()` in test_resize only)
    let node = cell.pretrain_node().filter(|_| !cell.is_pretrain_node());
    let mut epochs_before = 0;
    if let Some(node) = &node {
        // under the node's lock: cells that share a node and start at once (by hand, or a Slurm
        // job resubmitted without its dependency) train it once, one after the other finds it done
        let (held, _) = crate::run_lock::lock(&paths.run_dir(node))?;
        let pre = train_cell(node, paths, device, stop_after_epochs)?;
        drop(held);
        if pre.pretrain_epochs_done < pre.pretrain_epochs {
            return Ok(pre);
        }
        epochs_before = pre.epochs_run;
    }
    let mut run = Run::open(cell, paths, device, epochs_before)?;
    let index = SplitIndex::from_header(&run.data.train.header);
    let sampler = run.sampler(&index)?;
    if !run.resume()? {
        if let Some(node) = &node {
            run.start_from(node, paths)?;
        }
    }
    let stop = |run: &Run| stop_after_epochs.is_some_and(|n| run.epochs_this_run >= n);
    if let (Some(pre), None) = (&cell.train.pretrain, &node) {
        while run.state.pretrain_epochs_done < pre.epochs {
            if stop(&run) {
                return outcome(cell, &run.state, 0.0, run.epochs_this_run);
            }
            run.pretrain_epoch(pre)?;
        }
    }
    let started = Instant::now();
    let first_step = run.state.global_step;
    while run.state.epochs_done < cell.train.epochs && !stop(&run) {
        run.episodic_epoch(&sampler)?;
    }
    // a kill between the checkpoint's rename and the copy's leaves state.json an epoch behind
    write_json(&run.dir.join(files::STATE), &run.state)?;
    run.record_time()?;
    let steps = run.state.global_step - first_step;
    let per_step = if steps > 0 {
        started.elapsed().as_secs_f64() / steps as f64
    } else {
        0.0
    };
    outcome(cell, &run.state, per_step, run.epochs_this_run)
}

/// A training state as JSON (`state.json`).
fn read_state(path: &Path) -> Result<TrainState> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
}

/// One training run of a cell in its run folder: what it trains, with what, and where it stands.
struct Run<'a> {
    cell: &'a CellConfig,
    device: &'a Device,
    data: CellData,
    model: FewShotModel,
    /// The trained parameters by name (not the running statistics), sorted.
    params: Vec<(String, Var)>,
    sgd: Sgd,
    dir: PathBuf,
    state: TrainState,
    /// Epochs (pre-training and episodic, the node's included) this process ran.
    epochs_this_run: usize,
    /// Global class index of each training class (the absolute loss's labels).
    class_of: HashMap<String, u32>,
    train_transform: Transform,
    /// Since when the wall time not yet added to `phases.json` runs (each commit adds it, so a
    /// killed process loses at most the time since its last commit).
    unrecorded_since: std::cell::Cell<Instant>,
}

impl<'a> Run<'a> {
    /// Opens the cell's data, writes its config into the run folder and builds the model, at the
    /// start of training (`resume` and `start_from` move it on).
    fn open(
        cell: &'a CellConfig,
        paths: &RunPaths,
        device: &'a Device,
        epochs_before: usize,
    ) -> Result<Self> {
        let opened = Instant::now();
        let data = CellData::open(cell, paths)?;
        let dir = paths.run_dir(cell);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        crate::atomic_write::write_atomically(
            &dir.join(files::CELL),
            toml::to_string_pretty(cell)
                .expect("serialisable")
                .as_bytes(),
        )?;
        let model = data.model(cell, paths, device)?;
        let mut params: Vec<(String, Var)> = model
            .varmap
            .data()
            .lock()
            .expect("varmap lock")
            .iter()
            .filter(|(n, _)| !n.ends_with("running_mean") && !n.ends_with("running_var"))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let t = &cell.train;
        let sgd = Sgd::new(t.momentum, t.nesterov, t.weight_decay).on_path(cell.backbone.ops);
        let class_of = (data.train.header.classes.iter().enumerate())
            .map(|(i, c)| (c.name.clone(), i as u32))
            .collect();
        let state = TrainState {
            cell_hash: cell.hash(),
            pretrain_epochs_done: 0,
            epochs_done: 0,
            global_step: 0,
            best_val: None,
            best_epoch: None,
        };
        Ok(Self {
            cell,
            device,
            data,
            model,
            params,
            sgd,
            dir,
            state,
            epochs_this_run: epochs_before,
            class_of,
            train_transform: transforms(cell).1,
            unrecorded_since: std::cell::Cell::new(opened),
        })
    }

    /// The training episodes' sampler over `index` (the training store's).
    fn sampler<'i>(&self, index: &'i SplitIndex) -> Result<EpisodeSampler<'i>> {
        let e = &self.cell.episode;
        let spec = EpisodeSpec {
            n_way: e.n_way,
            n_shot: e.n_shot,
            n_query: e.n_query,
        };
        EpisodeSampler::new(&self.cell.dataset, "train", spec, self.cell.seed, index)
    }

    /// Loads the last committed checkpoint, if there is one: weights, momentum and state (the
    /// checkpoint holds the state it was written with, one rename committed both; `state.json` is
    /// read only for a checkpoint from before that).
    fn resume(&mut self) -> Result<bool> {
        let last = self.dir.join(files::CHECKPOINT_LAST);
        if !last.is_file() {
            return Ok(false);
        }
        self.state = match checkpoint::load(&last, &self.model, Some(&mut self.sgd))? {
            Some(state) => state,
            None => read_state(&self.dir.join(files::STATE))?,
        };
        checkpoint::settle_interrupted(&self.dir, &self.state)?;
        tracing::info!(
            "resuming {} after epoch {}",
            self.cell.hash(),
            self.state.epochs_done
        );
        Ok(true)
    }

    /// Starts from the pre-training node's weights. The starting point competes in model
    /// selection: its validation accuracy is the best so far (best_epoch None), so episodic epochs
    /// that only lose accuracy leave the pre-trained backbone as the cell's best checkpoint. The
    /// start is committed before the first episode.
    fn start_from(&mut self, node: &CellConfig, paths: &RunPaths) -> Result<()> {
        let from = paths.run_dir(node).join(files::CHECKPOINT_LAST);
        checkpoint::load_backbone(&from, &self.model)?;
        tracing::info!("starting from the pre-training node {}", node.hash());
        if self.cell.train.val_episodes > 0 {
            let started = Instant::now();
            let label = "validation of the starting point";
            let v = validation_accuracy(&self.model, &self.data, self.cell, label)?;
            self.state.best_val = Some(v);
            checkpoint::save(
                &self.dir.join(files::CHECKPOINT_BEST),
                &self.model,
                None,
                None,
            )?;
            let log = serde_json::json!({
                "stage": "start", "val_accuracy": v,
                "seconds": started.elapsed().as_secs_f64(),
                "commit": crate::git_state::BUILD_COMMIT,
            });
            crate::train_log::append(&self.dir.join(files::TRAIN_LOG), &log.to_string())?;
        }
        let last = self.dir.join(files::CHECKPOINT_LAST);
        checkpoint::save(&last, &self.model, Some(&self.sgd), Some(&self.state))
    }

    /// Weights, momentum and state as one rename, then the state's copy and the training time
    /// since the last commit (`phases.json`).
    fn commit(&self) -> Result<()> {
        let last = self.dir.join(files::CHECKPOINT_LAST);
        checkpoint::save(&last, &self.model, Some(&self.sgd), Some(&self.state))?;
        write_json(&self.dir.join(files::STATE), &self.state)?;
        self.record_time()
    }

    /// Adds the wall time since the last record to this folder's train phase: the time of a node's
    /// epochs goes to the node's folder, whichever process trained them.
    fn record_time(&self) -> Result<()> {
        let now = Instant::now();
        let seconds = (now - self.unrecorded_since.replace(now)).as_secs_f64();
        let device = crate::device::DeviceSpec::of(self.device).to_string();
        crate::run_folders::record_phase(
            &self.dir,
            crate::run_folders::Phase::Train,
            &device,
            seconds,
        )
    }

    /// Backward through `loss`, clipping, one SGD step at `lr`.
    fn step(&mut self, loss: &Tensor, lr: f64) -> Result<()> {
        let mut grads = loss.backward().map_err(c)?;
        Sgd::clip(&mut grads, &self.params, self.cell.train.grad_clip).map_err(c)?;
        self.sgd.step(&grads, &self.params, lr).map_err(c)
    }

    /// One pre-training epoch on base-class batches, committed and logged.
    fn pretrain_epoch(&mut self, pre: &PretrainConfig) -> Result<()> {
        let epoch = self.state.pretrain_epochs_done;
        let lr = multistep_lr(pre.lr, pre.gamma, &pre.milestones, epoch);
        let started = Instant::now();
        let label = format!("pre-training epoch {}/{}", epoch + 1, pre.epochs);
        let bar = count_bar(&label, pre.batches_per_epoch as u64);
        let transform = self.train_transform;
        let first = (epoch * pre.batches_per_epoch) as u64;
        let mut loss_sum = 0.0;
        for pre_step in first..first + pre.batches_per_epoch as u64 {
            let train = &self.data.train;
            let loss = base_class_loss(
                &self.model,
                train,
                pre.batch,
                "pretrain",
                pre_step,
                transform,
            )?;
            loss_sum += finite_loss(&loss, pre_step)?;
            self.step(&loss, lr)?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        self.state.pretrain_epochs_done += 1;
        self.epochs_this_run += 1;
        if self.state.pretrain_epochs_done == pre.epochs {
            // the episodic stage starts with fresh momentum, as a new optimiser would
            self.sgd.buffers.clear();
        }
        // the log line before the commit: a kill between them repeats the line with the epoch,
        // and readers keep an epoch's last line
        let mut log = serde_json::json!({
            "stage": "pretrain", "epoch": epoch, "lr": lr,
            "mean_loss": loss_sum / pre.batches_per_epoch.max(1) as f64,
            "seconds": started.elapsed().as_secs_f64(),
            "commit": crate::git_state::BUILD_COMMIT,
        });
        if let Some(cpu) = crate::threads::cpu_of(self.device) {
            log["cpu"] = cpu.into();
        }
        crate::train_log::append(&self.dir.join(files::TRAIN_LOG), &log.to_string())?;
        self.commit()
    }

    /// The loss of training step `step`: λ·CE of its episode, plus the auxiliary base-class batch's
    /// CE and the attended queries' absolute CE where configured.
    fn episode_loss(&self, sampler: &EpisodeSampler, step: u64) -> Result<Tensor> {
        let (cell, t, device) = (self.cell, &self.cell.train, self.device);
        let transform = self.train_transform;
        let episode = sampler.episode(step);
        let mut slots = slots_of(&self.data.train, &episode);
        if cell.sabotage == Some(crate::sabotage::Sabotage::ShuffleSupportLabels) {
            crate::data::frozen_episodes::shuffle_support(&mut slots);
        }
        let batch =
            load_episode(&self.data.train, &slots, transform, cell.seed, device).map_err(c)?;
        let out = self
            .model
            .episode(&batch.support, &batch.query, true)
            .map_err(c)?;
        let mut loss = (candle_nn::loss::cross_entropy(&out.logits, &batch.query_labels)
            .map_err(c)?
            * t.episode_loss_weight)
            .map_err(c)?;
        if t.aux_batch > 0 {
            let aux = base_class_loss(
                &self.model,
                &self.data.train,
                t.aux_batch,
                "aux",
                step,
                transform,
            )?;
            loss = (loss + aux).map_err(c)?;
        }
        if let (true, Some(attended)) = (t.absolute_loss, &out.attended_query) {
            let global: Vec<u32> = batch
                .query_labels_host
                .iter()
                .map(|&l| self.class_of[episode.classes[l].class.as_str()])
                .collect();
            let global =
                Tensor::from_vec(global, batch.query_labels_host.len(), device).map_err(c)?;
            let logits = self.model.classify(attended).map_err(c)?;
            let absolute = candle_nn::loss::cross_entropy(&logits, &global).map_err(c)?;
            loss = (loss + absolute).map_err(c)?;
        }
        Ok(loss)
    }

    /// One episodic epoch, then validation, the best checkpoint if it improved, the commit and
    /// the log line.
    fn episodic_epoch(&mut self, sampler: &EpisodeSampler) -> Result<()> {
        let (cell, t) = (self.cell, &self.cell.train);
        let epoch = self.state.epochs_done;
        let lr = multistep_lr(t.lr, t.gamma, &t.milestones, epoch);
        let started = Instant::now();
        let label = format!("{} epoch {}/{}", cell.head.name(), epoch + 1, t.epochs);
        let bar = count_bar(&label, t.episodes_per_epoch as u64);
        let mut loss_sum = 0.0;
        for _ in 0..t.episodes_per_epoch {
            let step = self.state.global_step;
            let loss = self.episode_loss(sampler, step)?;
            loss_sum += finite_loss(&loss, step)?;
            self.step(&loss, lr)?;
            self.state.global_step += 1;
            bar.inc(1);
        }
        bar.finish_and_clear();
        self.state.epochs_done += 1;
        self.epochs_this_run += 1;
        let val_accuracy = if t.val_episodes > 0 {
            Some(validation_accuracy(
                &self.model,
                &self.data,
                cell,
                "validation",
            )?)
        } else {
            None
        };
        let improved = match (val_accuracy, self.state.best_val) {
            (Some(v), Some(best)) => v > best,
            (Some(_), None) => true,
            (None, _) => true,
        };
        // a better epoch's weights go to a pending file, published right after the commit that
        // names them the best (`checkpoint::settle_interrupted` finishes a publication a kill cut off)
        let pending = if improved {
            self.state.best_val = val_accuracy;
            self.state.best_epoch = Some(epoch);
            let path = (self.dir).join(files::pending_best(self.state.epochs_done));
            checkpoint::save(&path, &self.model, None, None)?;
            Some(path)
        } else {
            None
        };
        let log = EpochLog {
            epoch,
            lr,
            mean_loss: loss_sum / t.episodes_per_epoch.max(1) as f64,
            val_accuracy,
            seconds: started.elapsed().as_secs_f64(),
            commit: crate::git_state::BUILD_COMMIT,
            cpu: crate::threads::cpu_of(self.device),
        };
        crate::train_log::append(
            &self.dir.join(files::TRAIN_LOG),
            &serde_json::to_string(&log).expect("plain struct"),
        )?;
        self.commit()?;
        if let Some(pending) = pending {
            checkpoint::publish_best(&self.dir, &pending)?;
        }
        tracing::info!(
            "epoch {epoch}: loss {:.4}, val {:?}",
            log.mean_loss,
            val_accuracy
        );
        Ok(())
    }
}

/// Mean accuracy on the first `train.val_episodes` frozen validation episodes (test transform).
fn validation_accuracy(
    model: &FewShotModel,
    data: &CellData,
    cell: &CellConfig,
    label: &str,
) -> Result<f64> {
    let n = cell.train.val_episodes.min(data.val_episodes.len());
    let records = evaluate(
        model,
        &data.val,
        &data.val_episodes[..n],
        transforms(cell).0,
        label,
    )
    .map_err(c)?;
    Ok(summarise(&records).mean)
}

/// Cross-entropy of `fc(backbone(x))` over the training classes on one base-class batch of `size`
/// images (step `step` of stream `stream`); `fc` reads the maps' global average, or a pre-training
/// node's maps flattened ([`CellConfig::classifier_positions`]).
fn base_class_loss(
    model: &FewShotModel,
    train: &Store,
    size: usize,
    stream: &str,
    step: u64,
    transform: Transform,
) -> Result<Tensor> {
    let (images, labels) = base_class_batch(
        train,
        size,
        model.config.seed,
        stream,
        step,
        transform,
        &model.device,
    )
    .map_err(c)?;
    let maps = model.features(&images, true).map_err(c)?.maps;
    let positions = model.classifier_positions();
    let pooled = if positions == 1 {
        maps.flatten_from(2)
            .map_err(c)?
            .mean(D::Minus1)
            .map_err(c)?
    } else {
        let (_, _, h, w) = maps.dims4().map_err(c)?;
        if h * w != positions {
            return Err(Error::invalid(format!(
                "train.pretrain.classifier_pool asks for {positions} positions, but the backbone's last block is {h}×{w} at image_size {}: set classifier_pool to at most {h}",
                model.config.image_size
            )));
        }
        maps.flatten_from(1).map_err(c)?
    };
    candle_nn::loss::cross_entropy(&model.classify(&pooled).map_err(c)?, &labels).map_err(c)
}

fn outcome(
    cell: &CellConfig,
    state: &TrainState,
    seconds_per_step: f64,
    epochs_run: usize,
) -> Result<TrainOutcome> {
    Ok(TrainOutcome {
        cell_hash: cell.hash(),
        epochs_done: state.epochs_done,
        global_step: state.global_step,
        best_val: state.best_val,
        best_epoch: state.best_epoch,
        seconds_per_step,
        epochs_run,
        pretrain_epochs_done: state.pretrain_epochs_done,
        pretrain_epochs: match (&cell.train.pretrain, cell.is_pretrain_node()) {
            (Some(p), true) => p.epochs,
            _ => 0,
        },
    })
}

/// The loss value, or an error saying what to change when it is not finite.
fn finite_loss(loss: &Tensor, step: u64) -> Result<f64> {
    let value = loss.to_scalar::<f32>().map_err(c)? as f64;
    if !value.is_finite() {
        return Err(Error::invalid(format!(
            "the loss became {value} at step {step}; lower train.lr"
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::multistep_lr;

    #[test]
    fn multistep_matches_the_authors_schedule() {
        // lr 0.01, gamma 0.05, milestones 4/6/8 (METHOD.md §6): 0.01 until epoch 4, then 5e-4, 2.5e-5, 1.25e-6
        let lr = |e| multistep_lr(0.01, 0.05, &[4, 6, 8], e);
        assert_eq!(lr(3), 0.01);
        assert!((lr(4) - 5e-4).abs() < 1e-15);
        assert!((lr(7) - 2.5e-5).abs() < 1e-15);
        assert!((lr(9) - 1.25e-6).abs() < 1e-15);
    }
}
