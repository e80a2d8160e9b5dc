//! Evaluation's two routes give the same logits, bit for bit on the CPU: the backbone once per
//! distinct image of a group of episodes (what `evaluate` runs) and on each episode's images together
//! (as before, and as training runs it), for Conv-4 on both ops paths and with TF32 convolutions, and
//! ResNet-12 and ResNet-18 on the fast path, with one group for all episodes (its last backbone batch
//! padded) and with one group per episode, on real miniImageNet test episodes (two of them repeated, so
//! rows are read again from the features already computed).

use candle_core::{Device, Result, Tensor};
use fewshot::backbones::BackboneConfig;
use fewshot::data::frozen_episodes::{FrozenEpisodes, SlotEpisode};
use fewshot::data::store::Store;
use fewshot::data::transforms::Transform;
use fewshot::eval::episode_logits::{
    logits_by_distinct_images, logits_episode_by_episode, FEATURE_BUDGET_BYTES,
};
use fewshot::layers::{ConvMath, OpsPath};
use fewshot::manifest::cell::CellConfig;
use fewshot::manifest::model::BackboneKind;
use fewshot::model::few_shot::FewShotModel;

use crate::real_data::mini_imagenet_store_dir;

/// Per visited episode: its index, its logits' bits and its query labels.
type Visited = Vec<(u64, Vec<u32>, Vec<usize>)>;

fn recorder(into: &mut Visited) -> impl FnMut(&SlotEpisode, Tensor, &[usize]) -> Result<()> + '_ {
    |episode, logits, labels| {
        let bits = logits
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .map(|v| v.to_bits())
            .collect();
        into.push((episode.index, bits, labels.to_vec()));
        Ok(())
    }
}

fn cell(kind: BackboneKind, ops: OpsPath, math: ConvMath) -> CellConfig {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(
        repo.join("manifests/cells/ci/mini-imagenet-conv4-lwfm-spm-5w5s.toml"),
    )
    .unwrap();
    let mut cell = CellConfig::from_toml(&text).unwrap();
    if kind != BackboneKind::Conv4 {
        cell.backbone = BackboneConfig::default_for(kind, 3);
    }
    if kind == BackboneKind::Resnet18 {
        cell.backbone.taps = vec![5, 6];
    }
    cell.backbone.ops = ops;
    cell.backbone.conv_math = math;
    cell
}

#[test]
fn both_evaluation_routes_give_the_same_logits_bit_for_bit() {
    fewshot::threads::pin_thread_count();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let path =
        repo.join("manifests/episodes/mini-imagenet/test-5w5s15q-seed1-n2000.episodes.json.gz");
    let store = Store::open(&mini_imagenet_store_dir().join("test.store")).unwrap();
    let all = FrozenEpisodes::read(&path)
        .unwrap()
        .resolve(&store, &path)
        .unwrap();
    let transform = Transform::Test {
        resize: 36,
        crop: 32,
    };
    for (kind, ops, math, count) in [
        (BackboneKind::Conv4, OpsPath::Fast, ConvMath::F32, 10),
        (BackboneKind::Conv4, OpsPath::Stock, ConvMath::F32, 6),
        (BackboneKind::Conv4, OpsPath::Fast, ConvMath::Tf32, 4),
        (BackboneKind::Resnet12, OpsPath::Fast, ConvMath::F32, 3),
        // at 32×32 ResNet-18's layer4 is 1×1, too small for LWFM-SPM: its layer3 taps instead
        (BackboneKind::Resnet18, OpsPath::Fast, ConvMath::F32, 3),
    ] {
        let mut episodes = all[..count].to_vec();
        episodes.push(all[0].clone());
        episodes.push(all[count / 2].clone());
        let model = FewShotModel::new(&cell(kind, ops, math), 64, &Device::Cpu, None).unwrap();
        let mut reference = Visited::new();
        logits_episode_by_episode(
            &model,
            &store,
            &episodes,
            transform,
            &mut recorder(&mut reference),
        )
        .unwrap();
        assert_eq!(reference.len(), episodes.len());
        assert!(
            reference
                .iter()
                .any(|(_, bits, _)| bits.windows(2).any(|w| w[0] != w[1])),
            "the logits vary"
        );
        // the one-group-per-episode edge (budget 1) depends on the grouping, not the backbone: the
        // Conv-4 rows check it, the ResNets (the test's slowest rows) only the budgeted route
        let budgets: &[usize] = match kind {
            BackboneKind::Conv4 => &[FEATURE_BUDGET_BYTES, 1],
            _ => &[FEATURE_BUDGET_BYTES],
        };
        for &budget in budgets {
            let mut images = 0;
            let mut distinct = Visited::new();
            logits_by_distinct_images(
                &model,
                &store,
                &episodes,
                transform,
                budget,
                &mut |n| images += n,
                &mut recorder(&mut distinct),
            )
            .unwrap();
            let label = format!("{kind:?} {ops:?} {math:?}, budget {budget} bytes");
            assert!(distinct == reference, "{label}: the routes' logits differ");
            let drawn = episodes.len() * 100;
            if budget == 1 {
                assert_eq!(images, drawn, "{label}: one group per episode");
            } else {
                // the repeated episodes' images (and any image two episodes share) run once
                assert!(images <= drawn - 200, "{label}: {images} images of {drawn}");
            }
        }
    }
}
