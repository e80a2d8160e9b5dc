//! DeepEMD-style head (Zhang et al., CVPR 2020; the `icoz69/DeepEMD` FCN variant, METHOD.md §11):
//! nodes are feature-map positions; node weights are cross-referenced, w_i = ReLU(⟨a_i, mean_j b_j⟩) +
//! 1e-3 on the raw features, rescaled to sum to the node count; features are centred per node; cost
//! 1 − cos; the exact EMD flow is solved on the host and treated as a constant (no gradient through
//! it); logit = (T / nodes) · Σ flow · cos. As an option the flow is the entropic Sinkhorn plan
//! instead ([`SinkhornConfig`], `sinkhorn_plan.rs`), computed in tensor ops so gradients reach the
//! costs and the node weights through it (the authors' differentiable option is a QP layer instead).
//! K-shot uses the mean prototype map, or, as an option, DeepEMD's SFC fitted to the support set
//! (see [`SfcConfig`]).

use candle_core::{DType, Result, Tensor, Var, D};

use super::sinkhorn_plan::sinkhorn_plan;
use super::tensor_math::{prototypes, unit};
use super::{EpisodeFeatures, Head, HeadOutput};
use crate::data::philox::CounterRng;
use crate::manifest::model::{SfcConfig, SinkhornConfig};
use crate::matching::{emd_batch, EmdProblem};

pub struct DeepEmdHead {
    pub temperature: f64,
    pub sfc: Option<SfcConfig>,
    pub sinkhorn: Option<SinkhornConfig>,
}

impl Head for DeepEmdHead {
    fn forward(&self, f: &EpisodeFeatures, _train: bool) -> Result<HeadOutput> {
        let (s, c, h, w) = f.support.dims4()?;
        let p = h * w;
        let q = f.query.dim(0)?;
        let support = f.support.reshape((s, c, p))?;
        let mut protos = prototypes(&support, f.n_way, f.n_shot)?; // (N, C, P)
        if let (Some(sfc), true) = (self.sfc, f.n_shot > 1) {
            protos = self.fit_sfc(&support.detach(), &protos.detach(), f.n_way, sfc)?;
        }
        let logits = self.emd_logits(&f.query.reshape((q, c, p))?, &protos)?;
        Ok(HeadOutput {
            logits,
            attended_query: None,
        })
    }
}

impl DeepEmdHead {
    /// nodes: (B, C, P) images, protos: (N, C, P) → (B, N) logits.
    fn emd_logits(&self, qry: &Tensor, protos: &Tensor) -> Result<Tensor> {
        let (q, c, p) = qry.dims3()?;
        let n = protos.dim(0)?;
        // cross-reference weights on the raw features
        let proto_mean = protos.mean(D::Minus1)?; // (N, C)
        let qry_mean = qry.mean(D::Minus1)?; // (B, C)
                                             // w_q[b, n, i] = <q_i, mean(proto_n)>, w_s[b, n, j] = <proto_n_j, mean(q)>
        let w_q = qry
            .transpose(1, 2)?
            .broadcast_matmul(&proto_mean.t()?)?
            .transpose(1, 2)?; // (B, N, P)
        let w_s = qry_mean
            .matmul(&protos.transpose(0, 1)?.reshape((c, n * p))?)?
            .reshape((q, n, p))?; // (B, N, P)
        let w_q = (w_q.relu()? + 1e-3)?;
        let w_s = (w_s.relu()? + 1e-3)?;
        // centred, unit-normalised nodes → similarity of every (query node, prototype node)
        let centre = |x: &Tensor| -> Result<Tensor> { x.broadcast_sub(&x.mean_keepdim(1)?) };
        let qn = unit(&centre(qry)?, 1)?; // (B, C, P)
        let pn = unit(&centre(protos)?, 1)?; // (N, C, P)
        let sim = qn
            .transpose(1, 2)?
            .reshape((q * p, c))?
            .matmul(&pn.transpose(0, 1)?.reshape((c, n * p))?)?
            .reshape((q, p, n, p))?
            .permute((0, 2, 1, 3))?
            .contiguous()?; // (B, N, P_q, P_s)
        if let Some(sk) = self.sinkhorn {
            let nodes = p as f64;
            let rescale = |w: &Tensor| -> Result<Tensor> {
                (w.broadcast_div(&w.sum_keepdim(2)?)? * nodes)?.reshape((q * n, p))
            };
            let cost = (1.0 - sim.reshape((q * n, p, p))?)?;
            let plan = sinkhorn_plan(
                &cost,
                &rescale(&w_q)?,
                &rescale(&w_s)?,
                sk.epsilon,
                sk.iterations,
            )?
            .reshape((q, n, p, p))?;
            return (plan * sim)?.sum(D::Minus1)?.sum(D::Minus1)? * (self.temperature / nodes);
        }
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
        let flow = Tensor::from_vec(flows, (q, n, p, p), qry.device())?.to_dtype(sim.dtype())?;
        (flow * sim)?.sum(D::Minus1)?.sum(D::Minus1)? * (self.temperature / p as f64)
    }

    /// DeepEMD's SFC: prototypes fitted to the support set (support: (S, C, P) shot-major, labels
    /// `i % n_way`), starting from their mean.
    fn fit_sfc(
        &self,
        support: &Tensor,
        start: &Tensor,
        n_way: usize,
        sfc: SfcConfig,
    ) -> Result<Tensor> {
        let s = support.dim(0)?;
        let protos = Var::from_tensor(start)?;
        let mut buf: Option<Tensor> = None;
        let key = CounterRng::key_from(&format!("fewshot-sfc-v1|{}", sfc.seed));
        for step in 0..sfc.steps {
            let order = CounterRng::new(key, step as u64).choose(s, s);
            for chunk in order.chunks(sfc.batch.max(1)) {
                let ids: Vec<u32> = chunk.iter().map(|&i| i as u32).collect();
                let labels: Vec<u32> = chunk.iter().map(|&i| (i % n_way) as u32).collect();
                let index = Tensor::from_vec(ids, chunk.len(), support.device())?;
                let batch = support.index_select(&index, 0)?;
                let labels = Tensor::from_vec(labels, chunk.len(), support.device())?;
                let logits = self.emd_logits(&batch, protos.as_tensor())?;
                let loss = candle_nn::loss::cross_entropy(&logits, &labels)?;
                let grads = loss.backward()?;
                let Some(g) = grads.get(protos.as_tensor()) else {
                    continue;
                };
                let g = g.detach();
                // torch SGD with momentum 0.9 and dampening 0.9: buf = 0.9 buf + 0.1 g (buf = g at first)
                let next = match &buf {
                    Some(b) => ((b * 0.9)? + (g * 0.1)?)?,
                    None => g,
                };
                protos.set(&(protos.as_tensor().detach() - (&next * sfc.lr)?)?)?;
                buf = Some(next);
            }
        }
        Ok(protos.as_tensor().detach())
    }
}

/// Weights rescaled to sum to their count (DeepEMD's `w · N / Σw`).
fn rescale(w: &[f64]) -> Vec<f64> {
    let total: f64 = w.iter().sum();
    w.iter().map(|v| v * w.len() as f64 / total).collect()
}
