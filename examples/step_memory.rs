//! Peak resident memory of one CPU training step's forward and backward pass (ProtoNet, 5-way, seeded
//! images at 84×84; the optimiser's update, which allocates little, is left out), on the `fewshot`
//! binary's allocator settings (mimalloc keeping freed pages):
//! `cargo run --release --example step_memory -- <conv4|resnet12> <fast|stock> <shots> <queries>`.
//! Prints the peak resident set (VmHWM) before, after the forward pass and after the backward pass,
//! and the wall time of that one cold pass (criterion's `train_step/*` benches time warm steps).

use candle_core::{Device, Tensor};
use fewshot::layers::OpsPath;
use fewshot::manifest::cell::CellConfig;
use fewshot::manifest::model::{BackboneConfig, BackboneKind};
use fewshot::train::model::FewShotModel;

#[global_allocator]
static ALLOCATOR: fewshot::allocator::MiMalloc = fewshot::allocator::MiMalloc;

fn peak_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        / 1024
}

fn seeded(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = fewshot::data::philox::CounterRng::new(
        fewshot::data::philox::CounterRng::key_from("step-memory"),
        seed,
    );
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.unit_f32() * 2.0 - 1.0).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn main() {
    fewshot::allocator::keep_freed_pages();
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: step_memory <conv4|resnet12> <fast|stock> <shots> <queries>";
    if args.len() != 5 {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let kind = match args[1].as_str() {
        "conv4" => BackboneKind::Conv4,
        "resnet12" => BackboneKind::Resnet12,
        other => {
            eprintln!("unknown backbone {other:?}; {usage}");
            std::process::exit(2);
        }
    };
    let ops = match args[2].as_str() {
        "fast" => OpsPath::Fast,
        "stock" => OpsPath::Stock,
        other => {
            eprintln!("unknown ops {other:?}; {usage}");
            std::process::exit(2);
        }
    };
    let count = |k: usize| -> usize {
        args[k].parse().unwrap_or_else(|_| {
            eprintln!("{:?} is not a count; {usage}", args[k]);
            std::process::exit(2);
        })
    };
    let (shots, queries) = (count(3), count(4));
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/cells/ci/mini-imagenet-conv4-protonet-5w5s.toml"
    ))
    .unwrap();
    let mut cell = CellConfig::from_toml(&text).unwrap();
    cell.image_size = 84;
    cell.test_resize = 92;
    if kind != cell.backbone.kind {
        cell.backbone = BackboneConfig {
            taps: vec![4],
            pool: 1,
            ..BackboneConfig::default_for(kind, 3)
        };
    }
    cell.backbone.ops = ops;
    cell.episode.n_shot = shots;
    cell.episode.n_query = queries;
    let model = FewShotModel::new(&cell, 64, &Device::Cpu, None).unwrap();
    let support = seeded(&[5 * shots, 3, 84, 84], 3);
    let query = seeded(&[5 * queries, 3, 84, 84], 4);
    let labels = Tensor::from_vec(
        (0..5 * queries as u32).map(|i| i % 5).collect::<Vec<_>>(),
        5 * queries,
        &Device::Cpu,
    )
    .unwrap();
    let before = peak_mib();
    let start = std::time::Instant::now();
    let out = model.episode(&support, &query, true).unwrap();
    let loss = candle_nn::loss::cross_entropy(&out.logits, &labels).unwrap();
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
