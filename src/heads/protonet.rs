//! Prototypical Networks (Snell et al. 2017): prototype = mean of the shots' globally pooled
//! features; logit = −squared Euclidean distance / temperature.

use candle_core::{Result, D};

use super::tensor_math::prototypes;
use super::{EpisodeFeatures, Head, HeadOutput};

pub struct ProtoNetHead {
    pub temperature: f64,
}

impl Head for ProtoNetHead {
    fn forward(&self, f: &EpisodeFeatures, _train: bool) -> Result<HeadOutput> {
        let s = f.support.flatten_from(2)?.mean(D::Minus1)?; // (S, C)
        let q = f.query.flatten_from(2)?.mean(D::Minus1)?; // (Q, C)
        let protos = prototypes(&s, f.n_way, f.n_shot)?; // (N, C)
        let diff = q.unsqueeze(1)?.broadcast_sub(&protos.unsqueeze(0)?)?; // (Q, N, C)
        let logits = (diff.sqr()?.sum(D::Minus1)?.neg()? / self.temperature)?;
        Ok(HeadOutput {
            logits,
            attended_query: None,
        })
    }
}
