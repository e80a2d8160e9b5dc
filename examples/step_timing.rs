//! Times one training step by phase on a device, for the GPU comparison of issue #6 and for the same
//! measurement on CPU: `step_timing <cpu|cuda[:N]> <step> <stock|fast|fast-tf32|fast-fastest> [steps] [warm-up]` (defaults 20 timed steps after 5 warm-up steps).
//! - `conv4`, `resnet12`: the benches' ProtoNet step (5-way 5-shot 15-query, 100 seeded images at
//!   84×84, `benches/shared/protonet_step.rs`), as `../shared/bench/torch_reference.py` times PyTorch.
//! - `conv4-eval`, `resnet12-eval`: the same ProtoNet episode evaluated (evaluation mode, no
//!   backward): `backbone_ms`/`head_ms`/`step_ms` are per test episode (issue #6's target: 2,000
//!   ResNet-12 episodes in under a minute, i.e. 30 ms each). The parameters are variables, so candle
//!   records the graph as it does when the suite evaluates (it has no no-gradient mode).
//! - `conv4-episodes`, `resnet12-episodes`: `steps` test episodes (5-way 5-shot 15-query) evaluated
//!   as the suite evaluates them (`evaluate`: the backbone once per distinct image), after `warm-up`
//!   episodes, from `EVAL_STORE` or a synthetic store shaped like miniImageNet's test split
//!   (`benches/shared/evaluation_timing.rs`): `RESULT … episodes=… distinct_images=… evaluate_s=…
//!   per_episode_ms=… episode_by_episode_ms=…` (the last over at most 50 episodes, the old route).
//! - `lwfm-r18-1s`, `lwfm-r18-5s`: the paper protocol's LWFM-SPM step on ResNet-18 (5-way 1- or
//!   5-shot, 15 queries per class, auxiliary batch of 128, the authors' three losses;
//!   `benches/shared/lwfm_spm_step.rs`), as the authors' figures quoted in issue #6 were measured;
//!   `lwfm-r18-1s-eval`, `lwfm-r18-5s-eval`: one such test episode (evaluation mode, forward only, no
//!   auxiliary batch). Both also print `matching_ms`, the median of SPM's host side per step or
//!   episode (`fewshot::heads::take_matching_time`: the costs' copy to the host and the assignments),
//!   part of `head_ms`.
//! - `layers-conv4`, `layers-resnet12`: not a step but its backbone's layers one by one
//!   (`benches/shared/layer_timing.rs`): a line `layer <kind> <label> count=… forward_ms=…
//!   backward_ms=… step_ms=…` per distinct layer (`steps` timings after `warm-up`, medians), then
//!   `RESULT step_timing … conv_ms=… batch_norm_ms=… max_pool_ms=… activation_ms=… layers_ms=…`:
//!   per step, count × (forward + backward), summed by kind, to set beside the step's phases.
//!
//! Phases, each followed by a device synchronisation (medians): the backbone, the head and losses
//! (for LWFM-SPM this holds its host-side semantic-pixel matching), backward, then SGD with Nesterov
//! momentum (the suite's optimiser; PyTorch's reference uses Adam). The whole step is timed as
//! PyTorch's reference times it, over `steps` further steps with one synchronisation at the end (the
//! mean), so the host queues each phase's kernels while the device still runs the last. Prints one
//! line, in milliseconds: `RESULT step_timing device=… backbone=… ops=… backbone_ms=… head_ms=…
//! forward_ms=… backward_ms=… optimiser_ms=… step_ms=…` (forward = backbone + head), or
//! `FAILED step_timing … error=…` when the step cannot run there, and exits 1.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use candle_core::{Tensor, Var};
use fewshot::device::DeviceSpec;
use fewshot::layers::LayerOps;
use fewshot::manifest::model::BackboneKind;
use fewshot::model::optimizer::Sgd;

