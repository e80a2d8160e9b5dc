//! `reproduce --dry-run`: the plan as a table — each pre-training node and cell, whether it is cached,
//! resumes, is new or stale, and its estimated cost from recorded step times (`step_costs`), else from
//! what the profile's committed report recorded for that very cell (marked `*`), else, for a resume,
//! its remaining training at the pace of its own committed steps (marked `†`; evaluation not included).

use fewshot::run_folders::{cache_state, CacheState};

use crate::reproduce::Plan;
use crate::step_costs::{
    estimate_remaining, human, own_pace, step_history, steps_done, Basis, ReportTimes,
};

pub fn print(plan: &Plan) {
    let (runs, device) = (&plan.runs, &plan.device);
    let history = step_history(runs);
    let report = ReportTimes::read(&plan.reports);
    let (mut from_report, mut at_own_pace) = (false, false);
    // this machine's step times first, else the committed report's time for the same config, else
    // a resume's own pace; a resume needs only the steps its folder has not committed (a stale
    // folder is moved aside and its cell recomputed whole)
    let mut estimate_of = |cell: &fewshot::manifest::cell::CellConfig, resumes: bool| {
        let dir = runs.join(cell.hash());
        let (done, own) = if resumes {
            (steps_done(cell, &dir), own_pace(cell, &dir))
        } else {
            (0.0, None)
        };
        let (seconds, basis) = estimate_remaining(&history, &report, cell, device, done, own)?;
        from_report |= basis == Basis::Report;
        at_own_pace |= basis == Basis::OwnPace;
        let mark = match basis {
            Basis::Machine => "",
            Basis::Report => " *",
            Basis::OwnPace => " †",
        };
        Some((seconds, mark))
    };
    if !plan.nodes.is_empty() {
        println!(
            "\n| pre-training node | cell | shared by | state | estimate |\n|---|---|---|---|---|"
        );
    }
    let mut total = Some(0.0);
    for (node, users) in &plan.nodes {
        let dir = runs.join(node.hash());
        let (state, estimate) = if fewshot::run_folders::pretrain_done(&dir) {
            ("cached", Some((0.0, "")))
        } else if dir.join(fewshot::run_files::CHECKPOINT_LAST).is_file() {
            ("resumes", estimate_of(node, true))
        } else {
            ("new", estimate_of(node, false))
        };
        total = total.zip(estimate).map(|(t, (e, _))| t + e);
        let users: Vec<String> = users.iter().map(|k| format!("#{}", k + 1)).collect();
        println!(
            "| {}/{} {} epochs | {} | {} | {state} | {} |",
            node.dataset,
            format!("{:?}", node.backbone.kind).to_lowercase(),
            node.train.pretrain.as_ref().map_or(0, |p| p.epochs),
            node.hash(),
            users.join(" "),
            shown(estimate)
        );
    }
    println!("\n| # | group | method | dataset | shot | seed | cell | state | estimate |\n|---|---|---|---|---|---|---|---|---|");
    for (k, c) in plan.cells.iter().enumerate() {
        let shared = plan.same_run_as(k);
        let state = match (
            shared,
            cache_state(runs, &plan.data_dir, &plan.manifests, c),
        ) {
            (Some(j), _) => format!("the run of #{}", j + 1),
            (None, CacheState::Done) => "cached".to_string(),
            (None, CacheState::Resumable) => "resumes".to_string(),
            (None, CacheState::New) => "new".to_string(),
            (None, CacheState::Stale(why)) => format!("stale ({why})"),
        };
        let estimate = if state == "cached" || shared.is_some() {
            Some((0.0, ""))
        } else {
            estimate_of(&c.cell, state == "resumes")
        };
        total = total.zip(estimate).map(|(t, (e, _))| t + e);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {state} | {} |",
            k + 1,
            c.group,
            c.method,
            c.dataset,
            c.shot,
            c.seed,
            c.cell.hash(),
            shown(estimate)
        );
    }
    if from_report {
        println!(
            "\n* no finished run of its kind here: the time the committed report recorded for this very config, {}",
            report.source
        );
    }
    if at_own_pace {
        println!(
            "\n† no finished run of its kind here, nor a report time: its remaining training at the pace of its own committed epochs (their median), evaluation not included"
        );
    }
    match total {
        Some(t) if at_own_pace => println!("\nestimated total: more than {} (the † cells' evaluation not included)", human(t)),
        Some(t) => println!("\nestimated total: {} (from recorded step times of finished cells with the same backbone, head, image size, shot and device, else the report's)", human(t)),
        None => println!("\nestimated total: unknown (some cells have no finished run here with the same backbone, head, image size, shot and device to time them by, nor a time in the profile's committed report)"),
    }
}

/// An estimate as the table shows it.
fn shown(estimate: Option<(f64, &str)>) -> String {
    estimate.map_or_else(
        || "unknown".into(),
        |(s, mark)| format!("{}{mark}", human(s)),
    )
}
