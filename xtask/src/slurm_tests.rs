//! `reproduce --executor slurm` against a real one-node Slurm cluster (`slurm_cluster`): the smoke
//! profile's two ProtoNet cells give the local executor's per-episode files; a task cancelled with
//! `scancel` during training resumes on the next run and ends identical; a cell made to fail is reported
//! while the other finishes; `--no-wait` returns job ids `squeue` knows. Ignored by `cargo test`
//! (it needs the daemons); `cargo xtask ci` runs it after the smoke reproduce step, whose `--jobs 2`
//! run folders (with a report of their ProtoNet cells) it names as the local reference
//! ([`LOCAL_REFERENCE`]) instead of training those cells again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::ci::SLURM_TEST_LOCAL_RUNS as LOCAL_REFERENCE;
use crate::reproduce::{self, Executor, ReproduceArgs};
use crate::slurm_cluster::Cluster;
use crate::slurm_script::{read_status, STATUS_FILE};

fn args(root: &Path, name: &str, executor: Executor) -> ReproduceArgs {
    let mut a = ReproduceArgs::smoke(root.join(name).join("runs"));
    a.method = vec!["protonet".into()];
    a.reports = Some(root.join(name).join("report"));
    a.executor = executor;
    a.slurm.poll_seconds = Some(1);
    a.slurm.mem = Some("2G".into());
    // one thread a cell, as the reference ran: the one-node cluster runs two cells at once
    a.slurm.cpus_per_task = Some(1);
    a
}

fn cell_dirs(a: &ReproduceArgs) -> Vec<PathBuf> {
    let plan = reproduce::plan(a).unwrap();
    plan.cells
        .iter()
        .map(|c| plan.runs.join(c.cell.hash()))
        .collect()
}

fn episodes(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("episodes.jsonl")).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

fn squeue_ids() -> String {
    let out = Command::new("squeue")
        .args(["-h", "-o", "%A"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs Slurm's daemons (apt-get install slurm-wlm munge); `cargo xtask ci` runs it"]
fn the_smoke_plan_on_a_real_one_node_slurm_cluster() {
    let cluster = Cluster::start().unwrap();
    std::env::set_var("SLURM_CONF", cluster.conf());
    // every cell on one thread, here and in the Slurm tasks (sbatch passes the environment on):
    // the thread count decides the order of floating-point reductions, so the per-episode files
    // compared below must come from runs with the same count (the smoke step's reference ran so)
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();

    // the reference: the local executor's run of the same cells (`cargo xtask ci` names its smoke
    // step's `--jobs 2` run, with the same thread count, instead of training them once more)
    let (local_dirs, local_table) = match std::env::var_os(LOCAL_REFERENCE) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            let mut local = args(root, "local", Executor::Local);
            local.runs = Some(dir.clone());
            (cell_dirs(&local), dir.join("report/table1.csv"))
        }
        None => {
            let local = args(root, "local", Executor::Local);
            let dirs = cell_dirs(&local);
            reproduce::run(local).unwrap();
            (dirs, root.join("local/report/table1.csv"))
        }
    };

    // the same plan on Slurm: same per-episode files, a report with the same table
    let slurm = args(root, "slurm", Executor::Slurm);
    let slurm_dirs = cell_dirs(&slurm);
    reproduce::run(slurm).unwrap();
    for (l, s) in local_dirs.iter().zip(&slurm_dirs) {
        assert_eq!(
            episodes(l),
            episodes(s),
            "{} vs {}",
            l.display(),
            s.display()
        );
        assert_eq!(read_status(s).as_deref(), Some("done"));
    }
    let table = |path: &Path| {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    assert_eq!(
        table(&local_table),
        table(&root.join("slurm/report/table1.csv"))
    );

    // --no-wait returns ids squeue knows; scancel during training; re-running resumes and ends identical
    let mut killed = args(root, "killed", Executor::Slurm);
    killed.slurm.no_wait = true;
    let killed_dirs = cell_dirs(&killed);
    reproduce::run(killed).unwrap();
    let queued = squeue_ids();
    assert!(!queued.trim().is_empty(), "squeue knows the submitted jobs");
    let t = Instant::now();
    while read_status(&killed_dirs[0]).as_deref() != Some("running") {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the first task never started"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    for id in queued.split_whitespace() {
        Command::new("scancel").arg(id).status().unwrap();
    }
    while !squeue_ids().trim().is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "scancel did not empty the queue"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        !killed_dirs[0].join("eval.json").exists(),
        "the cancelled cell did not finish"
    );
    assert_ne!(read_status(&killed_dirs[0]).as_deref(), Some("done"));
    reproduce::run(args(root, "killed", Executor::Slurm)).unwrap();
    for (l, k) in local_dirs.iter().zip(&killed_dirs) {
        assert_eq!(
            episodes(l),
            episodes(k),
            "resumed {} vs {}",
            k.display(),
            l.display()
        );
    }

    // a cell made to fail (an unreadable checkpoint to resume from) is reported; the other finishes
    let broken = args(root, "broken", Executor::Slurm);
    let broken_dirs = cell_dirs(&broken);
    std::fs::create_dir_all(&broken_dirs[0]).unwrap();
    std::fs::write(
        broken_dirs[0].join("checkpoint-last.safetensors"),
        b"not a checkpoint",
    )
    .unwrap();
    let err = reproduce::run(broken).unwrap_err();
    assert!(
        format!("{err:#}").contains("1 of 2 cells failed"),
        "{err:#}"
    );
    assert!(read_status(&broken_dirs[0]).unwrap().starts_with("failed"));
    assert_eq!(episodes(&broken_dirs[1]), episodes(&local_dirs[1]));
    let log = std::fs::read_to_string(broken_dirs[0].join("reproduce.log")).unwrap();
    assert!(
        log.contains("checkpoint-last.safetensors"),
        "the log names the bad file: {log}"
    );
    let report = std::fs::read_to_string(root.join("broken/report/table1.md")).unwrap();
    assert!(report.to_lowercase().contains("failed"), "{report}");
    assert!(broken_dirs[0].join(STATUS_FILE).is_file());
    drop(cluster);
}