#[path = "../benches/shared/protonet_step.rs"]
mod protonet_step;
use protonet_step::{parse_backbone, parse_ops, ProtonetStep};
#[path = "../benches/shared/evaluation_timing.rs"]
mod evaluation_timing;
#[path = "../benches/shared/layer_timing.rs"]
mod layer_timing;
#[path = "../benches/shared/lwfm_spm_step.rs"]
mod lwfm_spm_step;
use lwfm_spm_step::LwfmSpmStep;

#[global_allocator]
static ALLOCATOR: fewshot::allocator::MiMalloc = fewshot::allocator::MiMalloc;

/// The median of some timings, in milliseconds.
fn median_ms(mut seconds: Vec<f64>) -> f64 {
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2] * 1e3
}

/// Which step to time.
#[derive(Clone, Copy)]
enum StepKind {
    /// the backbone's layers one by one (not a step)
    Layers(BackboneKind),
    Protonet(BackboneKind),
    /// a ProtoNet test episode: forward only, evaluation mode
    Evaluation(BackboneKind),
    /// many ProtoNet test episodes through the suite's `evaluate`
    Episodes(BackboneKind),
    /// LWFM-SPM on ResNet-18 with this many shots
    LwfmSpm(usize),
    /// an LWFM-SPM test episode on ResNet-18 with this many shots: forward only, evaluation mode
    LwfmSpmEvaluation(usize),
}

fn parse_step(name: &str) -> Result<StepKind, String> {
    match name {
        "lwfm-r18-1s" => Ok(StepKind::LwfmSpm(1)),
        "lwfm-r18-5s" => Ok(StepKind::LwfmSpm(5)),
        "lwfm-r18-1s-eval" => Ok(StepKind::LwfmSpmEvaluation(1)),
        "lwfm-r18-5s-eval" => Ok(StepKind::LwfmSpmEvaluation(5)),
        other if other.starts_with("layers-") => {
            parse_backbone(&other["layers-".len()..]).map(StepKind::Layers)
        }
        other => {
            if let Some(backbone) = other.strip_suffix("-eval") {
                parse_backbone(backbone).map(StepKind::Evaluation)
            } else if let Some(backbone) = other.strip_suffix("-episodes") {
                parse_backbone(backbone).map(StepKind::Episodes)
            } else {
                parse_backbone(other).map(StepKind::Protonet)
            }
        }
    }
}

/// A built step: its loss (calling the closure between backbone and head) and its parameters.
enum Built {
    Protonet(ProtonetStep),
    Evaluation(ProtonetStep),
    LwfmSpm(LwfmSpmStep),
    LwfmSpmEvaluation(LwfmSpmStep),
}

impl Built {
    fn loss_with(&self, between: &mut dyn FnMut()) -> Tensor {
        match self {
            Built::Protonet(s) => s.loss_with(between),
            Built::Evaluation(s) => s.evaluate_with(between),
            Built::LwfmSpm(s) => s.loss_with(between),
            Built::LwfmSpmEvaluation(s) => s.evaluate_with(between),
        }
    }

    /// Whether the step trains (backward and optimiser) or only evaluates.
    fn trains(&self) -> bool {
        !matches!(self, Built::Evaluation(_) | Built::LwfmSpmEvaluation(_))
    }

    /// Whether the step runs LWFM-SPM's matching (and so reports its time).
    fn matches(&self) -> bool {
        matches!(self, Built::LwfmSpm(_) | Built::LwfmSpmEvaluation(_))
    }

    fn parameters(&self) -> Vec<(String, Var)> {
        match self {
            Built::Protonet(s) | Built::Evaluation(s) => s.parameters(),
            Built::LwfmSpm(s) | Built::LwfmSpmEvaluation(s) => s.parameters(),
        }
    }
}

