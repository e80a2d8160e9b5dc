//! `reproduce --executor local [--jobs N]`: the plan's unfinished pre-training nodes, then its cells,
//! run here as `fewshot cell` child processes, N at a time. Each of the N slots is one GPU on a CUDA
//! device (`CUDA_VISIBLE_DEVICES` set to one of the GPUs the machine shows, or of those the user's own
//! `CUDA_VISIBLE_DEVICES` names) or, on the CPU, an equal share of the cores (`RAYON_NUM_THREADS`;
//! a count the user pinned is kept, since it decides the order of floating-point reductions and so
//! the per-episode files). `--jobs 1` (the default) sets nothing and runs one cell after another.
//! Caching, run folders, logs and the report are the same whatever N is: each cell still trains and
//! evaluates under its run folder's lock (`fewshot cell`).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::cell_launcher::CellCommand;
use crate::reproduce::{stage_cell, stage_nodes, Plan, Staged};
use crate::step_costs::human;
use fewshot::report::run_results::read_eval;

/// One place a cell runs: the environment its `fewshot cell` gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub env: Vec<(String, String)>,
}

/// What the slots are made from: the device, the GPUs `nvidia-smi -L` lists, the cores, and the
/// user's own `CUDA_VISIBLE_DEVICES` and `RAYON_NUM_THREADS`.
pub struct Machine {
    pub gpus: usize,
    pub cores: usize,
    pub visible_devices: Option<String>,
    pub pinned_threads: Option<String>,
}

impl Machine {
    pub fn here(device: &str) -> Machine {
        Machine {
            gpus: if device.starts_with("cuda") {
                crate::cell_launcher::probe_cuda().gpus
            } else {
                0
            },
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            visible_devices: std::env::var("CUDA_VISIBLE_DEVICES").ok(),
            pinned_threads: std::env::var("RAYON_NUM_THREADS").ok(),
        }
    }
}

/// The `jobs` slots for `device` on `machine`; an error when a CUDA plan asks for more GPUs than there
/// are, or names one GPU (`cuda:N`) and several jobs.
pub fn slots(jobs: usize, device: &str, machine: &Machine) -> Result<Vec<Slot>> {
    if jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    if jobs == 1 {
        return Ok(vec![Slot { env: Vec::new() }]);
    }
    if let Some(rest) = device.strip_prefix("cuda") {
        if !rest.is_empty() {
            bail!("--jobs {jobs} gives each cell a GPU of its own; --device {device} names one: use --device cuda");
        }
        let ids: Vec<String> = match machine.visible_devices.as_deref() {
            Some(list) if !list.trim().is_empty() => {
                list.split(',').map(|s| s.trim().to_string()).collect()
            }
            _ => (0..machine.gpus).map(|i| i.to_string()).collect(),
        };
        if jobs > ids.len() {
            bail!(
                "--jobs {jobs} needs {jobs} GPUs, one per cell; this machine shows {} ({})",
                ids.len(),
                if machine.visible_devices.is_some() {
                    "CUDA_VISIBLE_DEVICES"
                } else {
                    "nvidia-smi -L"
                }
            );
        }
        return Ok(ids
            .into_iter()
            .take(jobs)
            .map(|id| Slot {
                env: vec![("CUDA_VISIBLE_DEVICES".into(), id)],
            })
            .collect());
    }
    let threads = match &machine.pinned_threads {
        Some(n) => n.clone(),
        None => (machine.cores / jobs).max(1).to_string(),
    };
    Ok((0..jobs)
        .map(|_| Slot {
            env: vec![("RAYON_NUM_THREADS".into(), threads.clone())],
        })
        .collect())
}

