//! Checks the fast path against candle's stock ops on a device, for issue #6's GPU check:
//! `fast_ops_check <cpu|cuda[:N]> [backbone[:shots:queries] … | none]` (default backbones: conv4 and
//! resnet12 on CUDA, conv4 on the CPU, where ResNet-12's stock step alone needs more than 24 GB at the
//! default 5 shots and 15 queries per class, e.g. `resnet12:1:3` fits; `none`: the op comparisons
//! only).
//! 1. Every fast op on seeded random inputs (`fewshot::model::fast_ops_check`: outputs and
//!    gradients, relative error bound 1e-4; TF32 convolutions 5e-3).
//! 2. A whole training step per backbone: the ProtoNet step of `benches/shared/protonet_step.rs`
//!    (5-way 5-shot 15-query, 84×84) built twice with the same seeded parameters, once per path; the
//!    loss and every parameter's gradient compared (l2 norm of the difference over the stock
//!    gradient's, worst parameter named). Bound: 5e-2, a catch for wrong kernels, not for rounding:
//!    at this scale the first blocks' gradients of both f32 paths sit 1e-3 to 7e-3 from an f64
//!    reference (`examples/gradient_accuracy.rs`, `benches/RESULTS.md`), so the paths differ there by
//!    far more than per op — measured on the CPU at 5.2e-3 (Conv-4, `block1.bn.bias`).
//!
//! Prints a line per comparison, then `RESULT fast_ops_check …` when every op is within the bound,
//! or `FAILED fast_ops_check …` (exit 1).
//!
//! `fast_ops_check kernels` (CUDA build) only compiles the fast path's NVRTC kernels, which needs
//! `libnvrtc` and no device: `benches/device/prepare.sh` runs it where it builds, so a kernel that does
//! not compile is found before the GPU run.

use std::panic::{catch_unwind, AssertUnwindSafe};

use fewshot::device::DeviceSpec;
use fewshot::layers::OpsPath;
use fewshot::manifest::model::BackboneKind;
use fewshot::model::fast_ops_check::{compare_with_stock, l2_relative, TOLERANCE};

#[path = "../benches/shared/protonet_step.rs"]
mod protonet_step;
use protonet_step::{parse_backbone, ProtonetStep};

#[global_allocator]
static ALLOCATOR: fewshot::allocator::MiMalloc = fewshot::allocator::MiMalloc;

/// The bound on the worst parameter gradient's l2-relative difference over a whole step.
const STEP_TOLERANCE: f64 = 5e-2;

/// The loss of each path, and the worst parameter gradient's l2-relative difference with its name.
fn whole_step(
    (kind, shots, queries): (BackboneKind, usize, usize),
    device: &candle_core::Device,
) -> Result<(f32, f32, f64, String), String> {
    let build = |ops| {
        catch_unwind(AssertUnwindSafe(|| {
            ProtonetStep::new(
                kind,
                fewshot::layers::LayerOps::f32(ops),
                shots,
                queries,
                device,
            )
        }))
        .map_err(|_| format!("building the {ops:?} step failed (see above)"))
    };
    let (stock, fast) = (build(OpsPath::Stock)?, build(OpsPath::Fast)?);
    let run = |step: &ProtonetStep| -> Result<(f32, candle_core::backprop::GradStore), String> {
        let loss = catch_unwind(AssertUnwindSafe(|| step.loss()))
            .map_err(|_| "the forward pass failed (see above)".to_string())?;
        let value = loss.to_scalar::<f32>().map_err(|e| e.to_string())?;
        Ok((value, loss.backward().map_err(|e| e.to_string())?))
    };
    let ((stock_loss, stock_grads), (fast_loss, fast_grads)) = (run(&stock)?, run(&fast)?);
    let mut worst = (0.0f64, String::new());
    for ((name, s), (_, f)) in stock.parameters().iter().zip(fast.parameters()) {
        let (gs, gf) = (stock_grads.get(s), fast_grads.get(&f));
        let (gs, gf) = match (gs, gf) {
            (Some(gs), Some(gf)) => (gs, gf),
            // e.g. the pre-training classifier, unused by an episode's loss
            (None, None) => continue,
            _ => return Err(format!("{name}: one path has a gradient, the other none")),
        };
        let r = l2_relative(gf, gs).map_err(|e| format!("{name}: {e}"))?;
        if r > worst.0 || r.is_nan() {
            worst = (r, name.clone());
        }
    }
    Ok((stock_loss, fast_loss, worst.0, worst.1))
}