fn main() {
    fewshot::allocator::keep_freed_pages();
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: step_timing <cpu|cuda[:N]> <conv4|resnet12|conv4-eval|resnet12-eval|conv4-episodes|resnet12-episodes|lwfm-r18-1s|lwfm-r18-5s|lwfm-r18-1s-eval|lwfm-r18-5s-eval|layers-conv4|layers-resnet12> <stock|fast|fast-tf32|fast-fastest> [steps] [warm-up]";
    if !(4..=6).contains(&args.len()) {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let refuse = |what: &str| -> ! {
        eprintln!("{what}\n{usage}");
        std::process::exit(2)
    };
    let spec: DeviceSpec = args[1].parse().unwrap_or_else(|e: String| refuse(&e));
    let kind = parse_step(&args[2]).unwrap_or_else(|e| refuse(&e));
    let ops = parse_ops(&args[3]).unwrap_or_else(|e| refuse(&e));
    let count = |k: usize, default: usize| -> usize {
        args.get(k).map_or(default, |a| {
            a.parse()
                .ok()
                .filter(|&n| n > 0)
                .unwrap_or_else(|| refuse(&format!("{a:?} is not a positive count")))
        })
    };
    let (steps, warm_up) = (count(4, 20), count(5, 5));
    let label = format!("device={spec} backbone={} ops={}", args[2], args[3]);
    if let StepKind::Episodes(backbone) = kind {
        let timing = spec.open().map_err(|e| e.to_string()).and_then(|device| {
            catch_unwind(AssertUnwindSafe(|| {
                evaluation_timing::time_evaluation(&device, backbone, ops, steps, warm_up)
            }))
            .map_err(|_| "the evaluation panicked (see above)".to_string())?
        });
        match timing {
            Ok(t) => println!("RESULT step_timing {label} {}", t.fields()),
            Err(e) => {
                println!("FAILED step_timing {label} error={e}");
                std::process::exit(1);
            }
        }
        return;
    }
    if let StepKind::Layers(backbone) = kind {
        match time_layers(spec, backbone, ops, steps, warm_up) {
            Ok(sums) => println!("RESULT step_timing {label} {sums} repeats={steps}"),
            Err(e) => {
                println!("FAILED step_timing {label} error={e}");
                std::process::exit(1);
            }
        }
        return;
    }
    match time_steps(spec, kind, ops, steps, warm_up) {
        Ok(([backbone, head, backward, optimiser, step], matching)) => println!(
            "RESULT step_timing {label} backbone_ms={backbone:.2} head_ms={head:.2} \
             forward_ms={:.2} backward_ms={backward:.2} optimiser_ms={optimiser:.2} \
             step_ms={step:.2} steps={steps}{}",
            backbone + head,
            matching.map_or(String::new(), |ms| format!(" matching_ms={ms:.2}"))
        ),
        Err(e) => {
            println!("FAILED step_timing {label} error={e}");
            std::process::exit(1);
        }
    }
}

/// Times each distinct layer of `backbone` (printing a line each) and returns the per-kind sums per
/// step as `key=value` fields.
fn time_layers(
    spec: DeviceSpec,
    backbone: BackboneKind,
    ops: LayerOps,
    repeats: usize,
    warm_up: usize,
) -> Result<String, String> {
    let device = spec.open().map_err(|e| e.to_string())?;
    let mut sums = [0f64; 4];
    for layer in layer_timing::backbone_layers(backbone, 100, 84) {
        let t = catch_unwind(AssertUnwindSafe(|| {
            layer_timing::time_layer(&layer, ops, &device, repeats, warm_up)
        }))
        .map_err(|_| format!("{} failed (see above)", layer.label))?
        .map_err(|e| format!("{}: {e}", layer.label))?;
        println!(
            "layer {:<10} {:<38} count={} forward_ms={:.3} backward_ms={:.3} step_ms={:.3}",
            layer.kind.name(),
            layer.label,
            layer.count,
            t.forward_ms,
            t.backward_ms,
            t.step_ms()
        );
        let k = layer_timing::OpKind::ALL
            .iter()
            .position(|&k| k == layer.kind)
            .expect("a listed kind");
        sums[k] += t.step_ms();
    }
    let mut fields: Vec<String> = layer_timing::OpKind::ALL
        .iter()
        .zip(sums)
        .map(|(k, ms)| format!("{}_ms={ms:.2}", k.name()))
        .collect();
    fields.push(format!("layers_ms={:.2}", sums.iter().sum::<f64>()));
    Ok(fields.join(" "))
}

/// Records one step's four phases (between consecutive instants) when `timed`.
fn phases_after(phases: &mut [Vec<f64>; 4], timed: bool, at: [Instant; 5]) {
    if timed {
        for (k, phase) in phases.iter_mut().enumerate() {
            phase.push((at[k + 1] - at[k]).as_secs_f64());
        }
    }
}

/// Medians of the backbone, head, backward and optimiser phases over `steps` after `warm_up`
/// (synchronised after each phase), and the mean whole-step time over `steps` more (synchronised
/// once, at the end); for LWFM-SPM also the median of its matching's share of the head phase.
fn time_steps(
    spec: DeviceSpec,
    kind: StepKind,
    ops: LayerOps,
    steps: usize,
    warm_up: usize,
) -> Result<([f64; 5], Option<f64>), String> {
    let device = spec.open().map_err(|e| e.to_string())?;
    // the step's construction unwraps inside the shared scaffolding: report a panic as a failure
    let step = catch_unwind(|| match kind {
        StepKind::Protonet(backbone) => {
            Built::Protonet(ProtonetStep::new(backbone, ops, 5, 15, &device))
        }
        StepKind::Evaluation(backbone) => {
            Built::Evaluation(ProtonetStep::new(backbone, ops, 5, 15, &device))
        }
        StepKind::LwfmSpm(shots) => Built::LwfmSpm(LwfmSpmStep::new(shots, ops, &device)),
        StepKind::LwfmSpmEvaluation(shots) => {
            Built::LwfmSpmEvaluation(LwfmSpmStep::new(shots, ops, &device))
        }
        StepKind::Layers(_) => unreachable!("layers are timed by time_layers"),
        StepKind::Episodes(_) => unreachable!("episodes are timed by time_evaluation"),
    })
    .map_err(|_| "building the model or the episode failed (see above)".to_string())?;
    let params = step.parameters();
    let mut sgd = Sgd::new(0.9, true, 5e-4).on_path(ops.path);
    let sync = || device.synchronize().map_err(|e| e.to_string());
    let mut phases = [vec![], vec![], vec![], vec![]];
    let mut matching = Vec::new();
    for i in 0..warm_up + steps {
        fewshot::heads::take_matching_time();
        let t0 = Instant::now();
        let mut t_backbone = t0;
        let mut synced = Ok(());
        let loss = catch_unwind(AssertUnwindSafe(|| {
            step.loss_with(&mut || {
                synced = sync();
                t_backbone = Instant::now();
            })
        }))
        .map_err(|_| "the forward pass failed (see above)".to_string())?;
        synced?;
        sync()?;
        let t1 = Instant::now();
        if i >= warm_up {
            matching.push(fewshot::heads::take_matching_time().as_secs_f64());
        }
        if step.trains() {
            let grads = loss.backward().map_err(|e| e.to_string())?;
            sync()?;
            let t2 = Instant::now();
            sgd.step(&grads, &params, 0.01).map_err(|e| e.to_string())?;
            sync()?;
            phases_after(
                &mut phases,
                i >= warm_up,
                [t0, t_backbone, t1, t2, Instant::now()],
            );
        } else {
            phases_after(&mut phases, i >= warm_up, [t0, t_backbone, t1, t1, t1]);
        }
    }
    let t0 = Instant::now();
    for _ in 0..steps {
        let loss = catch_unwind(AssertUnwindSafe(|| step.loss_with(&mut || {})))
            .map_err(|_| "the forward pass failed (see above)".to_string())?;
        if step.trains() {
            let grads = loss.backward().map_err(|e| e.to_string())?;
            sgd.step(&grads, &params, 0.01).map_err(|e| e.to_string())?;
        }
    }
    sync()?;
    let step_ms = t0.elapsed().as_secs_f64() / steps as f64 * 1e3;
    let [backbone, head, backward, optimiser] = phases;
    Ok((
        [
            median_ms(backbone),
            median_ms(head),
            median_ms(backward),
            median_ms(optimiser),
            step_ms,
        ],
        step.matches().then(|| median_ms(matching)),
    ))
}
