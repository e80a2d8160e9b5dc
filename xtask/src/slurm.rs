//! `reproduce --executor slurm`: the plan's unfinished cells as Slurm jobs. Written into
//! `runs/.slurm/<submission>/`: a copy of the `fewshot` binary (jobs never run `target/`), one job per
//! unfinished pre-training node, one job array per group of cells that share a node state (an array
//! whose node is pending starts `--dependency=afterok` on it), and a report job `afterany` on all of
//! them that runs `fewshot report`. Each script is a plain `sbatch` file (`slurm_script`) a user can
//! read, keep and resubmit. Following uses `squeue` (one line per array task), the status file each
//! task writes into its run folder, and `scontrol show job` for tasks that ended without one
//! (cancelled, timed out, node lost); Debian's Slurm keeps no `sacct` data without slurmdbd.
//! Re-running the same command resubmits only unfinished cells; `fewshot cell` holds each run folder's
//! lock, so two submissions never train one cell at once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::reproduce::{stage_cell, stage_nodes, Plan, Staged};
use crate::slurm_script::{self, JobScript, Measured, Resources};
use crate::step_costs::{estimate_peak_bytes, estimate_seconds, human, step_history};

/// Options a Slurm user expects; the defaults come from the profile's measured costs where there are
/// some, else from `slurm_script::default_resources`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SlurmArgs {
    /// Partition (`sbatch --partition`).
    #[arg(long)]
    pub partition: Option<String>,
    /// Account (`sbatch --account`).
    #[arg(long)]
    pub account: Option<String>,
    /// Generic resources per cell (default: `gpu:1` on a CUDA device, none on the CPU).
    #[arg(long)]
    pub gres: Option<String>,
    /// Time limit per cell, in Slurm's format (default: twice the measured cost plus 10 minutes,
    /// else the backbone's default).
    #[arg(long)]
    pub time: Option<String>,
    /// Memory per cell, e.g. `16G` (default: 1.5 × the largest peak a finished run of the same kind
    /// recorded, plus 1 GiB; else the backbone's).
    #[arg(long)]
    pub mem: Option<String>,
    /// CPUs per cell (default: 8 for a CUDA cell, 2 for a CPU cell); CPU cells use as many threads.
    #[arg(long)]
    pub cpus_per_task: Option<u32>,
    /// At most this many array tasks at once (`--array=…%N`).
    #[arg(long)]
    pub throttle: Option<u32>,
    /// An extra `sbatch` argument for every job (repeatable), e.g. `--sbatch-arg=--qos=long`.
    #[arg(long = "sbatch-arg", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// Let Slurm requeue a pre-empted task or one whose node failed (it resumes from its checkpoint).
    #[arg(long)]
    pub requeue: bool,
    /// Submit, print the job ids and return without following them.
    #[arg(long)]
    pub no_wait: bool,
    /// Seconds between looks at the queue while following (default 10).
    #[arg(long)]
    pub poll_seconds: Option<u64>,
}

/// One submitted job and the cells it runs (plan indices; a node's are the cells that start from it).
struct Job {
    id: String,
    name: String,
    /// (run folder, plan indices whose result depends on it, array index or none)
    tasks: Vec<(PathBuf, Vec<usize>, Option<usize>)>,
}

/// Submits the unfinished part of `plan`; follows it unless `--no-wait`. Returns the failed cells with
/// their logs (`None` after `--no-wait`).
pub fn submit_and_follow(
    plan: &Plan,
    binary: &Path,
    unavailable: &[(String, String)],
    args: &SlurmArgs,
) -> Result<Option<Vec<(usize, PathBuf)>>> {
    let mut failed: Vec<(usize, PathBuf)> = Vec::new();
    let nodes = stage_nodes(plan, unavailable)?;
    let mut cells: Vec<Staged> = Vec::new();
    for k in 0..plan.cells.len() {
        match stage_cell(plan, k, unavailable)? {
            None => {}
            Some(Err(log)) => failed.push((k, log)),
            Some(Ok(s)) => cells.push(s),
        }
    }
    let submission = Submission::new(plan, binary, args)?;
    let mut jobs = submission.submit_nodes(&nodes)?;
    let node_job: Vec<(usize, String)> = nodes
        .iter()
        .zip(&jobs)
        .map(|(s, j)| (s.index, j.id.clone()))
        .collect();
    for (g, (wait, members)) in group_by_wait(plan, &cells, &node_job).iter().enumerate() {
        jobs.push(submission.submit_cells(g, wait.as_deref(), members)?);
    }
    let (report_id, ids) = submission.submit_report(&jobs)?;
    if args.no_wait {
        println!(
            "--no-wait: follow with `squeue -j {}`; the report job writes {}",
            ids.join(","),
            plan.reports.display()
        );
        return Ok(None);
    }
    follow(
        &jobs,
        &report_id,
        &submission.dir,
        args.poll_seconds.unwrap_or(10),
        &mut failed,
    )?;
    failed.sort_by_key(|(k, _)| *k);
    failed.dedup_by_key(|(k, _)| *k);
    Ok(Some(plan.with_shared_failures(failed)))
}