/// `conv4`, `resnet12` (5 shots, 15 queries per class) or `<backbone>:<shots>:<queries>`.
fn parse_episode_step(name: &str) -> Result<(BackboneKind, usize, usize), String> {
    let mut parts = name.split(':');
    let kind = parse_backbone(parts.next().unwrap_or_default())?;
    let counts: Vec<usize> = parts
        .map(|p| p.parse().ok().filter(|&n| n > 0))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("{name:?}: shots and queries are positive counts"))?;
    match counts[..] {
        [] => Ok((kind, 5, 15)),
        [shots, queries] => Ok((kind, shots, queries)),
        _ => Err(format!("{name:?}: expected <backbone>:<shots>:<queries>")),
    }
}

fn main() {
    fewshot::allocator::keep_freed_pages();
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: fast_ops_check <cpu|cuda[:N]> [conv4|resnet12[:shots:queries] … | none]";
    let Some(spec) = args.get(1) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    if spec == "kernels" {
        compile_kernels();
    }
    let spec: DeviceSpec = spec.parse().unwrap_or_else(|e: String| {
        eprintln!("{e}\n{usage}");
        std::process::exit(2)
    });
    let names: Vec<String> = if args.len() > 2 {
        // `none`: the op comparisons only
        args[2..].iter().filter(|a| *a != "none").cloned().collect()
    } else if matches!(spec, DeviceSpec::Cpu) {
        vec!["conv4".into()]
    } else {
        vec!["conv4".into(), "resnet12".into()]
    };
    let kinds: Vec<(BackboneKind, usize, usize)> = names
        .iter()
        .map(|n| {
            parse_episode_step(n).unwrap_or_else(|e| {
                eprintln!("{e}\n{usage}");
                std::process::exit(2)
            })
        })
        .collect();
    // the cuDNN algorithm chosen per convolution shape (`cuda_rules::record_choice`), printed
    // before the result so a first GPU run shows them
    let print_choices = || {
        for line in fewshot::kernels::cuda::cuda_rules::choices() {
            println!("{line}");
        }
    };
    let fail = |why: String| -> ! {
        print_choices();
        println!("FAILED fast_ops_check device={spec} error={why}");
        std::process::exit(1)
    };
    let device = spec.open().unwrap_or_else(|e| fail(e.to_string()));
    let comparisons = compare_with_stock(&device).unwrap_or_else(|e| fail(e.to_string()));
    let mut worst_op = 0f32;
    for c in &comparisons {
        println!(
            "op {:<49} {:<13} {:>10.3e} {}",
            c.op,
            c.quantity,
            c.max_relative,
            match (c.passes(), c.bound.is_infinite()) {
                (_, true) => "reported",
                (true, false) => "ok",
                (false, false) => "FAIL",
            }
        );
        if c.bound == TOLERANCE {
            worst_op = worst_op.max(c.max_relative);
        }
    }
    let failed = comparisons.iter().filter(|c| !c.passes()).count();
    // a failing op would also stop the whole steps (the model checks its ops when built): say so first
    if failed > 0 {
        fail(format!(
            "{failed} of {} op comparisons beyond their bounds",
            comparisons.len()
        ));
    }
    let mut steps = String::new();
    let mut failed_steps = Vec::new();
    for (name, kind) in names.iter().zip(kinds) {
        match whole_step(kind, &device) {
            Ok((stock_loss, fast_loss, worst, at)) => {
                println!(
                    "step {name:<9} loss stock {stock_loss:.6} fast {fast_loss:.6}; worst gradient l2-relative {worst:.3e} ({at})"
                );
                steps.push_str(&format!(" {name}_grad_l2_relative={worst:.3e}"));
                let loss_relative = (stock_loss - fast_loss).abs() / stock_loss.abs().max(1e-12);
                let within = worst <= STEP_TOLERANCE && loss_relative <= TOLERANCE;
                if !within {
                    failed_steps.push(name.as_str());
                }
            }
            Err(e) => fail(format!("{name} step: {e}")),
        }
    }
    if !failed_steps.is_empty() {
        fail(format!(
            "whole steps beyond a relative loss difference of {TOLERANCE:e} or a gradient l2-relative {STEP_TOLERANCE:e}: {}",
            failed_steps.join(", ")
        ));
    }
    print_choices();
    println!(
        "RESULT fast_ops_check device={spec} ops_compared={} worst_f32_op_relative={worst_op:.3e}{steps}",
        comparisons.len()
    );
}

/// `kernels`: compiles the NVRTC module and exits (0 when it compiles with every kernel in it).
fn compile_kernels() -> ! {
    #[cfg(feature = "cuda")]
    match fewshot::kernels::cuda::compile_nvrtc_kernels() {
        Ok(bytes) => {
            println!("RESULT fast_ops_check kernels compiled ptx_bytes={bytes}");
            std::process::exit(0)
        }
        Err(e) => {
            println!("FAILED fast_ops_check kernels error={e}");
            std::process::exit(1)
        }
    }
    #[cfg(not(feature = "cuda"))]
    {
        println!("FAILED fast_ops_check kernels error=built without the cuda feature");
        std::process::exit(1)
    }
}
