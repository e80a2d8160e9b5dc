//! Criterion benches of the learning core on CPU:
//! - `heads/<head>/cpu/5w1s` and `…/5w5s`: logits of one 5-way 15-query episode from seeded random
//!   feature maps shaped like ResNet-12's taps (blocks 3 and 4, 320 + 640 channels, 5×5), each head
//!   (LWFM-SPM includes its 375 / 1,875 assignments of 25×25 per layer and its matcher MLPs;
//!   `deepemd-sinkhorn` is the DeepEMD-style head with the entropic plan, ε = 0.05, 100 iterations);
//! - `train_step/conv4/cpu`: one ProtoNet training step of Conv-4 on a 5-way 5-shot 15-query episode at
//!   84×84 (100 images; forward, backward, SGD with Nesterov momentum), on seeded random images, with
//!   candle's stock ops; `train_step/conv4-fast/cpu`: the same step on the fast path (`ops = "fast"`);
//!   `train_step/resnet12-fast/cpu`: the same step with ResNet-12 on the fast path, only with
//!   `FEWSHOT_BENCH_RESNET12=1` set (a step takes about 14 s on 2 cores, so its samples take minutes;
//!   peak memory about 6 GiB, measured by `examples/step_memory.rs`);
//! - `episode/load`: drawing and loading one 5-way 5-shot 15-query training episode from the prepared
//!   miniImageNet train store with the protocol's RandomResizedCrop + flip (needs
//!   `cargo xtask fetch-data --dataset mini-imagenet`; the bench says so and stops otherwise).
//!
//! Throughput: episodes (or steps) per second. `benches/README.md` says how to run them.

use candle_core::{DType, Device};

/// The allocator the `fewshot` binary trains with (set up as `main` does in each bench), so the step is
/// timed as users run it.
#[global_allocator]
static ALLOCATOR: fewshot::allocator::MiMalloc = fewshot::allocator::MiMalloc;

use candle_nn::{VarBuilder, VarMap};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fewshot::heads::{build_head, EpisodeFeatures, HeadConfig};
use fewshot::layers::OpsPath;
use fewshot::manifest::model::{BackboneKind, SinkhornConfig};
use fewshot::model::optimizer::Sgd;

#[path = "shared/protonet_step.rs"]
mod protonet_step;
use protonet_step::{seeded, ProtonetStep};

fn heads(c: &mut Criterion) {
    fewshot::threads::pin_thread_count();
    fewshot::allocator::keep_freed_pages();
    let channels = [320usize, 640];
    let configs = [
        (
            "protonet",
            HeadConfig::Protonet {
                temperature: 64.0,
                flatten: false,
            },
        ),
        (
            "cosine",
            HeadConfig::Cosine {
                temperature: 0.2,
                flatten: false,
            },
        ),
        (
            "deepemd",
            HeadConfig::Deepemd {
                temperature: 12.5,
                sfc: None,
                sinkhorn: None,
            },
        ),
        (
            "deepemd-sinkhorn",
            HeadConfig::Deepemd {
                temperature: 12.5,
                sfc: None,
                sinkhorn: Some(SinkhornConfig {
                    epsilon: 0.05,
                    iterations: 100,
                }),
            },
        ),
        (
            "lwfm_spm",
            HeadConfig::LwfmSpm {
                temperature_attn: 5.0,
                temperature: 0.2,
                matcher_prob: 0.25,
            },
        ),
    ];
    let mut group = c.benchmark_group("heads");
    group.sample_size(10);
    group.throughput(Throughput::Elements(1));
    for shot in [1usize, 5] {
        let support = seeded(&[5 * shot, 960, 5, 5], 1);
        let query = seeded(&[75, 960, 5, 5], 2);
        for (name, config) in &configs {
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
            let head = build_head(config, &channels, vb, false).unwrap();
            let features = EpisodeFeatures {
                support: &support,
                query: &query,
                channels: &channels,
                n_way: 5,
                n_shot: shot,
            };
            group.bench_function(format!("{name}/cpu/5w{shot}s"), |b| {
                b.iter(|| head.forward(&features, false).unwrap().logits)
            });
        }
    }
    group.finish();
}

fn train_step(c: &mut Criterion) {
    fewshot::threads::pin_thread_count();
    fewshot::allocator::keep_freed_pages();
    let mut group = c.benchmark_group("train_step");
    group.sample_size(10);
    group.throughput(Throughput::Elements(1));
    let mut steps = vec![
        ("conv4/cpu", BackboneKind::Conv4, OpsPath::Stock),
        ("conv4-fast/cpu", BackboneKind::Conv4, OpsPath::Fast),
    ];
    // opt-in: about 14 s per step on the 2-core build machine
    if std::env::var_os("FEWSHOT_BENCH_RESNET12").is_some() {
        steps.push(("resnet12-fast/cpu", BackboneKind::Resnet12, OpsPath::Fast));
    }
    for (name, kind, ops) in steps {
        // 5-way 5-shot 15-query: 100 images
        let step = ProtonetStep::new(
            kind,
            fewshot::layers::LayerOps::f32(ops),
            5,
            15,
            &candle_core::Device::Cpu,
        );
        let params = step.parameters();
        let mut sgd = Sgd::new(0.9, true, 5e-4).on_path(ops);
        group.bench_function(name, |b| {
            b.iter(|| {
                let grads = step.loss().backward().unwrap();
                sgd.step(&grads, &params, 0.01).unwrap();
            })
        });
    }
    group.finish();
}

fn episode_load(c: &mut Criterion) {
    use fewshot::data::episodes::{EpisodeSampler, EpisodeSpec, SplitIndex};
    use fewshot::data::store::Store;
    use fewshot::data::transforms::Transform;
    use fewshot::model::episode_batch::slots_of;
    let data = std::env::var_os("FEWSHOT_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/datasets"))
        });
    let path = data.join("mini-imagenet/train.store");
    let store = match Store::open(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "episode/load needs {}: {e}; run `cargo xtask fetch-data --dataset mini-imagenet`",
                path.display()
            );
            std::process::exit(2);
        }
    };
    let index = SplitIndex::from_header(&store.header);
    let spec = EpisodeSpec {
        n_way: 5,
        n_shot: 5,
        n_query: 15,
    };
    let sampler = EpisodeSampler::new("mini-imagenet", "train", spec, 1, &index).unwrap();
    let loader = fewshot::data::episode_tensors::EpisodeLoader {
        store: &store,
        transform: Transform::Train { size: 84 },
        seed: 1,
    };
    let mut group = c.benchmark_group("episode");
    group.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    group.bench_function("load", |b| {
        b.iter(|| {
            i += 1;
            loader.load(&slots_of(&store, &sampler.episode(i)))
        })
    });
    group.finish();
}

criterion_group!(benches, heads, train_step, episode_load);
criterion_main!(benches);
