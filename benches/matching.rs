//! Criterion benches of the matching the heads run per episode, on seeded random cost matrices
//! (uniform in [0, 2), the range of LWFM-SPM's 1 − cos costs):
//! - `hungarian/cpu/9x9x3750`: a 5-way 5-shot LWFM-SPM episode on 3×3 maps (75 queries × 25 supports × 2 layers);
//! - `hungarian/cpu/9x9x750`: the 1-shot episode;
//! - `hungarian/cpu/25x25x375`: the 1-shot episode on ResNet-12's 5×5 maps, one layer;
//! - `hungarian_pathfinding/cpu/9x9x3750`: the same episode through `pathfinding` (the reference);
//! - `emd/cpu/25x25x375`: a 5-way 1-shot DeepEMD episode (75 queries × 5 prototypes, 25 nodes each).
//!
//! Each iteration takes the next of 8 distinct seeded episodes. Throughput is in problems per second. `benches/README.md` says how to run them and compare with scipy.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fewshot::data::philox::CounterRng;
use fewshot::matching::{assign_batch, assign_one, emd_batch, EmdProblem};
use rayon::prelude::*;

fn matrices(n: usize, count: usize, key: &str) -> Vec<f32> {
    let mut rng = CounterRng::new(CounterRng::key_from(key), 0);
    (0..n * n * count).map(|_| 2.0 * rng.unit_f32()).collect()
}

/// Distinct episodes the benches cycle through, so no iteration repeats the previous one's costs
/// (a branch predictor can learn a short repeated sequence, which real training never shows it).
const EPISODES: usize = 8;

fn hungarian(c: &mut Criterion) {
    let mut group = c.benchmark_group("hungarian");
    for (n, count) in [(9usize, 3750usize), (9, 750), (25, 375)] {
        let all = matrices(n, count * EPISODES, "bench-hungarian");
        let episodes: Vec<&[f32]> = all.chunks(n * n * count).collect();
        group.throughput(Throughput::Elements(count as u64));
        group.bench_with_input(
            BenchmarkId::new("cpu", format!("{n}x{n}x{count}")),
            &episodes,
            |b, episodes| {
                let mut k = 0;
                b.iter(|| {
                    k = (k + 1) % EPISODES;
                    assign_batch(episodes[k], n)
                })
            },
        );
    }
    group.finish();
    let mut reference = c.benchmark_group("hungarian_pathfinding");
    let costs = matrices(9, 3750, "bench-hungarian");
    reference.throughput(Throughput::Elements(3750));
    reference.sample_size(10);
    reference.bench_function("cpu/9x9x3750", |b| {
        b.iter(|| {
            costs
                .par_chunks(81)
                .flat_map_iter(|m| assign_one(m, 9))
                .collect::<Vec<u32>>()
        })
    });
    reference.finish();
}

fn emd(c: &mut Criterion) {
    let mut rng = CounterRng::new(CounterRng::key_from("bench-emd"), 0);
    let problems: Vec<EmdProblem> = (0..375)
        .map(|_| EmdProblem {
            supply: (0..25).map(|_| 0.05 + rng.unit_f32() as f64).collect(),
            demand: (0..25).map(|_| 0.05 + rng.unit_f32() as f64).collect(),
            cost: (0..625).map(|_| 2.0 * rng.unit_f32() as f64).collect(),
        })
        .collect();
    let mut group = c.benchmark_group("emd");
    group.throughput(Throughput::Elements(375));
    group.sample_size(10);
    group.bench_function("cpu/25x25x375", |b| b.iter(|| emd_batch(&problems)));
    group.finish();
}

criterion_group!(benches, hungarian, emd);
criterion_main!(benches);