/// Staged cells grouped by the node job they wait for (none: their node is done, or they have
/// none), in plan order: one array per group.
fn group_by_wait<'a>(
    plan: &Plan,
    cells: &'a [Staged],
    node_job: &[(usize, String)],
) -> Vec<(Option<String>, Vec<&'a Staged>)> {
    let waits_for = |s: &Staged| -> Option<String> {
        let node = plan.cells[s.index].cell.pretrain_node()?;
        let k = plan.nodes.iter().position(|(n, _)| *n == node)?;
        node_job
            .iter()
            .find(|(i, _)| *i == k)
            .map(|(_, id)| id.clone())
    };
    let mut groups: Vec<(Option<String>, Vec<&Staged>)> = Vec::new();
    for s in cells {
        let w = waits_for(s);
        match groups.iter_mut().find(|(g, _)| *g == w) {
            Some((_, v)) => v.push(s),
            None => groups.push((w, vec![s])),
        }
    }
    groups
}

/// One submission: its folder (scripts, the binary's copy, lists, logs), the plan and options, and
/// the measured costs its resource requests come from.
struct Submission<'a> {
    plan: &'a Plan,
    args: &'a SlurmArgs,
    dir: PathBuf,
    history: Vec<crate::step_costs::StepRecord>,
}

impl<'a> Submission<'a> {
    /// A fresh submission folder with a copy of `binary` and the plan's cell hashes.
    fn new(plan: &'a Plan, binary: &Path, args: &'a SlurmArgs) -> Result<Self> {
        let dir = submission_dir(&plan.runs)?;
        let bin = dir.join("fewshot");
        std::fs::copy(binary, &bin)
            .with_context(|| format!("copying {} to {}", binary.display(), bin.display()))?;
        let plan_hashes: Vec<String> = plan.cells.iter().map(|c| c.cell.hash()).collect();
        std::fs::write(dir.join("plan.txt"), plan_hashes.join("\n") + "\n")?;
        Ok(Self {
            plan,
            args,
            dir,
            history: step_history(&plan.runs),
        })
    }

    /// What an array of `configs` asks for, from what finished runs of their kinds measured.
    fn resources(&self, configs: &[&fewshot::manifest::cell::CellConfig]) -> Resources {
        let device = &self.plan.device;
        let measured = Measured {
            seconds: configs
                .iter()
                .map(|c| estimate_seconds(&self.history, c, device))
                .collect::<Option<Vec<f64>>>()
                .map(|v| v.into_iter().fold(0.0, f64::max)),
            peak_rss_bytes: configs
                .iter()
                .map(|c| estimate_peak_bytes(&self.history, c, device))
                .collect::<Option<Vec<u64>>>()
                .and_then(|v| v.into_iter().max()),
        };
        slurm_script::resources(configs, device, measured, self.args)
    }

    /// Writes `script` into the folder and submits it; returns the job id.
    fn submit(&self, script: &JobScript, dependency: Option<String>) -> Result<String> {
        let path = self.dir.join(format!("{}.sbatch", script.file_stem));
        std::fs::write(&path, script.text())?;
        sbatch(&path, dependency.as_deref())
    }

    /// One job per unfinished pre-training node, in the order of `nodes`.
    fn submit_nodes(&self, nodes: &[Staged]) -> Result<Vec<Job>> {
        let mut jobs = Vec::new();
        for s in nodes {
            let node = &self.plan.nodes[s.index].0;
            clear_status(&s.dir);
            let list = self.dir.join(format!("node-{}.txt", s.index));
            std::fs::write(&list, format!("{}\n", s.dir.display()))?;
            let script = JobScript::for_plan(
                self.plan,
                &self.dir,
                &format!("node-{}", s.index),
                &list,
                1,
                true,
                self.resources(&[node]),
                self.args,
            );
            let id = self.submit(&script, None)?;
            println!("{}: submitted as job {id}", s.label);
            jobs.push(Job {
                id,
                name: script.file_stem.clone(),
                tasks: vec![(s.dir.clone(), self.plan.nodes[s.index].1.clone(), None)],
            });
        }
        Ok(jobs)
    }

