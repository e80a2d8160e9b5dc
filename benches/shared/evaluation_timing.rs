//! Times test-episode evaluation as the suite runs it (`fewshot::eval::runner::evaluate`: the
//! backbone once per distinct image, then each episode's head) on 5-way 5-shot 15-query episodes of
//! the ProtoNet cell at 84×84 (`protonet_step.rs`), for issue #6's target of 2,000 ResNet-12 test
//! episodes in under a minute; and, for comparison, the episode-by-episode route on a few of them.
//! The episodes are drawn with the suite's sampler (seed 1) from the store named by `EVAL_STORE` (a
//! prepared `.store`, e.g. miniImageNet's `test.store`) or, without one, from a store written to a
//! temporary folder with miniImageNet's test split's shape (20 classes × 600 images, 84×84) and seeded
//! random pixels: the GPU machine has no dataset, and the time does not depend on pixel values.
//! Included by path (`#[path]`) into `examples/step_timing.rs`: measuring scaffolding.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use fewshot::data::episodes::EpisodeSpec;
use fewshot::data::frozen_episodes::FrozenEpisodes;
use fewshot::data::philox::CounterRng;
use fewshot::data::store::{Store, StoreMeta, StoreWriter};
use fewshot::data::transforms::Transform;
use fewshot::eval::episode_file::score_episode;
use fewshot::eval::episode_logits::{distinct_slots, logits_episode_by_episode};
use fewshot::eval::runner::evaluate;
use fewshot::layers::LayerOps;
use fewshot::manifest::model::BackboneKind;
use fewshot::model::few_shot::FewShotModel;

use super::protonet_step::protonet_cell;

/// Episodes timed on the episode-by-episode route (at most).
const EPISODE_BY_EPISODE: usize = 50;

/// The synthetic store's shape: miniImageNet's test split.
const CLASSES: usize = 20;
const IMAGES_PER_CLASS: usize = 600;
const SIDE: u32 = 84;

/// What one timing found, as `key=value` fields.
pub struct EvaluationTiming {
    pub episodes: usize,
    pub distinct_images: usize,
    pub evaluate_s: f64,
    pub episode_by_episode_ms: f64,
    pub store: String,
}

impl EvaluationTiming {
    pub fn fields(&self) -> String {
        format!(
            "episodes={} distinct_images={} evaluate_s={:.3} per_episode_ms={:.3} \
             episode_by_episode_ms={:.3} store={}",
            self.episodes,
            self.distinct_images,
            self.evaluate_s,
            self.evaluate_s * 1e3 / self.episodes as f64,
            self.episode_by_episode_ms,
            self.store
        )
    }
}

/// Evaluates `warm_up` episodes (untimed: kernels, algorithm choices), then times `episodes` of them
/// with `evaluate`, then up to [`EPISODE_BY_EPISODE`] episode by episode.
pub fn time_evaluation(
    device: &Device,
    kind: BackboneKind,
    ops: LayerOps,
    episodes: usize,
    warm_up: usize,
) -> Result<EvaluationTiming, String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let scratch = ScratchDir(
        std::env::temp_dir().join(format!("fewshot-eval-timing-{}", std::process::id())),
    );
    let (store, store_label) = match std::env::var_os("EVAL_STORE") {
        Some(path) => {
            let path = PathBuf::from(path);
            (
                Store::open(&path).map_err(|x| e(&x))?,
                path.display().to_string(),
            )
        }
        None => {
            let path = scratch.0.join("synthetic.store");
            write_synthetic_store(&path).map_err(|x| e(&x))?;
            (
                Store::open(&path).map_err(|x| e(&x))?,
                format!("synthetic-{CLASSES}x{IMAGES_PER_CLASS}"),
            )
        }
    };
    let spec = EpisodeSpec {
        n_way: 5,
        n_shot: 5,
        n_query: 15,
    };
    let drawn = FrozenEpisodes::draw(&store, spec, 1, warm_up + episodes).map_err(|x| e(&x))?;
    let all = drawn
        .resolve(&store, Path::new("drawn episodes"))
        .map_err(|x| e(&x))?;
    let (warm, timed) = all.split_at(warm_up);
    let model =
        FewShotModel::new(&protonet_cell(kind, ops), 64, device, None).map_err(|x| e(&x))?;
    let transform = Transform::PROTOCOL_TEST;
    evaluate(&model, &store, warm, transform, "warm-up").map_err(|x| e(&x))?;
    device.synchronize().map_err(|x| e(&x))?;
    let start = Instant::now();
    let records = evaluate(&model, &store, timed, transform, "timed").map_err(|x| e(&x))?;
    let evaluate_s = start.elapsed().as_secs_f64();
    assert_eq!(records.len(), timed.len());
    let few = &timed[..timed.len().min(EPISODE_BY_EPISODE)];
    let start = Instant::now();
    logits_episode_by_episode(
        &model,
        &store,
        few,
        transform,
        // the logits to the host and scored there, as `evaluate` does
        &mut |_, logits: Tensor, labels| {
            score_episode(&logits.to_dtype(DType::F32)?.to_vec2()?, labels);
            Ok(())
        },
    )
    .map_err(|x| e(&x))?;
    let episode_by_episode_ms = start.elapsed().as_secs_f64() * 1e3 / few.len() as f64;
    Ok(EvaluationTiming {
        episodes: timed.len(),
        distinct_images: distinct_slots(timed).len(),
        evaluate_s,
        episode_by_episode_ms,
        store: store_label,
    })
}

/// A folder removed when dropped (also when the timing fails part-way).
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A test split of seeded random 84×84 RGB images.
fn write_synthetic_store(path: &Path) -> fewshot::Result<()> {
    let meta = StoreMeta {
        dataset: "synthetic".into(),
        split: "test".into(),
        split_variant: "default".into(),
        source: "seeded random pixels (evaluation timing)".into(),
        source_sha256: Vec::new(),
        size: SIDE,
        channels: 3,
        decoder: "none".into(),
        transform: "none".into(),
        normalization_mean: vec![0.485, 0.456, 0.406],
        normalization_std: vec![0.229, 0.224, 0.225],
        normalization_source: "ImageNet".into(),
    };
    let mut writer = StoreWriter::create(path, meta)?;
    let mut rng = CounterRng::new(CounterRng::key_from("evaluation-timing"), 0);
    let mut pixels = vec![0u8; (SIDE * SIDE * 3) as usize];
    for class in 0..CLASSES {
        for image in 0..IMAGES_PER_CLASS {
            pixels.iter_mut().for_each(|p| *p = rng.next_u32() as u8);
            let file = format!("{image:04}.png");
            writer.push(&format!("class{class:02}"), &file, &pixels, &file)?;
        }
    }
    writer.finish()?;
    Ok(())
}
