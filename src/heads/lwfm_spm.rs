//! LWFM-SPM (Tang et al., arXiv 2411.06363), as the authors' code computes it (METHOD.md §3–4; their
//! `Method.cca` and `models/matcher.py`, themselves built on RENet's co-attention, Kang et al. 2021).
//!
//! LWE, per (query, support) pair and per tap ("layer"): centre each position over all concatenated
//! channels; L2-normalise per position within the layer (eps 1e-6) and correlate (9×9 cosines for
//! 3×3 maps); z-score along one side's positions (unbiased variance, eps 1e-5), softmax with γ, sum
//! over the other side's positions to get weights that sum to P; reweight the centred (not
//! normalised) features. SPM, per pair and layer: cost 1 − cos of the reweighted positions (no eps);
//! exact assignment on the host (no gradient through it); query positions gathered by the permutation
//! (gradients flow through the gather); a residual MLP g(x) = x + ReLU(W2 ReLU(W1 x)) per layer shared by
//! both sides; the max over matched pairs of cos(g(s), g(q′)) × λ_m; the max over layers; the mean
//! over shots. Logit = (cos of the shot-averaged, position-averaged reweighted features over all
//! channels + SPM) / τ.
//!
//! How it is computed, without the authors' dense (query × support × channel × position) tensors
//! (75 × 25 × 1024 × 9 floats twice per 5-shot episode, and the matcher MLP on every row of them):
//! - **SPM does not see the LWE weights.** They are positive (sums of softmax values), g is
//!   positively homogeneous (ReLU, no biases: g(w·x) = w·g(x) for w > 0), and both the cost and the
//!   score are cosines, which ignore positive scales. So the cost is 1 − cos of the *centred*
//!   positions, and the score cos(g(s_i), g(q_π(i))) is read from one matrix of g's cosines over
//!   every (support position, query position), with g run once per image position instead of once
//!   per pair. Equal to the authors' values in exact arithmetic (and so are the gradients: the
//!   weights' share of them is zero there); only rounding differs — which, where two assignments'
//!   costs tie within it (the assignment works to 1e-6), can pick the other one and so change that
//!   pair's SPM score — and where a reweighted vector's norm falls under the cosine's 1e-8 clamp and
//!   the unweighted one's does not. The weights stay positive: P z-scores span at most √(2(P − 1)),
//!   so a weight is at least exp(−√(2(P − 1))/γ)/P, and a cell config is refused when its γ is
//!   under the value that keeps that above e^−80 in f32 (`manifest::model::min_attention_temperature`:
//!   0.0514 on 3×3 maps; the published γ are 2 and 5). Under it the authors' cost would be 0/0. As a
//!   consequence SPM never depended on LWE, in the authors' code either: LWE reaches the logits
//!   through the base term alone.
//! - **The base term's prototypes** Σ_i w(i)·f(i) / P are products of the (query × position)
//!   weights with each image's (position × channel) features; the K shots' query weights are
//!   averaged first (the reweighting is linear in them).
//!
//! Where the paper is silent (METHOD.md §10) this follows the code; differences from the code: none
//! intended. The ambiguity of λ_m per dataset is a config value, not a code path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use candle_core::{DType, Result, Tensor, D};
use candle_nn::VarBuilder;

use super::tensor_math::{cosine, cosine_matrix, gaussian_normalize, l2_normalize, unit};
use super::{EpisodeFeatures, Head, HeadOutput};
use crate::matching::assign_batch;

/// Nanoseconds spent in SPM's host side since the last [`take_matching_time`].
static MATCHING_NANOS: AtomicU64 = AtomicU64::new(0);

/// The time every LWFM-SPM head of this process spent in SPM's host side since the last call (from
/// the costs being ready on the device to the assignment's indices being back on it: the copy to the
/// host and the assignments), and starts counting afresh: the "SPM matching" phase of the step timing
/// (issue #6), as the authors' figures separate their per-pair scipy matching. One clock for the
/// whole process: heads running at the same time (parallel tests) add to it; only the step timing
/// reads it.
pub fn take_matching_time() -> Duration {
    Duration::from_nanos(MATCHING_NANOS.swap(0, Ordering::Relaxed))
}

