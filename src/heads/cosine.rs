//! Global cosine head: prototype = mean of the shots' globally pooled features (or, with `flatten`,
//! the whole pooled maps); logit = cos(query, prototype) / τ (τ = 0.2, as LWFM-SPM's base term;
//! Chen et al. 2019's Baseline++ form).

use candle_core::{Result, D};

use super::tensor_math::{cosine, embedding, prototypes};
use super::{EpisodeFeatures, Head, HeadOutput};

pub struct CosineHead {
    pub temperature: f64,
    /// Compare the whole pooled maps instead of their spatial mean.
    pub flatten: bool,
}

impl Head for CosineHead {
    fn forward(&self, f: &EpisodeFeatures, _train: bool) -> Result<HeadOutput> {
        let s = embedding(f.support, self.flatten)?;
        let q = embedding(f.query, self.flatten)?;
        let protos = prototypes(&s, f.n_way, f.n_shot)?;
        let logits =
            (cosine(&q.unsqueeze(1)?, &protos.unsqueeze(0)?, D::Minus1)? / self.temperature)?;
        Ok(HeadOutput {
            logits,
            attended_query: None,
        })
    }
}
