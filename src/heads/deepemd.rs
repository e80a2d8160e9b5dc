//! DeepEMD-style head (Zhang et al., CVPR 2020; the `icoz69/DeepEMD` FCN variant, METHOD.md §11):
//! nodes are feature-map positions; node weights are cross-referenced, w_i = ReLU(⟨a_i, mean_j b_j⟩) +
//! 1e-3 on the raw features, rescaled to sum to the node count; features are centred per node; cost
//! 1 − cos; the exact EMD flow is solved on the host and treated as a constant (no gradient through
//! it); logit = (T / nodes) · Σ flow · cos. K-shot uses the mean prototype map; DeepEMD's SFC
//! fine-tuning is not implemented (an option for later).

use candle_core::{DType, Result, Tensor, D};

use super::tensor_math::{prototypes, unit};
use super::{EpisodeFeatures, Head, HeadOutput};
use crate::matching::{emd_batch, EmdProblem};

pub struct DeepEmdHead {
    pub temperature: f64,
}

impl Head for DeepEmdHead {
    fn forward(&self, f: &EpisodeFeatures, _train: bool) -> Result<HeadOutput> {
        let (_, c, h, w) = f.support.dims4()?;
        let p = h * w;
        let q = f.query.dim(0)?;
        let n = f.n_way;
        let protos = prototypes(&f.support.reshape((f.n_way * f.n_shot, c, p))?, n, f.n_shot)?; // (N, C, P)
        let qry = f.query.reshape((q, c, p))?; // (Q, C, P)
                                               // cross-reference weights on the raw features
        let proto_mean = protos.mean(D::Minus1)?; // (N, C)
        let qry_mean = qry.mean(D::Minus1)?; // (Q, C)
                                             // w_q[q, n, i] = <q_i, mean(proto_n)>, w_s[q, n, j] = <proto_n_j, mean(q)>
        let w_q = qry
            .transpose(1, 2)?
            .broadcast_matmul(&proto_mean.t()?)?
            .transpose(1, 2)?; // (Q, N, P)
        let w_s = qry_mean
            .matmul(&protos.transpose(0, 1)?.reshape((c, n * p))?)?
            .reshape((q, n, p))?; // (Q, N, P)
        let w_q = (w_q.relu()? + 1e-3)?;
        let w_s = (w_s.relu()? + 1e-3)?;
        // centred, unit-normalised nodes → similarity of every (query node, prototype node)
        let centre = |x: &Tensor| -> Result<Tensor> { x.broadcast_sub(&x.mean_keepdim(1)?) };
        let qn = unit(&centre(&qry)?, 1)?; // (Q, C, P)
        let pn = unit(&centre(&protos)?, 1)?; // (N, C, P)
        let sim = qn
            .transpose(1, 2)?
            .reshape((q * p, c))?
            .matmul(&pn.transpose(0, 1)?.reshape((c, n * p))?)?
            .reshape((q, p, n, p))?
            .permute((0, 2, 1, 3))?
            .contiguous()?; // (Q, N, P_q, P_s)
        let to_vec = |t: &Tensor| -> Result<Vec<f64>> {
            t.detach().to_dtype(DType::F64)?.flatten_all()?.to_vec1()
        };
        let (sims, wq, ws) = (to_vec(&sim)?, to_vec(&w_q)?, to_vec(&w_s)?);
        let problems: Vec<EmdProblem> = (0..q * n)
            .map(|k| EmdProblem {
                supply: rescale(&wq[k * p..(k + 1) * p]),
                demand: rescale(&ws[k * p..(k + 1) * p]),
                cost: sims[k * p * p..(k + 1) * p * p]
                    .iter()
                    .map(|s| 1.0 - s)
                    .collect(),
            })
            .collect();
        let flows: Vec<f32> = emd_batch(&problems)
            .into_iter()
            .flatten()
            .map(|v| v as f32)
            .collect();
        let flow =
            Tensor::from_vec(flows, (q, n, p, p), f.query.device())?.to_dtype(sim.dtype())?;
        let logits =
            ((flow * sim)?.sum(D::Minus1)?.sum(D::Minus1)? * (self.temperature / p as f64))?;
        Ok(HeadOutput {
            logits,
            attended_query: None,
        })
    }
}

/// Weights rescaled to sum to their count (DeepEMD's `w · N / Σw`).
fn rescale(w: &[f64]) -> Vec<f64> {
    let total: f64 = w.iter().sum();
    w.iter().map(|v| v * w.len() as f64 / total).collect()
}