/// One layer's residual matcher MLP: w1 (C/2, C), w2 (C, C/2), no biases.
struct Matcher {
    w1: Tensor,
    w2: Tensor,
}

impl Matcher {
    /// x: (n, C) → x + ReLU(ReLU(x w1ᵀ) w2ᵀ)
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = x.matmul(&self.w1.t()?)?.relu()?;
        x + h.matmul(&self.w2.t()?)?.relu()?
    }
}

pub struct LwfmSpmHead {
    matchers: Vec<Matcher>,
    gamma: f64,
    tau: f64,
    matcher_prob: f64,
    /// The `no-lwe` sabotage: every LWE weight is 1 (see `crate::sabotage`).
    uniform_lwe: bool,
}

impl LwfmSpmHead {
    /// Matcher weights `matcher{l}.w1` / `matcher{l}.w2` under `vb` (PyTorch `nn.Linear` init).
    pub fn new(
        vb: VarBuilder,
        channels: &[usize],
        gamma: f64,
        tau: f64,
        matcher_prob: f64,
        uniform_lwe: bool,
    ) -> Result<Self> {
        let mut matchers = Vec::new();
        for (l, &c) in channels.iter().enumerate() {
            let vb = vb.pp(format!("matcher{l}"));
            let init = |fan_in: usize| {
                let b = 1.0 / (fan_in as f64).sqrt();
                candle_nn::Init::Uniform { lo: -b, up: b }
            };
            matchers.push(Matcher {
                w1: vb.get_with_hints((c / 2, c), "w1", init(c))?,
                w2: vb.get_with_hints((c, c / 2), "w2", init(c / 2))?,
            });
        }
        Ok(Self {
            matchers,
            gamma,
            tau,
            matcher_prob,
            uniform_lwe,
        })
    }
}

impl Head for LwfmSpmHead {
    fn forward(&self, f: &EpisodeFeatures, _train: bool) -> Result<HeadOutput> {
        let (s, c, h, w) = f.support.dims4()?;
        let q = f.query.dim(0)?;
        let p = h * w;
        if p < 2 {
            // the layer-wise weights z-score each correlation over positions: one position is 0/0
            candle_core::bail!(
                "LWFM-SPM needs feature maps of at least two positions, got {h}×{w}: give the cell \
                 larger images, earlier taps or a larger pool"
            );
        }
        let (n, k) = (f.n_way, f.n_shot);
        // each position's channels contiguous, (B, P, C): the reductions below run along rows
        let rows = |x: &Tensor, b: usize| -> Result<Tensor> {
            x.reshape((b, c, p))?.transpose(1, 2)?.contiguous()
        };
        // 1. centre every position over all concatenated channels
        let centre = |x: Tensor| -> Result<Tensor> { x.broadcast_sub(&x.mean_keepdim(2)?) };
        let spt = centre(rows(f.support, s)?)?; // (S, P, C)
        let qry = centre(rows(f.query, q)?)?; // (Q, P, C)
        let mut spt_proto = Vec::new();
        let mut qry_proto = Vec::new();
        let mut spm_layers = Vec::new();
        let mut offset = 0;
        for (l, &cl) in f.channels.iter().enumerate() {
            let fs = spt.narrow(2, offset, cl)?.contiguous()?; // (S, P, Cl)
            let fq = qry.narrow(2, offset, cl)?.contiguous()?; // (Q, P, Cl)
            offset += cl;
            // 2. cosine correlation of every (query, support) pair: corr[q, s, i, j]
            let ns = l2_normalize(&fs, 2, 1e-6)?.reshape((s * p, cl))?;
            let nq = l2_normalize(&fq, 2, 1e-6)?.reshape((q * p, cl))?;
            let corr = per_pair(ns.matmul(&nq.t()?)?, s, q, p)?;
            // 3. weights: softmax of the z-scored correlation over one side, summed over the other
            // (Q, S, P) each
            let (w_s, w_q) = if self.uniform_lwe {
                let ones = Tensor::ones((q, s, p), corr.dtype(), corr.device())?;
                (ones.clone(), ones)
            } else {
                lwe_weights(&corr, self.gamma)?
            };
            // 4. the reweighted features' shot and position means, (Q, N, Cl) each:
            // support image s: (Q × P) weights times its (P × Cl) features
            let weighted_spt = w_s.transpose(0, 1)?.contiguous()?.matmul(&fs)?; // (S, Q, Cl)
            spt_proto.push(
                (weighted_spt.reshape((k, n, q, cl))?.mean(0)? / p as f64)?
                    .transpose(0, 1)?
                    .contiguous()?,
            );
            // query q: its (N × P) shot-averaged weights times its (P × Cl) features
            let w_q_shots = w_q.reshape((q, k, n, p))?.mean(1)?; // (Q, N, P)
            qry_proto.push((w_q_shots.matmul(&fq)? / p as f64)?);
            if self.matcher_prob > 0.0 {
                spm_layers.push(self.spm_layer(l, &fs, &fq)?);
            }
        }
        let spt_proto = Tensor::cat(&spt_proto, 2)?; // (Q, N, C)
        let qry_proto = Tensor::cat(&qry_proto, 2)?; // (Q, N, C)

        // base term: cosine of the prototypes over all channels
        let base = cosine(&spt_proto, &qry_proto, D::Minus1)?; // (Q, N)
        let score = if spm_layers.is_empty() {
            base
        } else {
            // max over layers, then the mean over the K shots of each class
            let spm = Tensor::stack(&spm_layers, 0)?.max(0)?; // (Q*S)
            let spm = spm.reshape((q, k, n))?.mean(1)?;
            (base + spm)?
        };
        Ok(HeadOutput {
            logits: (score / self.tau)?,
            attended_query: Some(qry_proto.mean(1)?),
        })
    }
}

