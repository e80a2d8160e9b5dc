//! Episodes: an N-way K-shot task is data, (class, file name) pairs, and episode `i` is a pure
//! function of `(dataset, split, spec, seed, i)` and the split's class and file names. Each episode
//! draws from its own Philox stream, so the same episodes come out for any thread count and order.
//!
//! Sampling: the split's classes sorted by name; `n_way` of them drawn without replacement (their
//! draw order is the episode's label order); per class, `n_shot + n_query` files drawn without
//! replacement from its sorted file names; the first `n_shot` drawn are the support.

use serde::{Deserialize, Serialize};

use super::philox::CounterRng;
use super::store::StoreHeader;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpisodeSpec {
    pub n_way: usize,
    pub n_shot: usize,
    pub n_query: usize,
}

impl EpisodeSpec {
    /// `5w1s15q`.
    pub fn tag(&self) -> String {
        format!("{}w{}s{}q", self.n_way, self.n_shot, self.n_query)
    }
}

/// One class of an episode: its support and query file names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpisodeClass {
    pub class: String,
    pub support: Vec<String>,
    pub query: Vec<String>,
}

/// One episode; `classes[label]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Episode {
    pub index: u64,
    pub classes: Vec<EpisodeClass>,
}

/// The names episodes are drawn from: classes sorted, each with its files sorted.
#[derive(Debug, Clone)]
pub struct SplitIndex {
    pub classes: Vec<(String, Vec<String>)>,
}

impl SplitIndex {
    pub fn from_header(header: &StoreHeader) -> Self {
        let mut classes: Vec<(String, Vec<String>)> = header
            .classes
            .iter()
            .map(|c| {
                let mut files = c.files.clone();
                files.sort();
                (c.name.clone(), files)
            })
            .collect();
        classes.sort();
        Self { classes }
    }
}

/// Draws episodes of one (dataset, split, spec, seed).
#[derive(Debug, Clone)]
pub struct EpisodeSampler<'a> {
    index: &'a SplitIndex,
    spec: EpisodeSpec,
    key: [u32; 2],
    eligible: Vec<usize>,
}

impl<'a> EpisodeSampler<'a> {
    pub fn new(
        dataset: &str,
        split: &str,
        spec: EpisodeSpec,
        seed: u64,
        index: &'a SplitIndex,
    ) -> Result<Self> {
        let per_episode = spec.n_shot + spec.n_query;
        let eligible: Vec<usize> = (0..index.classes.len())
            .filter(|&c| index.classes[c].1.len() >= per_episode)
            .collect();
        if spec.n_way == 0 || spec.n_shot == 0 || eligible.len() < spec.n_way {
            return Err(Error::invalid(format!(
                "{dataset}/{split}: {} classes have at least {per_episode} images, a {} episode needs {}",
                eligible.len(),
                spec.tag(),
                spec.n_way
            )));
        }
        let key = CounterRng::key_from(&format!(
            "fewshot-episodes-v1|{dataset}|{split}|{}|{seed}",
            spec.tag()
        ));
        Ok(Self {
            index,
            spec,
            key,
            eligible,
        })
    }

    pub fn episode(&self, i: u64) -> Episode {
        let mut rng = CounterRng::new(self.key, i);
        let per_episode = self.spec.n_shot + self.spec.n_query;
        let classes = rng
            .choose(self.eligible.len(), self.spec.n_way)
            .into_iter()
            .map(|pick| {
                let (name, files) = &self.index.classes[self.eligible[pick]];
                let drawn: Vec<String> = rng
                    .choose(files.len(), per_episode)
                    .into_iter()
                    .map(|f| files[f].clone())
                    .collect();
                EpisodeClass {
                    class: name.clone(),
                    support: drawn[..self.spec.n_shot].to_vec(),
                    query: drawn[self.spec.n_shot..].to_vec(),
                }
            })
            .collect();
        Episode { index: i, classes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    fn spec(n_way: usize, n_shot: usize, n_query: usize) -> EpisodeSpec {
        EpisodeSpec {
            n_way,
            n_shot,
            n_query,
        }
    }

    fn toy_index() -> SplitIndex {
        SplitIndex {
            classes: (0..12)
                .map(|c| {
                    (
                        format!("class{c:02}"),
                        (0..30).map(|f| format!("{f:03}.jpg")).collect(),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn episodes_are_deterministic_and_independent_of_threads() {
        let index = toy_index();
        let spec = spec(5, 2, 3);
        let sampler = EpisodeSampler::new("toy", "test", spec, 7, &index).unwrap();
        let serial: Vec<Episode> = (0..200).map(|i| sampler.episode(i)).collect();
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let four = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        let a: Vec<Episode> = one.install(|| {
            (0..200)
                .into_par_iter()
                .map(|i| sampler.episode(i))
                .collect()
        });
        let b: Vec<Episode> = four.install(|| {
            (0..200u32)
                .into_par_iter()
                .rev()
                .map(|i| sampler.episode(i as u64))
                .collect()
        });
        assert_eq!(serial, a);
        assert_eq!(serial, b.into_iter().rev().collect::<Vec<_>>());
        // another seed gives other episodes
        let other = EpisodeSampler::new("toy", "test", spec, 8, &index).unwrap();
        assert_ne!(other.episode(0), serial[0]);
    }

    #[test]
    fn episodes_have_distinct_classes_and_images() {
        let index = toy_index();
        let spec = spec(5, 5, 15);
        let sampler = EpisodeSampler::new("toy", "val", spec, 1, &index).unwrap();
        for i in 0..50 {
            let e = sampler.episode(i);
            let mut classes: Vec<_> = e.classes.iter().map(|c| &c.class).collect();
            classes.sort();
            classes.dedup();
            assert_eq!(classes.len(), 5);
            for c in &e.classes {
                let mut all: Vec<_> = c.support.iter().chain(&c.query).collect();
                assert_eq!((c.support.len(), c.query.len()), (5, 15));
                all.sort();
                all.dedup();
                assert_eq!(all.len(), 20);
            }
        }
    }

    #[test]
    fn too_few_images_is_an_error() {
        let index = toy_index();
        let spec = spec(5, 20, 15);
        let err = EpisodeSampler::new("toy", "test", spec, 1, &index)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("0 classes have at least 35 images"), "{err}");
    }
}
