//! The `sbatch` files of `reproduce --executor slurm` and the status file their tasks write: a job
//! array runs `fewshot cell` for the run folder on line `$SLURM_ARRAY_TASK_ID + 1` of its list, after a
//! prologue that checks the node can load the binary (and, for CUDA, sees a GPU); the task writes
//! `slurm-status` (`running`, `done` or `failed <code>`, then its job id and host) into the run folder.
//! Resources per cell default from measured costs (twice the estimate plus 10 minutes) or from the
//! backbone's documented defaults (`default_resources`).

use std::path::Path;

use fewshot::manifest::cell::CellConfig;
use fewshot::manifest::model::BackboneKind;

use crate::reproduce::Plan;
use crate::slurm::SlurmArgs;

/// The status file a task writes into its run folder (and the report job into the submission folder).
pub use fewshot::run_files::SLURM_STATUS as STATUS_FILE;

/// The first word of `dir/slurm-status` and what follows it (`done`, `running …`, `failed 2 …`).
pub fn read_status(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(STATUS_FILE)).ok()?;
    let line = text.lines().next()?.trim().to_string();
    Some(match line.split_whitespace().next() {
        Some("failed") => line
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" "),
        Some(word) => word.to_string(),
        None => return None,
    })
}

/// What one cell asks of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Resources {
    pub time: String,
    pub mem: String,
    pub cpus: u32,
    pub gres: Option<String>,
}

/// Per-backbone defaults when no finished run measured the cost: (minutes on a GPU, minutes on the
/// CPU, memory). Conv-4 measured 25–45 min per cell on 2 CPU cores (cpu-conv4.md), and its
/// pre-training on miniImageNet at 84×84 (batch 128) peaked at 2.8 GiB resident (`VmHWM`, 2026-12-06):
/// 8G leaves room for larger stores; the ResNets' GPU times and memory are the paper protocol's order of
/// magnitude, to be replaced by the measurements finished runs record (`phases.json`).
pub fn default_resources(kind: BackboneKind) -> (u64, u64, &'static str) {
    match kind {
        BackboneKind::Conv4 => (120, 6 * 60, "8G"),
        _ => (24 * 60, 7 * 24 * 60, "32G"),
    }
}

/// Slurm's `D-HH:MM:00` for a number of minutes.
pub fn slurm_time(minutes: u64) -> String {
    let (d, h, m) = (minutes / 1440, minutes % 1440 / 60, minutes % 60);
    format!("{d}-{h:02}:{m:02}:00")
}

/// What finished runs of an array's cells measured: the largest time estimate and the largest peak
/// memory, each only where every cell of the array has one (an unmeasured cell could need more: the
/// backbone's default stands then).
#[derive(Debug, Clone, Copy, Default)]
pub struct Measured {
    pub seconds: Option<f64>,
    pub peak_rss_bytes: Option<u64>,
}

/// Slurm's memory request for a measured peak: half again as much, rounded up to whole GiB, plus
/// 1 GiB for the node's page cache of the store and the allocator's slack.
pub fn mem_for_peak(peak_rss_bytes: u64) -> String {
    let gib = (1.5 * peak_rss_bytes as f64 / (1u64 << 30) as f64).ceil() as u64 + 1;
    format!("{gib}G")
}

/// The resources of an array whose cells are `configs`, given what finished runs measured.
pub fn resources(
    configs: &[&CellConfig],
    device: &str,
    measured: Measured,
    args: &SlurmArgs,
) -> Resources {
    let cuda = device.starts_with("cuda");
    let defaults: Vec<_> = configs
        .iter()
        .map(|c| default_resources(c.backbone.kind))
        .collect();
    let minutes = match measured.seconds {
        Some(s) => (2.0 * s / 60.0).ceil() as u64 + 10,
        None => defaults
            .iter()
            .map(|d| if cuda { d.0 } else { d.1 })
            .max()
            .unwrap_or(60),
    };
    let mem = match measured.peak_rss_bytes {
        Some(peak) => mem_for_peak(peak),
        None => defaults
            .iter()
            .map(|d| d.2)
            .max_by_key(|m| m.trim_end_matches('G').parse::<u32>().unwrap_or(0))
            .unwrap_or("8G")
            .to_string(),
    };
    Resources {
        time: args.time.clone().unwrap_or_else(|| slurm_time(minutes)),
        mem: args.mem.clone().unwrap_or(mem),
        cpus: args.cpus_per_task.unwrap_or(if cuda { 8 } else { 2 }),
        gres: args
            .gres
            .clone()
            .or_else(|| cuda.then(|| "gpu:1".to_string())),
    }
}

