//! `manifests/experiments/<name>.toml`: a results table declared as data — row groups (each a base cell
//! and its methods), datasets, shots, seeds, the evaluation protocol, per-method and per-dataset settings
//! (METHOD.md §6), and profiles (`full`, `quick`, `smoke`) that change only the knobs they declare.
//!
//! A plan expands the grid into resolved cells. Each cell starts from its group's base cell and takes, in
//! order: the method's patch (its head), every matching setting's patch, the protocol, the dataset, shot and
//! seed, then the profile's patches and removals. Patches are TOML tables merged key by key (a `head` table
//! replaces the head); the result is parsed as a [`CellConfig`] with unknown keys refused, so a profile
//! cannot set a knob that does not exist.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cell::CellConfig;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub name: String,
    pub title: String,
    pub datasets: Vec<String>,
    pub shots: Vec<usize>,
    /// Training seeds; several give the spread across seeds beside the CI across episodes.
    pub seeds: Vec<u64>,
    pub protocol: Protocol,
    pub group: Vec<RowGroup>,
    /// Per-method patches (at least the `head` table of every method a group lists).
    pub methods: BTreeMap<String, toml::Table>,
    #[serde(default)]
    pub settings: Vec<Setting>,
    pub profile: BTreeMap<String, Profile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protocol {
    pub n_way: usize,
    pub n_query: usize,
    pub test_episodes: usize,
    pub val_episodes: usize,
    pub ci_formula: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowGroup {
    pub name: String,
    pub title: String,
    /// The base cell, relative to `manifests/`.
    pub base: String,
    pub methods: Vec<String>,
    /// The backbone was pretrained on ImageNet-1k, whose classes include miniImageNet's and
    /// tieredImageNet's test classes: reports flag those rows.
    #[serde(default)]
    pub imagenet_pretrained: bool,
}

/// A patch applied to the cells it matches (every filter left out matches everything).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setting {
    pub dataset: Option<String>,
    pub shot: Option<usize>,
    pub method: Option<String>,
    pub group: Option<String>,
    /// Where the values come from (e.g. "METHOD.md §6, scripts/train/mini_5w1s.sh").
    pub source: String,
    pub patch: toml::Table,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub description: String,
    /// The device this profile is meant for (`cpu`, `cuda`); `--device` overrides it.
    pub device: String,
    /// Restrict the grid (None: the experiment's own lists).
    pub datasets: Option<Vec<String>>,
    /// Where this profile's report goes, relative to the repository (e.g. `reports/smoke`).
    pub reports: String,
    /// Patch for every cell.
    #[serde(default)]
    pub patch: toml::Table,
    /// Patches for the cells of one group.
    #[serde(default)]
    pub group_patch: BTreeMap<String, toml::Table>,
    /// Dotted keys removed from every cell (e.g. `backbone_weights`, `train.pretrain`).
    #[serde(default)]
    pub unset: Vec<String>,
    /// Restrict the row groups (None: all of the experiment's).
    pub groups: Option<Vec<String>>,
    /// Patches for the cells of one method, applied after `patch` and `group_patch`.
    #[serde(default)]
    pub method_patch: BTreeMap<String, toml::Table>,
    /// What the report says about this profile beside published numbers (default: that Δ says
    /// nothing, for profiles that shorten or shrink the runs).
    pub report_note: Option<String>,
}

/// One resolved cell of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedCell {
    pub group: String,
    pub method: String,
    pub dataset: String,
    pub shot: usize,
    pub seed: u64,
    pub imagenet_pretrained: bool,
    pub cell: CellConfig,
}

/// Datasets whose test classes are ImageNet-1k classes.
pub const IMAGENET_TEST_CLASSES: [&str; 2] = ["mini-imagenet", "tiered-imagenet"];

impl Experiment {
    pub fn path(manifests: &Path, name: &str) -> PathBuf {
        manifests.join("experiments").join(format!("{name}.toml"))
    }

    pub fn read(manifests: &Path, name: &str) -> Result<Self> {
        let path = Self::path(manifests, name);
        super::read_toml(&path)
    }