/// A (support position × query position) matrix, (S·P, Q·P), as per-pair blocks `[q, s, i, j]`
/// (support position i, query position j), contiguous.
fn per_pair(m: Tensor, s: usize, q: usize, p: usize) -> Result<Tensor> {
    m.reshape((s, p, q, p))?.permute((2, 0, 1, 3))?.contiguous()
}

/// LWE's position weights from a correlation `corr[q, s, i, j]` (support position i, query position
/// j): `w_s[q, s, i] = Σ_j softmax_i(z_i(corr) / γ)` and `w_q[q, s, j] = Σ_i softmax_j(z_j(corr) / γ)`,
/// z the unbiased z-score along the softmax axis. Each weight vector sums to the number of positions.
pub fn lwe_weights(corr: &Tensor, gamma: f64) -> Result<(Tensor, Tensor)> {
    let a_s = candle_nn::ops::softmax(&(gaussian_normalize(corr, 2)? / gamma)?, 2)?;
    let a_q = candle_nn::ops::softmax(&(gaussian_normalize(corr, 3)? / gamma)?, 3)?;
    Ok((a_s.sum(3)?, a_q.sum(2)?))
}

impl LwfmSpmHead {
    /// One layer's SPM score per pair (query-major, (Q·S,)): λ_m · max_i cos(g(s_i), g(q_π(i))), from
    /// the centred features `fs` (S, P, Cl) and `fq` (Q, P, Cl); see the module docs for why the LWE
    /// weights drop out.
    fn spm_layer(&self, l: usize, fs: &Tensor, fq: &Tensor) -> Result<Tensor> {
        let (s, p, cl) = fs.dims3()?;
        let q = fq.dim(0)?;
        let (fs, fq) = (fs.reshape((s * p, cl))?, fq.reshape((q * p, cl))?);
        // cost 1 − cos(s_i, q_j) with explicit norms, solved on the host without gradient
        let cos = unit(&fs.detach(), 1)?.matmul(&unit(&fq.detach(), 1)?.t()?)?;
        let costs = per_pair((1.0 - cos)?, s, q, p)?.to_dtype(DType::F32)?;
        // the copy below waits for the device anyway: waiting first times the matching alone
        costs.device().synchronize()?;
        let started = Instant::now();
        let costs: Vec<f32> = costs.flatten_all()?.to_vec1()?;
        let perm = assign_batch(&costs, p); // perm[pair * P + i] = query position matched to support i
        let index = Tensor::from_vec(perm, (q, s, p, 1), fs.device())?;
        MATCHING_NANOS.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let g = &self.matchers[l];
        let similarity = per_pair(cosine_matrix(&g.forward(&fs)?, &g.forward(&fq)?)?, s, q, p)?;
        let matched = similarity.gather(&index, 3)?.squeeze(3)?; // (Q, S, P), in support order
        matched.max(2)?.flatten_all()? * self.matcher_prob
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{max_relative, seeded};
    use candle_core::{Device, Var};
    use candle_nn::VarMap;

    /// The authors' computation as written (METHOD.md §3–4), which this head ran until 2026-12-03: the
    /// (Q, S, Cl, P) reweighted tensors, the SPM cost on them and g on every pair's rows. Returns the
    /// logits and the attended query.
    fn dense_reference(head: &LwfmSpmHead, f: &EpisodeFeatures) -> Result<(Tensor, Tensor)> {
        let (s, c, h, w) = f.support.dims4()?;
        let q = f.query.dim(0)?;
        let p = h * w;
        let (n, k) = (f.n_way, f.n_shot);
        let centre = |x: &Tensor, b: usize| -> Result<Tensor> {
            let x = x.reshape((b, c, p))?;
            x.broadcast_sub(&x.mean_keepdim(1)?)
        };
        let (spt, qry) = (centre(f.support, s)?, centre(f.query, q)?);
        let (mut spt_att, mut qry_att, mut spm_layers) = (Vec::new(), Vec::new(), Vec::new());
        let mut offset = 0;
        for (l, &cl) in f.channels.iter().enumerate() {
            let fs = spt.narrow(1, offset, cl)?;
            let fq = qry.narrow(1, offset, cl)?;
            offset += cl;
            let ns = l2_normalize(&fs, 1, 1e-6)?
                .transpose(1, 2)?
                .reshape((s * p, cl))?;
            let nq = l2_normalize(&fq, 1, 1e-6)?
                .transpose(0, 1)?
                .reshape((cl, q * p))?;
            let corr = ns
                .matmul(&nq)?
                .reshape((s, p, q, p))?
                .permute((2, 0, 1, 3))?;
            let (w_s, w_q) = if head.uniform_lwe {
                let ones = Tensor::ones((q, s, p), corr.dtype(), corr.device())?;
                (ones.clone(), ones)
            } else {
                lwe_weights(&corr.contiguous()?, head.gamma)?
            };
            let sa = w_s.unsqueeze(2)?.broadcast_mul(&fs.unsqueeze(0)?)?; // (Q, S, Cl, P)
            let qa = w_q.unsqueeze(2)?.broadcast_mul(&fq.unsqueeze(1)?)?;
            if head.matcher_prob > 0.0 {
                let pairs = q * s;
                let sa = sa.reshape((pairs, cl, p))?;
                let qa = qa.reshape((pairs, cl, p))?;
                let cos = unit(&sa, 1)?.transpose(1, 2)?.matmul(&unit(&qa, 1)?)?;
                let costs: Vec<f32> = (1.0 - cos.detach())?.flatten_all()?.to_vec1()?;
                let perm = assign_batch(&costs, p);
                let index = Tensor::from_vec(perm, (pairs, 1, p), qa.device())?
                    .broadcast_as((pairs, cl, p))?
                    .contiguous()?;
                let qa_matched = qa.contiguous()?.gather(&index, 2)?;
                let g = &head.matchers[l];
                let rows = |x: &Tensor| x.transpose(1, 2)?.reshape((pairs * p, cl));
                let gs = g.forward(&rows(&sa)?)?;
                let gq = g.forward(&rows(&qa_matched)?)?;
                let c = cosine(&gs, &gq, D::Minus1)?.reshape((pairs, p))?;
                spm_layers.push((c.max(1)? * head.matcher_prob)?);
            }
            spt_att.push(sa);
            qry_att.push(qa);
        }
        let spt_att = Tensor::cat(&spt_att, 2)?;
        let qry_att = Tensor::cat(&qry_att, 2)?;
        let spt_proto = spt_att.reshape((q, k, n, c, p))?.mean(1)?.mean(D::Minus1)?;
        let qry_proto = qry_att.reshape((q, k, n, c, p))?.mean(1)?.mean(D::Minus1)?;
        let mut score = cosine(&spt_proto, &qry_proto, D::Minus1)?;
        if !spm_layers.is_empty() {
            let spm = Tensor::stack(&spm_layers, 0)?
                .max(0)?
                .reshape((q, k, n))?
                .mean(1)?;
            score = (score + spm)?;
        }
        Ok(((score / head.tau)?, qry_proto.mean(1)?))
    }

    /// The head as computed (weights positive, g homogeneous, cosines scale-free) gives the dense
    /// formulation's logits, attended queries and gradients (features and matcher weights) up to f32
    /// rounding: 2 layers of 6 and 10 channels, 5-way with 4 queries per class; 2-shot on 3×3 maps with
    /// LWE and with the `no-lwe` sabotage, with and without SPM, and 1-shot on 2×3 maps. (The
    /// logits cannot see a scale error in the support prototypes, which the base cosine ignores; the
    /// attended query checks the query side's scale.)
    #[test]
    fn equals_the_dense_formulation_with_its_gradients() {
        let channels = [6usize, 10];
        let (n, queries) = (5, 20);
        // (shots, map height, map width, no-lwe sabotage, λ_m)
        let cases = [
            (2, 3, 3, false, 0.5),
            (2, 3, 3, true, 0.5),
            (2, 3, 3, false, 0.0),
            (1, 2, 3, false, 0.5),
        ];
        for (k, h, w, uniform_lwe, matcher_prob) in cases {
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
            let head =
                LwfmSpmHead::new(vb, &channels, 5.0, 0.2, matcher_prob, uniform_lwe).unwrap();
            let mut named: Vec<(String, Var)> =
                varmap.data().lock().unwrap().clone().into_iter().collect();
            named.sort_by(|a, b| a.0.cmp(&b.0));
            for (name, var) in &named {
                var.set(&seeded(var.dims(), name, 0.0)).unwrap();
            }
            let support =
                Var::from_tensor(&seeded(&[n * k, 16, h, w], "lwfm-support", 0.2)).unwrap();
            let query = Var::from_tensor(&seeded(&[queries, 16, h, w], "lwfm-query", 0.2)).unwrap();
            let f = EpisodeFeatures {
                support: support.as_tensor(),
                query: query.as_tensor(),
                channels: &channels,
                n_way: n,
                n_shot: k,
            };
            let out = head.forward(&f, true).unwrap();
            let (want_logits, want_attended) = dense_reference(&head, &f).unwrap();
            let case = format!("{k}-shot {h}×{w}, uniform_lwe {uniform_lwe}, λ_m {matcher_prob}");
            let logits = max_relative(&out.logits, &want_logits);
            assert!(logits < 1e-5, "{case}: logits differ by {logits}");
            let attended = max_relative(out.attended_query.as_ref().unwrap(), &want_attended);
            assert!(
                attended < 1e-5,
                "{case}: attended queries differ by {attended}"
            );
            // gradients of a seeded weighted sum of the logits and the attended queries
            let weights = seeded(&[queries, n], "lwfm-logit-weights", 0.0);
            let attended_weights = seeded(&[queries, 16], "lwfm-attended-weights", 0.0);
            let loss = |logits: &Tensor, attended: &Tensor| {
                ((logits * &weights).unwrap().sum_all().unwrap()
                    + (attended * &attended_weights).unwrap().sum_all().unwrap())
                .unwrap()
            };
            let got = loss(&out.logits, out.attended_query.as_ref().unwrap())
                .backward()
                .unwrap();
            let want = loss(&want_logits, &want_attended).backward().unwrap();
            let mut checked: Vec<(&str, &Var)> = vec![("support", &support), ("query", &query)];
            checked.extend(named.iter().map(|(name, var)| (name.as_str(), var)));
            for (name, var) in checked {
                match (got.get(var.as_tensor()), want.get(var.as_tensor())) {
                    (Some(g), Some(w)) => {
                        let difference = max_relative(g, w);
                        assert!(
                            difference < 1e-4,
                            "{case}: gradient of {name} differs by {difference}"
                        );
                    }
                    // the matcher weights when SPM is off
                    (None, None) => assert!(
                        name.starts_with("matcher") && matcher_prob == 0.0,
                        "{case}: {name}"
                    ),
                    (g, w) => panic!(
                        "{case}: {name} has a gradient on one side only ({} / {})",
                        g.is_some(),
                        w.is_some()
                    ),
                }
            }
        }
    }

    #[test]
    fn lwe_weights_sum_to_the_number_of_positions_and_favour_correlated_ones() {
        // one pair, 3 positions; support position 0 correlates strongly with every query position
        let corr = Tensor::new(
            &[[0.9f32, 0.8, 0.7], [0.1, 0.0, 0.2], [0.0, 0.1, -0.1]],
            &Device::Cpu,
        )
        .unwrap()
        .reshape((1, 1, 3, 3))
        .unwrap();
        let (w_s, w_q) = lwe_weights(&corr, 5.0).unwrap();
        let w_s: Vec<f32> = w_s.flatten_all().unwrap().to_vec1().unwrap();
        let w_q: Vec<f32> = w_q.flatten_all().unwrap().to_vec1().unwrap();
        // a softmax over i summed over the 3 values of j sums to 3 (METHOD.md §3 step 4: "sum to 9" for 3x3)
        assert!((w_s.iter().sum::<f32>() - 3.0).abs() < 1e-5, "{w_s:?}");
        assert!((w_q.iter().sum::<f32>() - 3.0).abs() < 1e-5, "{w_q:?}");
        assert!(w_s[0] > w_s[1] && w_s[0] > w_s[2], "{w_s:?}");
    }

    #[test]
    fn one_position_maps_are_refused_with_the_fix() {
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let head = LwfmSpmHead::new(vb, &[8], 5.0, 0.2, 0.25, false).unwrap();
        // varied, finite features: sin of the element index
        let features = |n: usize, side: usize| {
            Tensor::arange(0u32, (n * 8 * side * side) as u32, &Device::Cpu)?
                .to_dtype(DType::F32)?
                .affine(0.7, 0.3)?
                .sin()?
                .reshape((n, 8, side, side))
        };
        let (support, query) = (features(5, 1).unwrap(), features(10, 1).unwrap());
        let episode = EpisodeFeatures {
            support: &support,
            query: &query,
            channels: &[8],
            n_way: 5,
            n_shot: 1,
        };
        let Err(e) = head.forward(&episode, false) else {
            panic!("1×1 maps are refused")
        };
        assert!(
            e.to_string().contains("at least two positions, got 1×1"),
            "{e}"
        );
        // two positions run (to finite logits)
        let (support, query) = (features(5, 2).unwrap(), features(10, 2).unwrap());
        let episode = EpisodeFeatures {
            support: &support,
            query: &query,
            ..episode
        };
        assert!(head.forward(&episode, false).is_ok());
    }

    /// The config's least γ (`manifest::model::min_attention_temperature`) keeps every weight above 0
    /// on the widest z-score spread (+1 and −1 at two positions, the rest 0, for every query
    /// position); half of it underflows one, so the bound is where the failure is.
    #[test]
    fn the_least_attention_temperature_keeps_every_weight_positive() {
        for side in [3usize, 5, 21] {
            let p = side * side;
            let mut column = vec![0f32; p];
            (column[0], column[1]) = (1.0, -1.0);
            // corr[0, 0, i, j] = column[i] for every j: z over i spans √(2(P − 1))
            let corr: Vec<f32> = column.iter().flat_map(|&c| vec![c; p]).collect();
            let corr = Tensor::from_vec(corr, (1, 1, p, p), &Device::Cpu).unwrap();
            let least = crate::manifest::model::min_attention_temperature(p);
            let smallest = |gamma: f64| -> f32 {
                let (w_s, _) = lwe_weights(&corr, gamma).unwrap();
                let w: Vec<f32> = w_s.flatten_all().unwrap().to_vec1().unwrap();
                assert!(
                    w.iter().all(|v| v.is_finite()),
                    "{side}x{side}, gamma {gamma}"
                );
                w.into_iter().fold(f32::INFINITY, f32::min)
            };
            // every softmax value (here a weight / P: the P columns are equal) stays at e^−80 or
            // above, a normal f32, also where a device flushes subnormals to 0
            let entry = smallest(least) / p as f32;
            assert!(
                entry >= (-80f32).exp(),
                "{side}x{side} at gamma {least}: {entry}"
            );
            assert_eq!(
                smallest(least / 2.0),
                0.0,
                "{side}x{side} at gamma {}",
                least / 2.0
            );
        }
    }
}