/// One `sbatch` file.
pub struct JobScript {
    pub file_stem: String,
    directives: Vec<String>,
    body: String,
}

impl JobScript {
    /// The script text: `#SBATCH` lines, then the body.
    pub fn text(&self) -> String {
        let mut t = String::from("#!/bin/bash\n");
        for d in &self.directives {
            t.push_str(&format!("#SBATCH {d}\n"));
        }
        t.push_str(&self.body);
        t
    }

    fn common(plan: &Plan, sub: &Path, stem: &str, args: &SlurmArgs) -> Vec<String> {
        let mut d = vec![
            format!(
                "--job-name=fewshot-{}-{}-{stem}",
                plan.name, plan.profile_name
            ),
            format!("--chdir={}", crate::repo::root().display()),
        ];
        if let Some(p) = &args.partition {
            d.push(format!("--partition={p}"));
        }
        if let Some(a) = &args.account {
            d.push(format!("--account={a}"));
        }
        let _ = sub;
        d
    }

    /// A job array over the `n` run folders listed in `list` (one task each; `train_only` for nodes).
    #[allow(clippy::too_many_arguments)]
    pub fn for_plan(
        plan: &Plan,
        sub: &Path,
        stem: &str,
        list: &Path,
        n: usize,
        train_only: bool,
        r: Resources,
        args: &SlurmArgs,
    ) -> Self {
        let mut d = Self::common(plan, sub, stem, args);
        let throttle = args.throttle.map(|t| format!("%{t}")).unwrap_or_default();
        d.push(format!("--array=0-{}{throttle}", n.saturating_sub(1)));
        d.push(format!("--output={}/logs/{stem}-%A_%a.out", sub.display()));
        d.push(format!("--time={}", r.time));
        d.push(format!("--mem={}", r.mem));
        d.push(format!("--cpus-per-task={}", r.cpus));
        if let Some(g) = &r.gres {
            d.push(format!("--gres={g}"));
        }
        d.push(if args.requeue {
            "--requeue".into()
        } else {
            "--no-requeue".into()
        });
        d.push("--kill-on-invalid-dep=no".into());
        d.extend(args.sbatch_args.iter().cloned());
        let cuda = plan.device.starts_with("cuda");
        let gpu_check = if cuda {
            "if ! nvidia-smi -L >/dev/null 2>&1; then\n  echo \"node $(hostname -s) shows no GPU (nvidia-smi -L failed)\" >&2; status \"failed 3\"; exit 3\nfi\n"
        } else {
            ""
        };
        let body = format!(
            r#"# Written by `cargo xtask reproduce --executor slurm` ({name}, profile {profile}). Each task runs one
# cell of {list}; resubmit by hand with `sbatch {stem}.sbatch` (add --dependency=afterok:<node job> when
# a pre-training node is still running). The cell resumes from its checkpoint; `fewshot cell` holds its
# run folder's lock, so two submissions never train one cell at once.
set -uo pipefail
SUB="{sub}"
BIN="$SUB/fewshot"
dir=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "{list}")
status() {{ printf '%s %s %s\n' "$1" "${{SLURM_JOB_ID:-?}}" "$(hostname -s)" > "$dir/.{status}.tmp" && mv "$dir/.{status}.tmp" "$dir/{status}"; }}
# prologue: the node must load the binary's shared libraries{gpu_note}
missing=$(ldd "$BIN" 2>&1 | grep 'not found')
if [ -n "$missing" ]; then
  echo "node $(hostname -s) cannot load $BIN: $missing" >&2; status "failed 2"; exit 2
fi
{gpu_check}[ -n "${{SLURM_CPUS_PER_TASK:-}}" ] && export RAYON_NUM_THREADS="${{RAYON_NUM_THREADS:-$SLURM_CPUS_PER_TASK}}"
status running
"$BIN" cell --config "$dir/cell.toml" --device {device} --data-dir "{data}" --manifests "{manifests}" --runs "{runs}"{train_only} >> "$dir/reproduce.log" 2>&1
rc=$?
if [ "$rc" -eq 0 ]; then status done; else status "failed $rc"; fi
exit "$rc"
"#,
            name = plan.name,
            profile = plan.profile_name,
            list = list.display(),
            sub = sub.display(),
            status = STATUS_FILE,
            gpu_note = if cuda { " and see a GPU" } else { "" },
            device = plan.device,
            data = plan.data_dir.display(),
            manifests = plan.manifests.display(),
            runs = plan.runs.display(),
            train_only = if train_only { " --train-only" } else { "" },
        );
        JobScript {
            file_stem: stem.to_string(),
            directives: d,
            body,
        }
    }

    /// The report job: `fewshot report` over the plan's cells once the arrays are over.
    pub fn report(plan: &Plan, sub: &Path, args: &SlurmArgs) -> Self {
        let mut d = Self::common(plan, sub, "report", args);
        d.push(format!("--output={}/logs/report-%j.out", sub.display()));
        d.push("--time=0-00:30:00".into());
        d.push("--mem=4G".into());
        d.push("--cpus-per-task=1".into());
        d.extend(args.sbatch_args.iter().cloned());
        let body = format!(
            r#"# Written by `cargo xtask reproduce --executor slurm`: the report of {name} (profile {profile}) from the
# run folders as they stand once the cell jobs are over; a cell without a result is reported as failed.
set -uo pipefail
SUB="{sub}"
"$SUB/fewshot" report --table {table} --profile {profile} --cells "$SUB/plan.txt" --out "{out}" --device {device} --manifests "{manifests}" --runs "{runs}"
rc=$?
if [ "$rc" -eq 0 ]; then s=done; else s="failed $rc"; fi
printf '%s %s %s\n' "$s" "${{SLURM_JOB_ID:-?}}" "$(hostname -s)" > "$SUB/.{status}.tmp" && mv "$SUB/.{status}.tmp" "$SUB/{status}"
exit "$rc"
"#,
            name = plan.name,
            profile = plan.profile_name,
            table = plan.name.trim_start_matches("table"),
            sub = sub.display(),
            out = plan.reports.display(),
            device = plan.device,
            manifests = plan.manifests.display(),
            runs = plan.runs.display(),
            status = STATUS_FILE,
        );
        JobScript {
            file_stem: "report".into(),
            directives: d,
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_slurm_durations_and_status_lines_read_back() {
        assert_eq!(slurm_time(45), "0-00:45:00");
        assert_eq!(slurm_time(2 * 1440 + 61), "2-01:01:00");
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_status(dir.path()), None);
        std::fs::write(dir.path().join(STATUS_FILE), "failed 137 42_1 node1\n").unwrap();
        assert_eq!(read_status(dir.path()).as_deref(), Some("failed 137"));
        std::fs::write(dir.path().join(STATUS_FILE), "done 42_1 node1\n").unwrap();
        assert_eq!(read_status(dir.path()).as_deref(), Some("done"));
    }

    #[test]
    fn resources_come_from_measurements_else_the_backbone() {
        let manifests = crate::repo::manifests();
        let plan = fewshot::manifest::experiment::Experiment::read(&manifests, "table1")
            .unwrap()
            .plan(&manifests, "smoke")
            .unwrap();
        let cell = &plan[0].cell;
        let none = SlurmArgs::default();
        let cpu = resources(&[cell], "cpu", Measured::default(), &none);
        assert_eq!(
            (
                cpu.time.as_str(),
                cpu.mem.as_str(),
                cpu.cpus,
                cpu.gres.as_deref()
            ),
            ("0-06:00:00", "8G", 2, None)
        );
        let measured = Measured {
            seconds: Some(600.0),
            peak_rss_bytes: Some(3 << 29),
        };
        let gpu = resources(&[cell], "cuda", measured, &none);
        assert_eq!(
            (
                gpu.time.as_str(),
                gpu.mem.as_str(),
                gpu.cpus,
                gpu.gres.as_deref()
            ),
            ("0-00:30:00", "4G", 8, Some("gpu:1")),
            "1.5 GiB measured: 2.25 GiB, rounded up, plus one"
        );
        let given = SlurmArgs {
            time: Some("1:00:00".into()),
            mem: Some("2G".into()),
            ..SlurmArgs::default()
        };
        let r = resources(&[cell], "cpu", measured, &given);
        assert_eq!((r.time.as_str(), r.mem.as_str()), ("1:00:00", "2G"));
    }
}