    pub fn profile(&self, name: &str) -> Result<&Profile> {
        self.profile.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.profile.keys().map(String::as_str).collect();
            Error::invalid(format!(
                "experiment {} has no profile {name:?}; one of {}",
                self.name,
                known.join(", ")
            ))
        })
    }

    /// Every cell of the grid under `profile`, in table order (group, method, dataset, shot, seed).
    pub fn plan(&self, manifests: &Path, profile: &str) -> Result<Vec<PlannedCell>> {
        let prof = self.profile(profile)?;
        let datasets = prof
            .datasets
            .clone()
            .unwrap_or_else(|| self.datasets.clone());
        let manifest_err = |message: String| Error::Manifest {
            path: Self::path(manifests, &self.name),
            message,
        };
        // each dataset's store size, read once
        let store_sizes: Vec<u32> = datasets
            .iter()
            .map(|d| super::load_dataset(manifests, d).map(|m| m.store.size))
            .collect::<Result<_>>()?;
        let mut cells = Vec::new();
        for group in &self.group {
            if prof
                .groups
                .as_ref()
                .is_some_and(|g| !g.contains(&group.name))
            {
                continue;
            }
            let base_path = manifests.join(&group.base);
            let base: toml::Table = super::read_toml(&base_path)?;
            for method in &group.methods {
                let method_patch = self.methods.get(method).ok_or_else(|| {
                    manifest_err(format!(
                        "group {} lists method {method} but [methods.{method}] is missing",
                        group.name
                    ))
                })?;
                for (dataset, store_size) in datasets.iter().zip(&store_sizes) {
                    for &shot in &self.shots {
                        for &seed in &self.seeds {
                            let mut t = base.clone();
                            merge(&mut t, method_patch, true);
                            for s in &self.settings {
                                let matches = s.dataset.as_deref().is_none_or(|d| d == dataset)
                                    && s.shot.is_none_or(|k| k == shot)
                                    && s.method.as_deref().is_none_or(|m| m == method)
                                    && s.group.as_deref().is_none_or(|g| g == group.name);
                                if matches {
                                    merge(&mut t, &s.patch, false);
                                }
                            }
                            let fixed: toml::Table = toml::from_str(&format!(
                                "dataset = {dataset:?}\nstore_size = {}\nseed = {seed}\n[episode]\nn_way = {}\nn_shot = {shot}\nn_query = {}\n[train]\nval_episodes = {}\n[eval]\ntest_episodes = {}\n",
                                store_size,
                                self.protocol.n_way,
                                self.protocol.n_query,
                                self.protocol.val_episodes,
                                self.protocol.test_episodes
                            ))
                            .expect("well-formed");
                            merge(&mut t, &fixed, false);
                            merge(&mut t, &prof.patch, false);
                            if let Some(p) = prof.group_patch.get(&group.name) {
                                merge(&mut t, p, false);
                            }
                            if let Some(p) = prof.method_patch.get(method) {
                                merge(&mut t, p, false);
                            }
                            for key in &prof.unset {
                                unset(&mut t, key);
                            }
                            // a cell that does not parse or validate is named by its place in the plan
                            let refused = |e: String| {
                                manifest_err(format!(
                                    "{}/{method}/{dataset}/{shot}-shot under profile {profile}: {e}",
                                    group.name
                                ))
                            };
                            let cell: CellConfig = toml::Value::Table(t)
                                .try_into()
                                .map_err(|e: toml::de::Error| refused(e.to_string()))?;
                            cell.validate().map_err(refused)?;
                            cells.push(PlannedCell {
                                group: group.name.clone(),
                                method: method.clone(),
                                dataset: dataset.clone(),
                                shot,
                                seed,
                                // a profile that drops the weights (smoke) drops the flag too
                                imagenet_pretrained: group.imagenet_pretrained
                                    && cell.backbone_weights.is_some(),
                                cell,
                            });
                        }
                    }
                }
            }
        }
        Ok(cells)
    }
}

