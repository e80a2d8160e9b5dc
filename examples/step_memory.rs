//! Peak resident memory of one CPU training step's forward and backward pass (ProtoNet, 5-way, seeded
//! images at 84×84; the optimiser's update, which allocates little, is left out), on the `fewshot`
//! binary's allocator settings (mimalloc keeping freed pages):
//! `cargo run --release --example step_memory -- <conv4|resnet12> <stock|fast|fast-tf32> <shots> <queries>`.
//! Prints the peak resident set (VmHWM) before, after the forward pass and after the backward pass,
//! and the wall time of that one cold pass (criterion's `train_step/*` benches time warm steps).

#[path = "../benches/shared/protonet_step.rs"]
mod protonet_step;
use protonet_step::{parse_backbone, parse_ops, ProtonetStep};

#[global_allocator]
static ALLOCATOR: fewshot::allocator::MiMalloc = fewshot::allocator::MiMalloc;

fn peak_mib() -> u64 {
    fewshot::run_folders::peak_rss_bytes().expect("the system reports VmHWM") >> 20
}

fn main() {
    fewshot::allocator::keep_freed_pages();
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: step_memory <conv4|resnet12> <stock|fast|fast-tf32> <shots> <queries>";
    if args.len() != 5 {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let refuse = |what: String| -> ! {
        eprintln!("{what}; {usage}");
        std::process::exit(2)
    };
    let kind = parse_backbone(&args[1]).unwrap_or_else(|e| refuse(e));
    let ops = parse_ops(&args[2]).unwrap_or_else(|e| refuse(e));
    let count = |k: usize| -> usize {
        args[k].parse().unwrap_or_else(|_| {
            eprintln!("{:?} is not a count; {usage}", args[k]);
            std::process::exit(2);
        })
    };
    let (shots, queries) = (count(3), count(4));
    let step = ProtonetStep::new(kind, ops, shots, queries, &candle_core::Device::Cpu);
    let before = peak_mib();
    let start = std::time::Instant::now();
    let loss = step.loss();
    let after_forward = peak_mib();
    let grads = loss.backward().unwrap();
    drop(grads);
    println!(
        "{kind:?} {ops:?} {} images: peak before {before} MiB, after forward {after_forward} MiB, after backward {} MiB, {:.2} s",
        5 * (shots + queries),
        peak_mib(),
        start.elapsed().as_secs_f64()
    );
}
