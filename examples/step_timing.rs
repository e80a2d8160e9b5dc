//! Times one ProtoNet training step by phase on a device, for the GPU comparison of issue #6 and for
//! the same measurement on CPU: `step_timing <cpu|cuda[:N]> <conv4|resnet12> <fast|stock> [steps]
//! [warm-up]` (defaults 20 timed steps after 5 warm-up steps). The step is the benches' one
//! (5-way 5-shot 15-query, 100 seeded images at 84×84, `benches/shared/protonet_step.rs`): forward
//! and cross-entropy, backward, then SGD with Nesterov momentum (the suite's optimiser; the PyTorch
//! reference, `../shared/bench/torch_reference.py`, uses Adam). The phases are timed with the device
//! synchronised after each (medians); the whole step is timed as PyTorch's reference times it, over
//! `steps` further steps with one synchronisation at the end (the mean), so the host queues each
//! phase's kernels while the device still runs the last. Prints one line, in milliseconds:
//! `RESULT step_timing device=… backbone=… ops=… forward_ms=… backward_ms=… optimiser_ms=… step_ms=…`,
//! or `FAILED step_timing … error=…` when the step cannot run there (e.g. a fast op without a CUDA
//! kernel), and exits 1.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use fewshot::device::DeviceSpec;
use fewshot::layers::OpsPath;
use fewshot::manifest::model::BackboneKind;
use fewshot::train::optimizer::Sgd;

#[path = "../benches/shared/protonet_step.rs"]
mod protonet_step;
use protonet_step::{parse_backbone, parse_ops, ProtonetStep};

#[global_allocator]
static ALLOCATOR: fewshot::allocator::MiMalloc = fewshot::allocator::MiMalloc;

/// The median of some timings, in milliseconds.
fn median_ms(mut seconds: Vec<f64>) -> f64 {
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2] * 1e3
}

fn main() {
    fewshot::allocator::keep_freed_pages();
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: step_timing <cpu|cuda[:N]> <conv4|resnet12> <fast|stock> [steps] [warm-up]";
    if !(4..=6).contains(&args.len()) {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let refuse = |what: &str| -> ! {
        eprintln!("{what}\n{usage}");
        std::process::exit(2)
    };
    let spec: DeviceSpec = args[1].parse().unwrap_or_else(|e: String| refuse(&e));
    let kind = parse_backbone(&args[2]).unwrap_or_else(|e| refuse(&e));
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
    match time_steps(spec, kind, ops, steps, warm_up) {
        Ok([forward, backward, optimiser, step]) => println!(
            "RESULT step_timing {label} forward_ms={forward:.2} backward_ms={backward:.2} \
             optimiser_ms={optimiser:.2} step_ms={step:.2} steps={steps}"
        ),
        Err(e) => {
            println!("FAILED step_timing {label} error={e}");
            std::process::exit(1);
        }
    }
}

/// Medians of forward, backward and optimiser times over `steps` after `warm_up` (synchronised after
/// each phase), and the mean whole-step time over `steps` more (synchronised once, at the end).
fn time_steps(
    spec: DeviceSpec,
    kind: BackboneKind,
    ops: OpsPath,
    steps: usize,
    warm_up: usize,
) -> Result<[f64; 4], String> {
    let device = spec.open().map_err(|e| e.to_string())?;
    // the step's construction unwraps inside the shared scaffolding: report a panic as a failure
    let step = catch_unwind(|| ProtonetStep::new(kind, ops, 5, 15, &device))
        .map_err(|_| "building the model or the episode failed (see above)".to_string())?;
    let params = step.parameters();
    let mut sgd = Sgd::new(0.9, true, 5e-4);
    let sync = || device.synchronize().map_err(|e| e.to_string());
    let mut phases = [vec![], vec![], vec![]];
    for i in 0..warm_up + steps {
        let t0 = Instant::now();
        let loss = catch_unwind(AssertUnwindSafe(|| step.loss()))
            .map_err(|_| "the forward pass failed (see above)".to_string())?;
        sync()?;
        let t1 = Instant::now();
        let grads = loss.backward().map_err(|e| e.to_string())?;
        sync()?;
        let t2 = Instant::now();
        sgd.step(&grads, &params, 0.01).map_err(|e| e.to_string())?;
        sync()?;
        let t3 = Instant::now();
        if i >= warm_up {
            for (k, (a, b)) in [(t0, t1), (t1, t2), (t2, t3)].into_iter().enumerate() {
                phases[k].push((b - a).as_secs_f64());
            }
        }
    }
    let t0 = Instant::now();
    for _ in 0..steps {
        let loss = catch_unwind(AssertUnwindSafe(|| step.loss()))
            .map_err(|_| "the forward pass failed (see above)".to_string())?;
        let grads = loss.backward().map_err(|e| e.to_string())?;
        sgd.step(&grads, &params, 0.01).map_err(|e| e.to_string())?;
    }
    sync()?;
    let step_ms = t0.elapsed().as_secs_f64() / steps as f64 * 1e3;
    let [f, b, o] = phases;
    Ok([median_ms(f), median_ms(b), median_ms(o), step_ms])
}