/// Merges `patch` into `into` key by key (tables recursively); with `replace_head`, a `head` table
/// replaces the existing one instead.
fn merge(into: &mut toml::Table, patch: &toml::Table, replace_head: bool) {
    for (k, v) in patch {
        match (into.get_mut(k), v) {
            (Some(toml::Value::Table(dst)), toml::Value::Table(src))
                if !(replace_head && k == "head") =>
            {
                merge(dst, src, false)
            }
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Removes a dotted key (`train.pretrain`).
fn unset(table: &mut toml::Table, dotted: &str) {
    match dotted.split_once('.') {
        None => {
            table.remove(dotted);
        }
        Some((head, rest)) => {
            if let Some(toml::Value::Table(t)) = table.get_mut(head) {
                unset(t, rest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifests() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests")
    }

    #[test]
    fn table1_plans_every_profile_with_the_declared_knobs() {
        let e = Experiment::read(&manifests(), "table1").unwrap();
        let full = e.plan(&manifests(), "full").unwrap();
        // paper: lwfm-spm; controlled: 4 heads; × 4 datasets × 2 shots × seeds
        assert_eq!(full.len(), 5 * 4 * 2 * e.seeds.len());
        let paper_mini_1 = full
            .iter()
            .find(|c| c.group == "paper" && c.dataset == "mini-imagenet" && c.shot == 1)
            .unwrap();
        assert!(paper_mini_1.imagenet_pretrained);
        assert_eq!(
            paper_mini_1.cell.backbone_weights.as_deref(),
            Some("resnet18-imagenet")
        );
        assert_eq!(paper_mini_1.cell.train.aux_batch, 128);
        assert_eq!(paper_mini_1.cell.eval.test_episodes, 2000);
        let tiered_5 = full
            .iter()
            .find(|c| c.group == "paper" && c.dataset == "tiered-imagenet" && c.shot == 5)
            .unwrap();
        match tiered_5.cell.head {
            crate::manifest::model::HeadConfig::LwfmSpm { matcher_prob, .. } => {
                assert_eq!(matcher_prob, 0.0, "METHOD.md §6: SPM off for tiered 5-shot")
            }
            _ => panic!("paper group is lwfm-spm"),
        }
        let cub = full
            .iter()
            .find(|c| c.dataset == "cub-200-2011" && c.method == "protonet")
            .unwrap();
        assert_eq!(cub.cell.train.epochs, 30);
        assert_eq!(cub.cell.train.episode_loss_weight, 1.5);
        // every cell differs from every other
        let mut hashes: Vec<String> = full.iter().map(|c| c.cell.hash()).collect();
        hashes.sort();
        hashes.dedup();
        assert_eq!(hashes.len(), full.len());

        let smoke = e.plan(&manifests(), "smoke").unwrap();
        assert!(smoke.iter().all(|c| !c.imagenet_pretrained));
        assert!(smoke.iter().all(|c| c.dataset == "mini-imagenet"
            && c.cell.image_size == 32
            && c.cell.backbone_weights.is_none()
            && c.cell.train.pretrain.is_none()));
        assert!(e.plan(&manifests(), "quick").unwrap().len() == full.len());
        assert!(e
            .plan(&manifests(), "nope")
            .unwrap_err()
            .to_string()
            .contains("smoke"));
    }

    /// Issue #28's table, guarded without training it: eight Conv-4 cells on real miniImageNet at
    /// 84×84 (4 heads × 2 shots), one base-class pre-training shared by all, the 2,000 frozen test
    /// episodes, model selection on validation episodes.
    #[test]
    fn the_cpu_conv4_profile_plans_eight_cells_on_one_shared_pretraining() {
        let e = Experiment::read(&manifests(), "table1").unwrap();
        let plan = e.plan(&manifests(), "cpu-conv4").unwrap();
        assert_eq!(plan.len(), 8);
        for method in ["protonet", "cosine", "deepemd", "lwfm-spm"] {
            for shot in [1, 5] {
                assert_eq!(
                    plan.iter()
                        .filter(|c| c.method == method && c.shot == shot)
                        .count(),
                    1,
                    "{method} {shot}-shot"
                );
            }
        }
        let node = plan[0].cell.pretrain_node().expect("a pre-training node");
        assert_eq!(node.train.pretrain.as_ref().unwrap().epochs, 30);
        for c in &plan {
            assert_eq!(c.group, "controlled");
            assert_eq!(c.dataset, "mini-imagenet");
            assert!(!c.imagenet_pretrained && c.cell.backbone_weights.is_none());
            let cell = &c.cell;
            assert_eq!((cell.store_size, cell.image_size), (84, 84));
            assert_eq!(
                cell.backbone.kind,
                crate::manifest::model::BackboneKind::Conv4
            );
            assert_eq!(cell.eval.test_episodes, 2000);
            assert!(cell.train.val_episodes > 0, "model selection on validation");
            assert_eq!(cell.train.aux_batch, 0);
            assert_eq!(
                cell.pretrain_node().as_ref(),
                Some(&node),
                "one shared node"
            );
            let episodes = manifests().join(format!(
                "episodes/mini-imagenet/test-5w{}s15q-seed1-n2000.episodes.json.gz",
                c.shot
            ));
            assert!(episodes.is_file(), "{}", episodes.display());
        }
        let mut hashes: Vec<String> = plan.iter().map(|c| c.cell.hash()).collect();
        hashes.sort();
        hashes.dedup();
        assert_eq!(hashes.len(), 8);
        assert_eq!(e.profile["cpu-conv4"].device, "cpu");
    }

    #[test]
    fn a_patch_with_an_unknown_knob_is_refused() {
        let mut e = Experiment::read(&manifests(), "table1").unwrap();
        let p = e.profile.get_mut("smoke").unwrap();
        p.patch.insert("epochz".into(), toml::Value::Integer(1));
        let err = e.plan(&manifests(), "smoke").unwrap_err().to_string();
        assert!(err.contains("epochz"), "{err}");
    }

    /// A patch that parses but leaves a cell its head cannot run is refused with the cell's place in
    /// the plan and the setting.
    #[test]
    fn a_cell_that_fails_validation_is_named_by_its_place() {
        let mut e = Experiment::read(&manifests(), "table1").unwrap();
        let p = e.profile.get_mut("smoke").unwrap();
        let head: toml::Table = toml::from_str("temperature_attn = 0.001").unwrap();
        p.patch.insert("head".into(), toml::Value::Table(head));
        let err = e.plan(&manifests(), "smoke").unwrap_err().to_string();
        assert!(
            err.contains("lwfm-spm/")
                && err.contains("-shot under profile smoke")
                && err.contains("temperature_attn = 0.001 is too small"),
            "{err}"
        );
    }
}