    /// The array of group `g`'s cells, after the node job `wait` where there is one.
    fn submit_cells(&self, g: usize, wait: Option<&str>, members: &[&Staged]) -> Result<Job> {
        let list = self.dir.join(format!("cells-{g}.txt"));
        let dirs: Vec<String> = members
            .iter()
            .map(|s| s.dir.display().to_string())
            .collect();
        std::fs::write(&list, dirs.join("\n") + "\n")?;
        members.iter().for_each(|s| clear_status(&s.dir));
        let configs: Vec<_> = members
            .iter()
            .map(|s| &self.plan.cells[s.index].cell)
            .collect();
        let script = JobScript::for_plan(
            self.plan,
            &self.dir,
            &format!("cells-{g}"),
            &list,
            members.len(),
            false,
            self.resources(&configs),
            self.args,
        );
        let id = self.submit(&script, wait.map(|w| format!("afterok:{w}")))?;
        for (a, s) in members.iter().enumerate() {
            println!("{}: submitted as {id}_{a}", s.label);
        }
        let tasks = members
            .iter()
            .enumerate()
            .map(|(a, s)| (s.dir.clone(), vec![s.index], Some(a)))
            .collect();
        Ok(Job {
            id,
            name: script.file_stem.clone(),
            tasks,
        })
    }

    /// The report job, after every other job has ended however it ended; records the ids in
    /// `jobs.json`. Returns the report's id and every id submitted.
    fn submit_report(&self, jobs: &[Job]) -> Result<(String, Vec<String>)> {
        let report = JobScript::report(self.plan, &self.dir, self.args);
        let after: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
        let report_id = self.submit(
            &report,
            (!after.is_empty()).then(|| format!("afterany:{}", after.join(":"))),
        )?;
        let ids: Vec<String> = after.into_iter().chain([report_id.clone()]).collect();
        fewshot::atomic_write::write_json(
            &self.dir.join("jobs.json"),
            &serde_json::json!({
                "jobs": jobs.iter().map(|j| serde_json::json!({"name": j.name, "id": j.id})).collect::<Vec<_>>(),
                "report": report_id,
            }),
        )?;
        println!(
            "slurm: submitted jobs {} from {}",
            ids.join(" "),
            self.dir.display()
        );
        Ok((report_id, ids))
    }
}

/// A fresh folder for this submission's scripts, binary, lists and logs.
fn submission_dir(runs: &Path) -> Result<PathBuf> {
    let stamp = fewshot::clock::utc_now().replace([':', '-'], "");
    let dir = runs
        .join(".slurm")
        .join(format!("{stamp}-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("logs"))?;
    Ok(dir)
}

fn clear_status(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(slurm_script::STATUS_FILE));
}

/// `sbatch --parsable [--dependency=…] script` → the job id.
fn sbatch(script: &Path, dependency: Option<&str>) -> Result<String> {
    let mut cmd = Command::new("sbatch");
    cmd.arg("--parsable");
    if let Some(d) = dependency {
        cmd.arg(format!("--dependency={d}"));
    }
    let out = cmd
        .arg(script)
        .output()
        .context("running sbatch (is Slurm's client installed and SLURM_CONF set?)")?;
    if !out.status.success() {
        bail!(
            "sbatch {} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string())
}

/// `squeue` lines `<id> <state> <reason>` for the jobs' tasks still known to the controller.
fn squeue(ids: &[String]) -> Result<Vec<(String, String, String)>> {
    let out = Command::new("squeue")
        .args(["-h", "-r", "-o", "%i %T %r", "-j", &ids.join(",")])
        .output()
        .context("running squeue")?;
    // squeue fails on ids the controller has already forgotten: that is "none left"
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((
                f.next()?.to_string(),
                f.next()?.to_string(),
                f.next().unwrap_or("").to_string(),
            ))
        })
        .collect())
}

/// `JobState` of a finished job or array task from `scontrol show job`, while Slurm still keeps it.
fn scontrol_state(id: &str) -> Option<String> {
    let out = Command::new("scontrol")
        .args(["show", "job", id])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("JobState="))
        .map(str::to_string)
}

