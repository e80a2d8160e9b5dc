//! Global cosine head: prototype = mean of the shots' globally pooled features; logit =
//! cos(query, prototype) / τ (τ = 0.2, as LWFM-SPM's base term; Chen et al. 2019's Baseline++ form).

use candle_core::{Result, D};

use super::tensor_math::{cosine, prototypes};
use super::{EpisodeFeatures, Head, HeadOutput};

pub struct CosineHead {
    pub temperature: f64,
}

impl Head for CosineHead {
    fn forward(&self, f: &EpisodeFeatures, _train: bool) -> Result<HeadOutput> {
        let s = f.support.flatten_from(2)?.mean(D::Minus1)?;
        let q = f.query.flatten_from(2)?.mean(D::Minus1)?;
        let protos = prototypes(&s, f.n_way, f.n_shot)?;
        let logits =
            (cosine(&q.unsqueeze(1)?, &protos.unsqueeze(0)?, D::Minus1)? / self.temperature)?;
        Ok(HeadOutput {
            logits,
            attended_query: None,
        })
    }
}
