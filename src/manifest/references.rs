//! `manifests/references/<table>.toml`: published numbers with their sources (METHOD.md §12), one
//! `[[reference]]` per source and method. The method's own authors' number is the reference a report
//! compares with; reproductions give the range beside it. A method without a usable number carries
//! `missing` (why) and no values, and reports print "n/a".

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct References {
    pub table: String,
    pub reference: Vec<PublishedSource>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Authors,
    Reproduction,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedSource {
    pub method: String,
    pub role: Role,
    pub source: String,
    pub backbone: String,
    #[serde(default)]
    pub episodes: Option<usize>,
    #[serde(default)]
    pub ci_formula: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
    /// Why there is no number (with `values = []`).
    #[serde(default)]
    pub missing: Option<String>,
    pub values: Vec<PublishedValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedValue {
    pub dataset: String,
    pub shot: usize,
    /// Accuracy in %.
    pub accuracy: f64,
    #[serde(default)]
    pub ci95: Option<f64>,
}

impl References {
    pub fn read(manifests: &Path, table: &str) -> Result<Self> {
        let path = manifests.join("references").join(format!("{table}.toml"));
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let refs: References = toml::from_str(&text).map_err(|e| Error::Manifest {
            path: path.clone(),
            message: e.to_string(),
        })?;
        for r in &refs.reference {
            if r.values.is_empty() != r.missing.is_some() {
                return Err(Error::Manifest {
                    path: path.clone(),
                    message: format!(
                        "{} ({}): a source has values or says why it is missing, not both or neither",
                        r.method, r.source
                    ),
                });
            }
        }
        Ok(refs)
    }

    /// The authors' number for (method, dataset, shot), with its source.
    pub fn authors<'a>(
        &'a self,
        method: &'a str,
        dataset: &'a str,
        shot: usize,
    ) -> Option<(&'a PublishedSource, &'a PublishedValue)> {
        self.values(method, dataset, shot)
            .find(|(s, _)| s.role == Role::Authors)
    }

    /// The (min, max) of the reproductions listed for (method, dataset, shot), and how many.
    pub fn reproduction_range(
        &self,
        method: &str,
        dataset: &str,
        shot: usize,
    ) -> Option<(f64, f64, usize)> {
        let v: Vec<f64> = self
            .values(method, dataset, shot)
            .filter(|(s, _)| s.role == Role::Reproduction)
            .map(|(_, v)| v.accuracy)
            .collect();
        (!v.is_empty()).then(|| {
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (lo, hi, v.len())
        })
    }

    /// Why a method has no authors' number, if it says.
    pub fn missing(&self, method: &str) -> Option<&str> {
        self.reference
            .iter()
            .find(|r| r.method == method && r.role == Role::Authors)
            .and_then(|r| r.missing.as_deref())
    }

    fn values<'a>(
        &'a self,
        method: &'a str,
        dataset: &'a str,
        shot: usize,
    ) -> impl Iterator<Item = (&'a PublishedSource, &'a PublishedValue)> + 'a {
        self.reference
            .iter()
            .filter(move |r| r.method == method)
            .flat_map(move |r| {
                r.values
                    .iter()
                    .filter(move |v| v.dataset == dataset && v.shot == shot)
                    .map(move |v| (r, v))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table1_references_parse_and_lwfm_spm_stays_missing() {
        let manifests = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests");
        let r = References::read(&manifests, "table1").unwrap();
        let (src, v) = r.authors("deepemd", "mini-imagenet", 1).unwrap();
        assert_eq!(v.accuracy, 66.50);
        assert!(src.source.contains("DeepEMD"));
        assert!(r.authors("lwfm-spm", "mini-imagenet", 1).is_none());
        assert!(r.missing("lwfm-spm").unwrap().contains("not available"));
        let (lo, hi, n) = r
            .reproduction_range("protonet", "mini-imagenet", 1)
            .unwrap();
        assert_eq!((lo, hi, n), (54.25, 63.6, 5));
        // every method of the experiment has an entry
        let e = crate::manifest::experiment::Experiment::read(&manifests, "table1").unwrap();
        for g in &e.group {
            for m in &g.methods {
                assert!(r.reference.iter().any(|s| &s.method == m), "{m}");
            }
        }
    }
}