/// Runs `work` on every item, at most one at a time per slot; returns what the calls returned, in the
/// items' order.
pub fn in_slots<T: Send, R: Send>(
    items: Vec<T>,
    slots: &[Slot],
    work: impl Fn(&Slot, T) -> R + Sync,
) -> Vec<R> {
    let n = items.len();
    let queue = Mutex::new(items.into_iter().enumerate().collect::<VecDeque<_>>());
    let results = Mutex::new(Vec::with_capacity(n));
    std::thread::scope(|scope| {
        for slot in slots {
            let (queue, results, work) = (&queue, &results, &work);
            scope.spawn(move || loop {
                let Some((i, item)) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                let r = work(slot, item);
                results.lock().unwrap().push((i, r));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

fn command<'a>(plan: &'a Plan, binary: &'a Path, s: &'a Staged, slot: &Slot) -> CellCommand<'a> {
    let mut c = CellCommand::new(binary, &s.config, &plan.device, &plan.data_dir, &plan.runs);
    c.env = slot.env.clone();
    c
}

/// Runs the unfinished pre-training nodes; returns the cells of the nodes that failed, with the log.
pub fn run_nodes(
    plan: &Plan,
    binary: &Path,
    unavailable: &[(String, String)],
    slots: &[Slot],
) -> Result<Vec<(usize, PathBuf)>> {
    for (node, users) in &plan.nodes {
        if fewshot::run_folders::pretrain_done(&plan.runs.join(node.hash()))
            && !unavailable.iter().any(|(d, _)| d == &node.dataset)
        {
            let (d, h, n) = (&node.dataset, node.hash(), users.len());
            println!("pre-training {d} ({h}) for {n} cells: cached");
        }
    }
    let outcomes = in_slots(stage_nodes(plan, unavailable)?, slots, |slot, s| {
        let resuming = s.dir.join(fewshot::run_files::CHECKPOINT_LAST).is_file();
        println!(
            "{}: {}",
            s.label,
            if resuming { "resuming" } else { "training" }
        );
        let t = Instant::now();
        let mut c = command(plan, binary, &s, slot);
        c.extra.push("--train-only".into());
        match c.run("cell", &s.log) {
            Ok(()) => {
                println!("{}: done in {}", s.label, human(t.elapsed().as_secs_f64()));
                Vec::new()
            }
            Err(e) => {
                println!("{}: FAILED: {e:#} (log {})", s.label, s.log.display());
                let users = &plan.nodes[s.index].1;
                users.iter().map(|&k| (k, s.log.clone())).collect()
            }
        }
    });
    Ok(outcomes.into_iter().flatten().collect())
}

/// Runs the cells that are not cached and whose node did not fail; returns every failed cell with its
/// log (those of `failed` included).
pub fn run_cells(
    plan: &Plan,
    binary: &Path,
    unavailable: &[(String, String)],
    mut failed: Vec<(usize, PathBuf)>,
    slots: &[Slot],
) -> Result<Vec<(usize, PathBuf)>> {
    let mut staged = Vec::new();
    for k in 0..plan.cells.len() {
        if failed.iter().any(|(i, _)| *i == k) {
            continue;
        }
        match stage_cell(plan, k, unavailable)? {
            None => {}
            Some(Err(log)) => failed.push((k, log)),
            Some(Ok(s)) => staged.push(s),
        }
    }
    let outcomes = in_slots(staged, slots, |slot, s| {
        let outcome = command(plan, binary, &s, slot)
            .run("cell", &s.log)
            .and_then(|()| read_eval(&s.dir)?.ok_or_else(|| anyhow::anyhow!("eval.json missing")));
        match outcome {
            Ok(e) => {
                let phases = fewshot::run_folders::phases(&s.dir).unwrap_or_default();
                let t = |s: Option<f64>| s.map(human).unwrap_or_default();
                println!(
                    "{}: {:.2} ± {:.2} % over {} episodes (trained in {}, evaluated in {})",
                    s.label,
                    100.0 * e.mean,
                    100.0 * e.ci95,
                    e.n,
                    t(phases.train_seconds),
                    t(phases.eval_seconds)
                );
                None
            }
            Err(e) => {
                println!("{}: FAILED: {e:#} (log {})", s.label, s.log.display());
                Some((s.index, s.log))
            }
        }
    });
    failed.extend(outcomes.into_iter().flatten());
    Ok(plan.with_shared_failures(failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(gpus: usize, cores: usize, visible: Option<&str>, pinned: Option<&str>) -> Machine {
        Machine {
            gpus,
            cores,
            visible_devices: visible.map(String::from),
            pinned_threads: pinned.map(String::from),
        }
    }

    fn env_of(slots: &[Slot], key: &str) -> Vec<String> {
        let value = |s: &Slot| s.env.iter().find(|(k, _)| k == key).unwrap().1.clone();
        slots.iter().map(value).collect()
    }

    #[test]
    fn one_job_changes_nothing() {
        let m = machine(4, 16, None, None);
        assert_eq!(slots(1, "cuda", &m).unwrap(), vec![Slot { env: vec![] }]);
        assert_eq!(slots(1, "cpu", &m).unwrap(), vec![Slot { env: vec![] }]);
    }

    #[test]
    fn cuda_jobs_get_a_gpu_each_within_what_the_user_made_visible() {
        let s = slots(3, "cuda", &machine(4, 16, None, None)).unwrap();
        assert_eq!(env_of(&s, "CUDA_VISIBLE_DEVICES"), ["0", "1", "2"]);
        let s = slots(2, "cuda", &machine(8, 16, Some("5, 7,1"), None)).unwrap();
        assert_eq!(env_of(&s, "CUDA_VISIBLE_DEVICES"), ["5", "7"]);
        let err = slots(3, "cuda", &machine(2, 16, None, None)).unwrap_err();
        assert!(format!("{err}").contains("needs 3 GPUs"), "{err}");
        let err = slots(2, "cuda:1", &machine(2, 16, None, None)).unwrap_err();
        assert!(format!("{err}").contains("--device cuda"), "{err}");
        assert!(slots(0, "cpu", &machine(0, 2, None, None)).is_err());
    }

    #[test]
    fn cpu_jobs_share_the_cores_unless_the_user_pinned_the_threads() {
        let s = slots(2, "cpu", &machine(0, 16, None, None)).unwrap();
        assert_eq!(env_of(&s, "RAYON_NUM_THREADS"), ["8", "8"]);
        let s = slots(3, "cpu", &machine(0, 2, None, None)).unwrap();
        assert_eq!(env_of(&s, "RAYON_NUM_THREADS"), ["1", "1", "1"]);
        let s = slots(2, "cpu", &machine(0, 16, None, Some("1"))).unwrap();
        assert_eq!(env_of(&s, "RAYON_NUM_THREADS"), ["1", "1"]);
    }

    #[test]
    fn in_slots_runs_each_item_once_at_most_one_per_slot_and_keeps_order() {
        let slots: Vec<Slot> = (0..3)
            .map(|i| Slot {
                env: vec![("SLOT".into(), i.to_string())],
            })
            .collect();
        let busy = Mutex::new(std::collections::BTreeSet::new());
        let most = std::sync::atomic::AtomicUsize::new(0);
        let out = in_slots((0..20).collect(), &slots, |slot, item: u32| {
            let id = slot.env[0].1.clone();
            assert!(
                busy.lock().unwrap().insert(id.clone()),
                "slot {id} twice at once"
            );
            let n = busy.lock().unwrap().len();
            most.fetch_max(n, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(5));
            busy.lock().unwrap().remove(&id);
            item * 2
        });
        assert_eq!(out, (0..20).map(|i| i * 2).collect::<Vec<_>>());
        assert!(
            most.load(std::sync::atomic::Ordering::SeqCst) > 1,
            "slots ran in parallel"
        );
    }
}
