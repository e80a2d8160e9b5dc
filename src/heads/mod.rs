//! Metric heads: given one episode's support and query feature maps and the support labels, return
//! `(n_query, n_way)` logits, plus what the training loop's auxiliary losses need. Four
//! implementations of one trait: ProtoNet, global cosine, DeepEMD-style optimal transport, LWFM-SPM.
//!
//! Episode layout (the authors' and the loader's): the support is shot-major, support `i` has label
//! `i % n_way`, so `support.reshape((n_shot, n_way, …))` groups the shots of each class.

mod cosine;
mod deepemd;
mod lwfm_spm;
mod protonet;
pub mod sinkhorn_plan;
mod tensor_math;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

pub use crate::manifest::model::HeadConfig;
pub use cosine::CosineHead;
pub use deepemd::DeepEmdHead;
pub use lwfm_spm::{take_matching_time, LwfmSpmHead};
pub use protonet::ProtoNetHead;

/// One episode's features.
#[derive(Debug, Clone, Copy)]
pub struct EpisodeFeatures<'a> {
    /// (n_way * n_shot, C, h, w), shot-major
    pub support: &'a Tensor,
    /// (n_query, C, h, w)
    pub query: &'a Tensor,
    /// Channels of each backbone tap inside C, in order.
    pub channels: &'a [usize],
    pub n_way: usize,
    pub n_shot: usize,
}

/// What a head returns.
#[derive(Debug, Clone)]
pub struct HeadOutput {
    /// (n_query, n_way)
    pub logits: Tensor,
    /// (n_query, C): LWFM-SPM's attended query features (averaged over the support classes), which its
    /// "absolute" loss classifies over the base classes; None for the other heads.
    pub attended_query: Option<Tensor>,
}

/// A metric head.
pub trait Head {
    fn forward(&self, features: &EpisodeFeatures, train: bool) -> Result<HeadOutput>;
}

/// Builds a head; learnable parameters (LWFM-SPM's matcher MLPs) live under `vb`.
pub fn build_head(
    config: &HeadConfig,
    channels: &[usize],
    vb: VarBuilder,
    uniform_lwe: bool,
) -> Result<Box<dyn Head>> {
    Ok(match *config {
        HeadConfig::Protonet {
            temperature,
            flatten,
        } => Box::new(ProtoNetHead {
            temperature,
            flatten,
        }),
        HeadConfig::Cosine {
            temperature,
            flatten,
        } => Box::new(CosineHead {
            temperature,
            flatten,
        }),
        HeadConfig::Deepemd {
            temperature,
            sfc,
            sinkhorn,
        } => Box::new(DeepEmdHead {
            temperature,
            sfc,
            sinkhorn,
        }),
        HeadConfig::LwfmSpm {
            temperature_attn,
            temperature,
            matcher_prob,
        } => Box::new(LwfmSpmHead::new(
            vb,
            channels,
            temperature_attn,
            temperature,
            matcher_prob,
            uniform_lwe,
        )?),
    })
}
