//! Prototypical Networks (Snell et al. 2017): prototype = mean of the shots' embeddings (the globally
//! pooled features, or with `flatten` the whole pooled maps, Snell et al.'s 1,600-dimensional Conv-4
//! embedding); logit = −squared Euclidean distance / temperature.

use candle_core::{Result, D};

use super::tensor_math::{embedding, prototypes};
use super::{EpisodeFeatures, Head, HeadOutput};

pub struct ProtoNetHead {
    pub temperature: f64,
    /// Compare the whole pooled maps instead of their spatial mean.
    pub flatten: bool,
}

impl Head for ProtoNetHead {
    fn forward(&self, f: &EpisodeFeatures, _train: bool) -> Result<HeadOutput> {
        let s = embedding(f.support, self.flatten)?; // (S, C) or (S, C·h·w)
        let q = embedding(f.query, self.flatten)?; // (Q, C) or (Q, C·h·w)
        let protos = prototypes(&s, f.n_way, f.n_shot)?; // (N, C)
        let diff = q.unsqueeze(1)?.broadcast_sub(&protos.unsqueeze(0)?)?; // (Q, N, C)
        let logits = (diff.sqr()?.sum(D::Minus1)?.neg()? / self.temperature)?;
        Ok(HeadOutput {
            logits,
            attended_query: None,
        })
    }
}
