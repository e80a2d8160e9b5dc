//! `reproduce --jobs 2` against `--jobs 1`: the smoke profile's two ProtoNet cells, run two at a time
//! and one after another with the thread count pinned (`RAYON_NUM_THREADS=1`, which decides the order
//! of floating-point reductions), give the same per-episode files and the same table. Ignored by
//! `cargo test` (it builds and runs the `fewshot` binary, which a running `cargo test` holds the build
//! lock against): `cargo test -p xtask local_jobs_tests -- --ignored`. `cargo xtask ci` made the same
//! check inside its smoke step until 2026-12-08; it now compares the Slurm step's two tasks at once
//! with the smoke step's `--jobs 2` run instead (68 s less, one core of it idle).

use std::path::Path;

use crate::reproduce::{self, ReproduceArgs};

fn args(root: &Path, name: &str, jobs: usize) -> ReproduceArgs {
    let mut a = ReproduceArgs::smoke(root.join(name).join("runs"));
    a.method = vec!["protonet".into()];
    a.reports = Some(root.join(name).join("report"));
    a.jobs = jobs;
    a
}

#[test]
#[ignore = "builds and runs the fewshot binary: cargo test -p xtask local_jobs_tests -- --ignored"]
fn two_jobs_give_the_per_episode_files_of_one() {
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (one, two) = (args(root, "one", 1), args(root, "two", 2));
    let dirs = |a: &ReproduceArgs| {
        let plan = reproduce::plan(a).unwrap();
        let d: Vec<_> = plan
            .cells
            .iter()
            .map(|c| plan.runs.join(c.cell.hash()))
            .collect();
        d
    };
    let (one_dirs, two_dirs) = (dirs(&one), dirs(&two));
    assert_eq!(one_dirs.len(), 2);
    reproduce::run(one).unwrap();
    reproduce::run(two).unwrap();
    for (a, b) in one_dirs.iter().zip(&two_dirs) {
        let episodes = |d: &Path| std::fs::read(d.join("episodes.jsonl")).unwrap();
        assert_eq!(
            episodes(a),
            episodes(b),
            "{} vs {}",
            a.display(),
            b.display()
        );
    }
    let table = |n: &str| std::fs::read_to_string(root.join(n).join("report/table1.csv")).unwrap();
    assert_eq!(table("one"), table("two"));
}
