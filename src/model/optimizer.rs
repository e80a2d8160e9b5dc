//! SGD as PyTorch's `torch.optim.SGD` computes it (momentum, Nesterov, weight decay added to the
//! gradient), plus global gradient-norm clipping and the zeroing of NaN gradients the authors apply.
//! Momentum buffers are named like the parameters so checkpoints can hold them. On the fast path the
//! update is two in-place ops per parameter (`sgd_update_ops`, the same bits) instead of the
//! composition of candle ops below.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

use crate::layers::OpsPath;
use crate::model::sgd_update_ops::{update_momentum_buffer, update_weight, SgdScalars};

pub struct Sgd {
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    /// name → momentum buffer
    pub buffers: HashMap<String, Tensor>,
    /// Stock: candle ops; fast: the in-place update ops.
    pub ops: OpsPath,
}

impl Sgd {
    pub fn new(momentum: f64, nesterov: bool, weight_decay: f64) -> Self {
        Self {
            momentum,
            nesterov,
            weight_decay,
            buffers: HashMap::new(),
            ops: OpsPath::Stock,
        }
    }

    /// The same optimiser, updating through `ops` (the model's path).
    pub fn on_path(self, ops: OpsPath) -> Self {
        Self { ops, ..self }
    }

    /// Clips the gradients of `params` to a global L2 norm of `max_norm` (if > 0), zeroing NaNs;
    /// returns the norm before clipping. The per-parameter squared norms come to the host in one
    /// transfer (one device synchronisation per step, not one per parameter).
    pub fn clip(grads: &mut GradStore, params: &[(String, Var)], max_norm: f64) -> Result<f64> {
        let with_gradient: Vec<(&Var, Tensor)> = params
            .iter()
            .filter_map(|(_, var)| grads.get(var.as_tensor()).map(|g| (var, g.clone())))
            .collect();
        let squares: Vec<f32> = if with_gradient.is_empty() {
            Vec::new()
        } else {
            let sums = with_gradient
                .iter()
                .map(|(_, g)| g.sqr()?.sum_all())
                .collect::<Result<Vec<_>>>()?;
            Tensor::stack(&sums, 0)?.to_vec1()?
        };
        let mut total = 0f64;
        for ((var, g), sq) in with_gradient.iter().zip(squares) {
            let sq = sq as f64;
            if sq.is_nan() {
                grads.insert(var.as_tensor(), g.zeros_like()?);
                continue;
            }
            total += sq;
        }
        let norm = total.sqrt();
        if max_norm > 0.0 && norm > max_norm {
            let scale = max_norm / (norm + 1e-6);
            for (_, var) in params {
                if let Some(g) = grads.get(var.as_tensor()) {
                    let scaled = (g * scale)?;
                    grads.insert(var.as_tensor(), scaled);
                }
            }
        }
        Ok(norm)
    }

    /// One update with learning rate `lr` of every parameter that has a gradient.
    pub fn step(&mut self, grads: &GradStore, params: &[(String, Var)], lr: f64) -> Result<()> {
        if self.ops == OpsPath::Fast {
            return self.step_in_place(grads, params, lr);
        }
        for (name, var) in params {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            // gradients carry the op graph of the step that made them: detach, or every momentum
            // buffer would keep all earlier steps' activations alive
            let g = g.detach();
            let w = var.as_tensor().detach();
            let mut d = if self.weight_decay != 0.0 {
                (&g + (&w * self.weight_decay)?)?
            } else {
                g.clone()
            };
            if self.momentum != 0.0 {
                let buf = match self.buffers.get(name) {
                    Some(b) => ((b * self.momentum)? + &d)?,
                    None => d.clone(),
                };
                d = if self.nesterov {
                    (&d + (&buf * self.momentum)?)?
                } else {
                    buf.clone()
                };
                self.buffers.insert(name.clone(), buf);
            }
            var.set(&(w - (d * lr)?)?)?;
        }
        Ok(())
    }

