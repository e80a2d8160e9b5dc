//! The heads against what their formulas must give: LWFM-SPM against the authors' own code's logits
//! (`tests/fixtures/lwfm-spm-golden/`, written by their `Method.cca` in eval mode), ProtoNet and
//! cosine against hand-computed values, DeepEMD's flow-weighted similarity against its definition,
//! and a gradient check that the SPM term moves the features it matched.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use fewshot::heads::{build_head, EpisodeFeatures, HeadConfig};
use fewshot::manifest::model::SinkhornConfig;

fn golden(name: &str) -> HashMap<String, Tensor> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lwfm-spm-golden")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing from the clone",
        path.display()
    );
    candle_core::safetensors::load(&path, &Device::Cpu).unwrap()
}

fn check_golden(file: &str, shot: usize) {
    let t = golden(file);
    let weights: HashMap<String, Tensor> = t
        .iter()
        .filter(|(k, _)| k.starts_with("matcher"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
    let config = HeadConfig::LwfmSpm {
        temperature_attn: 5.0,
        temperature: 0.2,
        matcher_prob: 0.5,
    };
    let head = build_head(&config, &[512, 512], vb, false).unwrap();
    let features = EpisodeFeatures {
        support: &t["support"],
        query: &t["query"],
        channels: &[512, 512],
        n_way: 5,
        n_shot: shot,
    };
    let out = head.forward(&features, false).unwrap();
    let got: Vec<Vec<f32>> = out.logits.to_vec2().unwrap();
    let want: Vec<Vec<f32>> = t["logits"].to_vec2().unwrap();
    let mut worst = 0f32;
    for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
        worst = worst.max((g - w).abs() / w.abs().max(1.0));
    }
    // float32 rounding of ~1e4-term sums, magnified 5x by τ = 0.2
    assert!(
        worst < 2e-5,
        "{file}: largest relative difference from the authors' logits {worst}"
    );
    // and the predictions agree exactly
    let argmax = |rows: &Vec<Vec<f32>>| -> Vec<usize> {
        rows.iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .unwrap()
                    .0
            })
            .collect()
    };
    assert_eq!(argmax(&got), argmax(&want));
    let attended = out.attended_query.unwrap();
    assert_eq!(attended.dims(), &[75, 1024]);
}

#[test]
fn lwfm_spm_reproduces_the_authors_logits_1_shot() {
    check_golden("lwfm_spm_5w1s.safetensors", 1);
}

#[test]
fn lwfm_spm_reproduces_the_authors_logits_5_shot() {
    check_golden("lwfm_spm_5w5s.safetensors", 5);
}