/// Polls until the report job has left the queue, printing cells done / running / pending / failed
/// whenever they change; adds the cells that failed (with why) to `failed`.
fn follow(
    jobs: &[Job],
    report_id: &str,
    sub: &Path,
    poll: u64,
    failed: &mut Vec<(usize, PathBuf)>,
) -> Result<()> {
    let all: Vec<String> = jobs
        .iter()
        .map(|j| j.id.clone())
        .chain([report_id.to_string()])
        .collect();
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let queue = squeue(&all)?;
        let in_queue = |id: &str| {
            queue
                .iter()
                .find(|(q, _, _)| q == id)
                .map(|(_, s, r)| (s.clone(), r.clone()))
        };
        let (mut done, mut running, mut pending, mut bad) = (0, 0, 0, Vec::new());
        for job in jobs {
            for (dir, users, index) in &job.tasks {
                let task = match index {
                    Some(a) => format!("{}_{a}", job.id),
                    None => job.id.clone(),
                };
                match (slurm_script::read_status(dir).as_deref(), in_queue(&task)) {
                    (Some("done"), _) => done += 1,
                    (Some(s), None) if s.starts_with("failed") => {
                        bad.push((dir, users, format!("task {task} {s}")))
                    }
                    (_, Some((state, _))) if state == "RUNNING" || state == "COMPLETING" => {
                        running += 1
                    }
                    (_, Some((_, reason))) if reason.contains("DependencyNeverSatisfied") => {
                        let _ = Command::new("scancel").arg(&task).status();
                        bad.push((
                            dir,
                            users,
                            format!("task {task}: its pre-training node failed"),
                        ))
                    }
                    (_, Some(_)) => pending += 1,
                    (_, None) => {
                        let state = scontrol_state(&task)
                            .unwrap_or_else(|| "unknown (forgotten by slurmctld)".into());
                        bad.push((
                            dir,
                            users,
                            format!("task {task} ended as {state} without finishing"),
                        ))
                    }
                }
            }
        }
        let line = format!(
            "{done} done, {running} running, {pending} pending, {} failed",
            bad.len()
        );
        if line != last {
            println!("slurm [{}]: {line}", human(started.elapsed().as_secs_f64()));
            last = line;
        }
        if in_queue(report_id).is_none() {
            for (dir, users, why) in bad {
                let log = dir.join(fewshot::run_files::REPRODUCE_LOG);
                println!(
                    "  FAILED: {} — {why} (log {})",
                    dir.display(),
                    log.display()
                );
                failed.extend(users.iter().map(|&k| (k, log.clone())));
            }
            return match slurm_script::read_status(sub).as_deref() {
                Some("done") => Ok(()),
                other => bail!(
                    "the report job {report_id} ended {} (log {})",
                    other
                        .map(|s| format!("with status {s}"))
                        .unwrap_or_else(|| format!(
                            "as {}",
                            scontrol_state(report_id).unwrap_or_default()
                        )),
                    sub.join("logs").display()
                ),
            };
        }
        std::thread::sleep(Duration::from_secs(poll));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cpu-conv4 plan's eight cells share one pre-training node: while its job is pending they
    /// form one array after it; once it is done (no node job), one array with no dependency.
    #[test]
    fn cells_are_grouped_by_the_node_job_they_wait_for() {
        let tmp = tempfile::tempdir().unwrap();
        let mut args = crate::reproduce::ReproduceArgs::smoke(tmp.path().join("runs"));
        args.profile = "cpu-conv4".into();
        let plan = crate::reproduce::plan(&args).unwrap();
        assert_eq!((plan.cells.len(), plan.nodes.len()), (8, 1));
        let staged: Vec<Staged> = (0..plan.cells.len())
            .map(|index| Staged {
                index,
                label: format!("cell {index}"),
                dir: tmp.path().join(index.to_string()),
                config: PathBuf::new(),
                log: PathBuf::new(),
            })
            .collect();
        let waiting = group_by_wait(&plan, &staged, &[(0, "41".into())]);
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].0.as_deref(), Some("41"));
        assert_eq!(waiting[0].1.len(), 8);
        let free = group_by_wait(&plan, &staged[..3], &[]);
        assert_eq!(free.len(), 1);
        assert_eq!(
            (free[0].0.as_deref(), free[0].1.len()),
            (None, 3),
            "a done node: no dependency"
        );
    }
}