    /// [`Sgd::step`] through the in-place ops: the buffer, then the weight, per parameter.
    fn step_in_place(
        &mut self,
        grads: &GradStore,
        params: &[(String, Var)],
        lr: f64,
    ) -> Result<()> {
        let scalars = SgdScalars {
            lr,
            momentum: self.momentum,
            nesterov: self.nesterov,
            weight_decay: self.weight_decay,
        };
        for (name, var) in params {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            // the ops read contiguous data; candle sums every gradient by an add, so this is no copy
            // (a strided one would be copied: the same bits)
            let g = g.detach().contiguous()?;
            let buffer = if self.momentum != 0.0 {
                let (buffer, first) = match self.buffers.get(name) {
                    Some(b) => (b.clone(), false),
                    None => (g.zeros_like()?, true),
                };
                update_momentum_buffer(&buffer, &g, var.as_tensor(), scalars, first)?;
                if first {
                    // later steps update it in place
                    self.buffers.insert(name.clone(), buffer.clone());
                }
                Some(buffer)
            } else {
                None
            };
            update_weight(var.as_tensor(), &g, buffer.as_ref(), scalars)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_pytorch_nesterov_by_hand() {
        for ops in [OpsPath::Stock, OpsPath::Fast] {
            // p = 1, loss = p² (grad 2p), lr 0.1, momentum 0.9, nesterov, wd 0.1
            // step 1: d = 2 + 0.1 = 2.1, buf = 2.1, d = 2.1 + 0.9*2.1 = 3.99, p = 1 - 0.399 = 0.601
            let var = Var::new(&[1f32], &Device::Cpu).unwrap();
            let params = vec![("p".to_string(), var.clone())];
            let mut sgd = Sgd::new(0.9, true, 0.1).on_path(ops);
            let loss = var.as_tensor().sqr().unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            sgd.step(&grads, &params, 0.1).unwrap();
            let p = var.as_tensor().to_vec1::<f32>().unwrap()[0];
            assert!((p - 0.601).abs() < 1e-6, "{ops:?}: {p}");
            // step 2: g = 1.202, d = 1.202 + 0.0601 = 1.2621, buf = 0.9*2.1 + 1.2621 = 3.1521,
            // d = 1.2621 + 0.9*3.1521 = 4.09899, p = 0.601 - 0.409899 = 0.191101
            let loss = var.as_tensor().sqr().unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            sgd.step(&grads, &params, 0.1).unwrap();
            let p = var.as_tensor().to_vec1::<f32>().unwrap()[0];
            assert!((p - 0.191101).abs() < 1e-5, "{ops:?}: {p}");
        }
    }

    /// The parameters and momentum buffers, bit for bit, after three steps of each path from the same
    /// start, for every case `step` has, with parameters used plainly, transposed (as a linear layer's
    /// weight) and through a view.
    #[test]
    fn the_fast_path_update_gives_the_stock_bits() {
        use crate::test_support::{bits, seeded};
        let run = |ops: OpsPath, (momentum, nesterov, decay): (f64, bool, f64)| {
            let vars = [
                Var::from_tensor(&seeded(&[4, 3, 3, 3], "sgd-conv", 0.0)).unwrap(),
                Var::from_tensor(&seeded(&[5, 6], "sgd-linear", 0.0)).unwrap(),
                Var::from_tensor(&seeded(&[6], "sgd-gamma", 1.0)).unwrap(),
            ];
            let params: Vec<(String, Var)> = ["conv", "linear", "gamma"]
                .iter()
                .zip(&vars)
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect();
            let mut sgd = Sgd::new(momentum, nesterov, decay).on_path(ops);
            for step in 0..3 {
                let r = |key: &str, shape: &[usize]| seeded(shape, &format!("{key}-{step}"), 0.0);
                let conv = vars[0]
                    .as_tensor()
                    .mul(&r("r-conv", &[4, 3, 3, 3]))
                    .unwrap();
                let linear = r("r-x", &[2, 6])
                    .matmul(&vars[1].as_tensor().t().unwrap())
                    .unwrap();
                let gamma_view = Tensor::cat(&[vars[2].as_tensor(), vars[2].as_tensor()], 0)
                    .unwrap()
                    .narrow(0, 3, 6)
                    .unwrap();
                let loss = (conv.sum_all().unwrap()
                    + (linear * r("r-l", &[2, 5])).unwrap().sum_all().unwrap()
                    + gamma_view
                        .sqr()
                        .unwrap()
                        .mul(&r("r-g", &[6]))
                        .unwrap()
                        .sum_all()
                        .unwrap())
                .unwrap();
                let grads = loss.backward().unwrap();
                sgd.step(&grads, &params, 0.05).unwrap();
            }
            let weights: Vec<Vec<u32>> = vars.iter().map(|v| bits(v.as_tensor())).collect();
            let mut buffers: Vec<(String, Vec<u32>)> = sgd
                .buffers
                .iter()
                .map(|(n, b)| (n.clone(), bits(b)))
                .collect();
            buffers.sort();
            (weights, buffers)
        };
        for case in [
            (0.9, true, 5e-4),
            (0.9, false, 5e-4),
            (0.9, true, 0.0),
            (0.0, false, 5e-4),
            (0.0, false, 0.0),
        ] {
            let (stock, fast) = (run(OpsPath::Stock, case), run(OpsPath::Fast, case));
            assert_eq!(fast, stock, "momentum, nesterov, weight decay {case:?}");
            assert_eq!(stock.1.len(), if case.0 != 0.0 { 3 } else { 0 });
        }
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let var = Var::new(&[3f32, 4.0], &Device::Cpu).unwrap();
        let params = vec![("p".to_string(), var.clone())];
        // loss = 0.5 * |p|² → grad = p = (3, 4), norm 5
        let loss = (var.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
        let mut grads = loss.backward().unwrap();
        let norm = Sgd::clip(&mut grads, &params, 2.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-6);
        let g = grads
            .get(var.as_tensor())
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(
            (g[0] - 1.2).abs() < 1e-5 && (g[1] - 1.6).abs() < 1e-5,
            "{g:?}"
        );
    }

    /// A NaN gradient is zeroed and left out of the norm; a parameter without a gradient is skipped;
    /// the others are scaled together.
    #[test]
    fn clipping_zeroes_nan_gradients_and_skips_parameters_without_one() {
        let device = Device::Cpu;
        let (a, b, unused) = (
            Var::new(&[3f32], &device).unwrap(),
            Var::new(&[1f32, 2.0], &device).unwrap(),
            Var::new(&[7f32], &device).unwrap(),
        );
        let c = Var::new(&[4f32], &device).unwrap();
        let params: Vec<(String, Var)> = [("a", &a), ("b", &b), ("c", &c), ("unused", &unused)]
            .iter()
            .map(|(n, v)| (n.to_string(), (*v).clone()))
            .collect();
        // grad a = 3, grad c = 4 (norm 5); b's gradient is NaN (b · √−1)
        let nan = b.as_tensor().affine(0.0, -1.0).unwrap().sqrt().unwrap();
        let loss = ((a.as_tensor().sqr().unwrap() * 0.5)
            .unwrap()
            .sum_all()
            .unwrap()
            + (c.as_tensor().sqr().unwrap() * 0.5)
                .unwrap()
                .sum_all()
                .unwrap()
            + (b.as_tensor() * &nan).unwrap().sum_all().unwrap())
        .unwrap();
        let mut grads = loss.backward().unwrap();
        assert!(grads.get(unused.as_tensor()).is_none());
        let norm = Sgd::clip(&mut grads, &params, 2.5).unwrap();
        assert!((norm - 5.0).abs() < 1e-6, "{norm}");
        let get = |v: &Var| grads.get(v.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(get(&b), vec![0.0, 0.0]);
        assert!((get(&a)[0] - 1.5).abs() < 1e-5 && (get(&c)[0] - 2.0).abs() < 1e-5);
    }
}