/// A seeded N(0, 1)-ish tensor (Box–Muller on the suite's Philox stream).
fn seeded(shape: &[usize], key: &str) -> Tensor {
    let mut rng =
        fewshot::data::philox::CounterRng::new(fewshot::data::philox::CounterRng::key_from(key), 0);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| {
            let (u1, u2) = (rng.unit_f32().max(1e-7), rng.unit_f32());
            (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn empty_vb() -> VarBuilder<'static> {
    VarBuilder::zeros(DType::F32, &Device::Cpu)
}

#[test]
fn protonet_and_cosine_match_hand_computed_values() {
    // 2-way 1-shot, 1 channel... 2 channels, 1x1 maps: supports (1, 0) and (0, 2), query (1, 1)
    let support = Tensor::new(&[1f32, 0.0, 0.0, 2.0], &Device::Cpu)
        .unwrap()
        .reshape((2, 2, 1, 1))
        .unwrap();
    let query = Tensor::new(&[1f32, 1.0], &Device::Cpu)
        .unwrap()
        .reshape((1, 2, 1, 1))
        .unwrap();
    let f = EpisodeFeatures {
        support: &support,
        query: &query,
        channels: &[2],
        n_way: 2,
        n_shot: 1,
    };
    let proto = build_head(
        &HeadConfig::Protonet {
            temperature: 1.0,
            flatten: false,
        },
        &[2],
        empty_vb(),
        false,
    )
    .unwrap();
    // −‖(1,1)−(1,0)‖² = −1, −‖(1,1)−(0,2)‖² = −2
    assert_eq!(
        proto
            .forward(&f, false)
            .unwrap()
            .logits
            .to_vec2::<f32>()
            .unwrap(),
        vec![vec![-1.0, -2.0]]
    );
    let cos = build_head(
        &HeadConfig::Cosine {
            temperature: 0.5,
            flatten: false,
        },
        &[2],
        empty_vb(),
        false,
    )
    .unwrap();
    // cos = 1/√2 for both, / 0.5
    let got = cos
        .forward(&f, false)
        .unwrap()
        .logits
        .to_vec2::<f32>()
        .unwrap();
    for v in &got[0] {
        assert!((v - 2.0 / 2f32.sqrt()).abs() < 1e-6);
    }
}

#[test]
fn five_shot_prototypes_average_the_shots() {
    // shot-major support: supports 0..4 are shot 0 of classes 0..1 interleaved
    let support = Tensor::new(&[0f32, 10.0, 2.0, 20.0], &Device::Cpu)
        .unwrap()
        .reshape((4, 1, 1, 1))
        .unwrap();
    let query = Tensor::new(&[1f32], &Device::Cpu)
        .unwrap()
        .reshape((1, 1, 1, 1))
        .unwrap();
    let f = EpisodeFeatures {
        support: &support,
        query: &query,
        channels: &[1],
        n_way: 2,
        n_shot: 2,
    };
    let proto = build_head(
        &HeadConfig::Protonet {
            temperature: 1.0,
            flatten: false,
        },
        &[1],
        empty_vb(),
        false,
    )
    .unwrap();
    // prototypes: class 0 = mean(0, 2) = 1, class 1 = mean(10, 20) = 15
    assert_eq!(
        proto
            .forward(&f, false)
            .unwrap()
            .logits
            .to_vec2::<f32>()
            .unwrap(),
        vec![vec![0.0, -196.0]]
    );
}

#[test]
fn deepemd_equals_the_flow_weighted_similarity_and_prefers_the_matching_class() {
    let dev = Device::Cpu;
    let support = seeded(&[3, 16, 2, 2], "emd-support").relu().unwrap();
    // the query is support 1 with its positions shuffled: EMD aligns them, so class 1 wins
    let s1 = support.get(1).unwrap().reshape((16, 4)).unwrap();
    let idx = Tensor::new(&[2u32, 0, 3, 1], &dev).unwrap();
    let query = s1
        .index_select(&idx, 1)
        .unwrap()
        .reshape((1, 16, 2, 2))
        .unwrap();
    let f = EpisodeFeatures {
        support: &support,
        query: &query,
        channels: &[16],
        n_way: 3,
        n_shot: 1,
    };
    let head = build_head(
        &HeadConfig::Deepemd {
            temperature: 12.5,
            sfc: None,
            sinkhorn: None,
        },
        &[16],
        empty_vb(),
        false,
    )
    .unwrap();
    let logits = head
        .forward(&f, false)
        .unwrap()
        .logits
        .to_vec2::<f32>()
        .unwrap();
    let best = logits[0]
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0;
    assert_eq!(best, 1, "{logits:?}");
    // a perfect one-to-one match of identical centred nodes has similarity 1 everywhere it flows,
    // and the flow totals the node count, so the logit is T · 4 / 4 = T
    assert!((logits[0][1] - 12.5).abs() < 1e-3, "{logits:?}");
}

#[test]
fn the_spm_term_moves_the_features_it_matched() {
    // gradients of the SPM-only score (base term removed by comparing two λ_m) reach the query
    let dev = Device::Cpu;
    let support = seeded(&[5, 8, 3, 3], "spm-support");
    let query = Var::from_tensor(&seeded(&[10, 8, 3, 3], "spm-query")).unwrap();
    let grad_with = |matcher_prob: f64| -> Tensor {
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let config = HeadConfig::LwfmSpm {
            temperature_attn: 5.0,
            temperature: 0.2,
            matcher_prob,
        };
        let head = build_head(&config, &[4, 4], vb, false).unwrap();
        let f = EpisodeFeatures {
            support: &support,
            query: query.as_tensor(),
            channels: &[4, 4],
            n_way: 5,
            n_shot: 1,
        };
        let loss = head.forward(&f, true).unwrap().logits.sum_all().unwrap();
        let grads = loss.backward().unwrap();
        grads.get(query.as_tensor()).unwrap().clone()
    };
    let difference = (grad_with(1.0) - grad_with(0.0))
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(
        difference > 1e-3,
        "the SPM term contributes no gradient ({difference})"
    );
}

#[test]
fn deepemd_sinkhorn_is_bounded_by_the_exact_flow() {
    // the exact plan is optimal, so the entropic one's logit (T/P)·(P − cost) is at most the exact
    // logit and at most T·ε·ln(P²) below it once converged
    let support = seeded(&[6, 8, 2, 2], "sinkhorn-support").relu().unwrap();
    let query = seeded(&[4, 8, 2, 2], "sinkhorn-query").relu().unwrap();
    let (epsilon, temperature, nodes) = (0.05, 12.5, 4.0f64);
    let run = |sinkhorn: Option<SinkhornConfig>| -> Vec<Vec<f32>> {
        let config = HeadConfig::Deepemd {
            temperature,
            sfc: None,
            sinkhorn,
        };
        let head = build_head(&config, &[8], empty_vb(), false).unwrap();
        let f = EpisodeFeatures {
            support: &support,
            query: &query,
            channels: &[8],
            n_way: 3,
            n_shot: 2,
        };
        head.forward(&f, true)
            .unwrap()
            .logits
            .to_vec2::<f32>()
            .unwrap()
    };
    let exact = run(None);
    let entropic = run(Some(SinkhornConfig {
        epsilon,
        iterations: 2000,
    }));
    let bound = (temperature * epsilon * (nodes * nodes).ln()) as f32;
    for (e_row, s_row) in exact.iter().zip(&entropic) {
        for (&e, &s) in e_row.iter().zip(s_row) {
            assert!(s <= e + 1e-3, "Sinkhorn logit {s} above the exact {e}");
            assert!(
                s >= e - bound,
                "Sinkhorn logit {s} more than {bound} below the exact {e}"
            );
        }
    }
}

#[test]
fn deepemd_sinkhorn_gradients_flow_through_the_plan() {
    // in f64, the head's autograd gradient with respect to the query features equals central
    // differences of its logits: a plan (or node weights) cut off from the graph would leave out
    // their share, which at ε = 0.5 is large
    let support = seeded(&[6, 8, 2, 2], "sinkhorn-support")
        .relu()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let query0 = seeded(&[2, 8, 2, 2], "sinkhorn-query")
        .relu()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let head = build_head(
        &HeadConfig::Deepemd {
            temperature: 12.5,
            sfc: None,
            sinkhorn: Some(SinkhornConfig {
                epsilon: 0.5,
                iterations: 60,
            }),
        },
        &[8],
        empty_vb(),
        false,
    )
    .unwrap();
    // a fixed mix of the logits, so no gradient cancels by symmetry
    let mix = Tensor::new(&[[0.3f64, -1.0, 0.7], [1.1, 0.2, -0.4]], &Device::Cpu).unwrap();
    let score = |query: &Tensor| -> Tensor {
        let f = EpisodeFeatures {
            support: &support,
            query,
            channels: &[8],
            n_way: 3,
            n_shot: 2,
        };
        let logits = head.forward(&f, true).unwrap().logits;
        logits.mul(&mix).unwrap().sum_all().unwrap()
    };
    let query = Var::from_tensor(&query0).unwrap();
    let grad: Vec<f64> = score(query.as_tensor())
        .backward()
        .unwrap()
        .get(query.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let base: Vec<f64> = query0.flatten_all().unwrap().to_vec1().unwrap();
    let h = 1e-6;
    for k in (0..base.len()).step_by(5) {
        let at = |delta: f64| -> f64 {
            let mut v = base.clone();
            v[k] += delta;
            score(&Tensor::from_vec(v, query0.dims(), &Device::Cpu).unwrap())
                .to_scalar::<f64>()
                .unwrap()
        };
        let numeric = (at(h) - at(-h)) / (2.0 * h);
        assert!(
            (numeric - grad[k]).abs() < 1e-5 * (1.0 + numeric.abs()),
            "d/dquery[{k}]: {numeric} vs {}",
            grad[k]
        );
    }
}

#[test]
fn deepemd_sfc_fits_the_support_set() {
    // 3-way 2-shot; after fitting, the SFC classifies its own support set at least as well as the
    // mean prototypes, and it is deterministic for a seed
    let support = seeded(&[6, 8, 2, 2], "sfc-support").relu().unwrap();
    let f = EpisodeFeatures {
        support: &support,
        query: &support,
        channels: &[8],
        n_way: 3,
        n_shot: 2,
    };
    let accuracy = |config: &HeadConfig| -> (f32, Vec<Vec<f32>>) {
        let head = build_head(config, &[8], empty_vb(), false).unwrap();
        let logits = head
            .forward(&f, false)
            .unwrap()
            .logits
            .to_vec2::<f32>()
            .unwrap();
        let correct = logits
            .iter()
            .enumerate()
            .filter(|(i, row)| {
                row.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .unwrap()
                    .0
                    == i % 3
            })
            .count();
        (correct as f32 / 6.0, logits)
    };
    let sfc = fewshot::manifest::model::SfcConfig {
        steps: 10,
        batch: 4,
        lr: 0.5,
        seed: 3,
    };
    let (mean_acc, _) = accuracy(&HeadConfig::Deepemd {
        temperature: 12.5,
        sfc: None,
        sinkhorn: None,
    });
    let (sfc_acc, a) = accuracy(&HeadConfig::Deepemd {
        temperature: 12.5,
        sfc: Some(sfc),
        sinkhorn: None,
    });
    let (_, b) = accuracy(&HeadConfig::Deepemd {
        temperature: 12.5,
        sfc: Some(sfc),
        sinkhorn: None,
    });
    assert!(sfc_acc >= mean_acc, "{sfc_acc} < {mean_acc}");
    assert_eq!(a, b);
}
