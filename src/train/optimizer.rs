//! SGD as PyTorch's `torch.optim.SGD` computes it (momentum, Nesterov, weight decay added to the
//! gradient), plus global gradient-norm clipping and the zeroing of NaN gradients the authors apply.
//! Momentum buffers are named like the parameters so checkpoints can hold them.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

pub struct Sgd {
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    /// name → momentum buffer
    pub buffers: HashMap<String, Tensor>,
}

impl Sgd {
    pub fn new(momentum: f64, nesterov: bool, weight_decay: f64) -> Self {
        Self {
            momentum,
            nesterov,
            weight_decay,
            buffers: HashMap::new(),
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_pytorch_nesterov_by_hand() {
        // p = 1, loss = p² (grad 2p), lr 0.1, momentum 0.9, nesterov, wd 0.1
        // step 1: d = 2 + 0.1 = 2.1, buf = 2.1, d = 2.1 + 0.9*2.1 = 3.99, p = 1 - 0.399 = 0.601
        let var = Var::new(&[1f32], &Device::Cpu).unwrap();
        let params = vec![("p".to_string(), var.clone())];
        let mut sgd = Sgd::new(0.9, true, 0.1);
        let loss = var.as_tensor().sqr().unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        sgd.step(&grads, &params, 0.1).unwrap();
        let p = var.as_tensor().to_vec1::<f32>().unwrap()[0];
        assert!((p - 0.601).abs() < 1e-6, "{p}");
        // step 2: g = 1.202, d = 1.202 + 0.0601 = 1.2621, buf = 0.9*2.1 + 1.2621 = 3.1521,
        // d = 1.2621 + 0.9*3.1521 = 4.09899, p = 0.601 - 0.409899 = 0.191101
        let loss = var.as_tensor().sqr().unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        sgd.step(&grads, &params, 0.1).unwrap();
        let p = var.as_tensor().to_vec1::<f32>().unwrap()[0];
        assert!((p - 0.191101).abs() < 1e-5, "{p}");
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
        // grad a = 3, grad c = 4 (norm 5); b's gradient is NaN (0 · ∞ via sqrt(-1))
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
