//! `reproduce --dry-run`: the plan as a table — each pre-training node and cell, whether it is cached,
//! resumes, is new or stale, and its estimated cost from recorded step times (`step_costs`).

use fewshot::run_folders::{cache_state, CacheState};

use crate::reproduce::Plan;
use crate::step_costs::{estimate_seconds, human, step_history};

pub fn print(plan: &Plan) {
    let (runs, device) = (&plan.runs, &plan.device);
    let history = step_history(runs);
    if !plan.nodes.is_empty() {
        println!(
            "\n| pre-training node | cell | shared by | state | estimate |\n|---|---|---|---|---|"
        );
    }
    let mut total = Some(0.0);
    for (node, users) in &plan.nodes {
        let dir = runs.join(node.hash());
        let (state, estimate) = if fewshot::run_folders::pretrain_done(&dir) {
            ("cached", Some(0.0))
        } else if dir.join(fewshot::run_files::CHECKPOINT_LAST).is_file() {
            ("resumes", estimate_seconds(&history, node, device))
        } else {
            ("new", estimate_seconds(&history, node, device))
        };
        total = total.zip(estimate).map(|(t, e)| t + e);
        let users: Vec<String> = users.iter().map(|k| format!("#{}", k + 1)).collect();
        println!(
            "| {}/{} {} epochs | {} | {} | {state} | {} |",
            node.dataset,
            format!("{:?}", node.backbone.kind).to_lowercase(),
            node.train.pretrain.as_ref().map_or(0, |p| p.epochs),
            node.hash(),
            users.join(" "),
            estimate.map(human).unwrap_or_else(|| "unknown".into())
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
            Some(0.0)
        } else {
            estimate_seconds(&history, &c.cell, device)
        };
        total = total.zip(estimate).map(|(t, e)| t + e);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {state} | {} |",
            k + 1,
            c.group,
            c.method,
            c.dataset,
            c.shot,
            c.seed,
            c.cell.hash(),
            estimate.map(human).unwrap_or_else(|| "unknown".into())
        );
    }
    match total {
        Some(t) => println!("\nestimated total: {} (from recorded step times of finished cells with the same backbone, head, image size, shot and device)", human(t)),
        None => println!("\nestimated total: unknown (some cells have no finished run with the same backbone, head, image size, shot and device to time them by)"),
    }
}
