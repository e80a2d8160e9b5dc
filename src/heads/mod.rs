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
mod tensor_math;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

pub use cosine::CosineHead;
pub use deepemd::DeepEmdHead;
pub use lwfm_spm::LwfmSpmHead;
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

/// A head as data (serialised into every cell config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum HeadConfig {
    /// logit = −‖q − prototype‖² / temperature (prototype = mean of the shots' pooled features).
    Protonet { temperature: f64 },
    /// logit = cos(q, prototype) / temperature.
    Cosine { temperature: f64 },
    /// logit = (temperature / nodes) · Σ flow · similarity, flow the exact EMD between the nodes.
    Deepemd { temperature: f64 },
    /// METHOD.md §3–4: γ = `temperature_attn`, τ = `temperature`, λ_m = `matcher_prob`.
    LwfmSpm {
        temperature_attn: f64,
        temperature: f64,
        matcher_prob: f64,
    },
}

impl HeadConfig {
    pub fn name(&self) -> &'static str {
        match self {
            HeadConfig::Protonet { .. } => "protonet",
            HeadConfig::Cosine { .. } => "cosine",
            HeadConfig::Deepemd { .. } => "deepemd",
            HeadConfig::LwfmSpm { .. } => "lwfm-spm",
        }
    }

    /// The published defaults: ProtoNet T = 1, cosine τ = 0.2 (LWFM-SPM's base term), DeepEMD
    /// T = 12.5, LWFM-SPM γ = 5, τ = 0.2, λ_m = 0.25 (miniImageNet's script).
    pub fn default_for(name: &str) -> Option<Self> {
        Some(match name {
            "protonet" => HeadConfig::Protonet { temperature: 1.0 },
            "cosine" => HeadConfig::Cosine { temperature: 0.2 },
            "deepemd" => HeadConfig::Deepemd { temperature: 12.5 },
            "lwfm-spm" => HeadConfig::LwfmSpm {
                temperature_attn: 5.0,
                temperature: 0.2,
                matcher_prob: 0.25,
            },
            _ => return None,
        })
    }

    /// Builds the head; learnable parameters (LWFM-SPM's matcher MLPs) live under `vb`.
    pub fn build(&self, channels: &[usize], vb: VarBuilder) -> Result<Box<dyn Head>> {
        Ok(match *self {
            HeadConfig::Protonet { temperature } => Box::new(ProtoNetHead { temperature }),
            HeadConfig::Cosine { temperature } => Box::new(CosineHead { temperature }),
            HeadConfig::Deepemd { temperature } => Box::new(DeepEmdHead { temperature }),
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
            )?),
        })
    }
}
