//! The fast path checked against candle's stock ops on a given device, on seeded random inputs:
//! every fast op's output and every gradient it passes back (convolutions of the backbones' four
//! kinds and one at an episode's scale, batch norm in training (with its running statistics, and with
//! the activation it can apply) and in evaluation, max pooling, leaky ReLU and ReLU, the SGD update), and the padded max pool on negative
//! inputs against its own CPU formulas (where the stock path's zero padding is not exact). The issue's bound is a relative
//! error ≤ 1e-4 in f32 math (max |fast − stock| / max |stock|); the convolutions are also run in
//! TF32 and compared with the stock f32 ones within 5e-3.
//!
//! A model on the fast path runs this once per process and device before it trains on anything but
//! the CPU (`FewShotModel::new`), and refuses to run if an op disagrees: the CUDA side (cuDNN and
//! two NVRTC kernels) is compiled in CI but can only be run where a GPU is, and this is what makes a
//! wrong kernel an error instead of a wrong number. `examples/fast_ops_check.rs` prints the table.

use std::collections::HashSet;
use std::sync::Mutex;

use candle_core::{DType, Device, ModuleT, Result, Tensor, Var};

pub use crate::kernels::op_operands::l2_relative;
use crate::kernels::op_operands::{max_relative, seeded};
use crate::layers::{ConvMath, LayerOps};

/// The bound on max |fast − stock| / max |stock|, f32 math.
pub const TOLERANCE: f32 = 1e-4;

/// The bound for the fast path's TF32 convolutions against the stock f32 ones: each product's
/// operands carry TF32's half-unit rounding, 2⁻¹¹ ≈ 4.9e-4 relative.
pub const TF32_TOLERANCE: f32 = 5e-3;

/// One quantity of one op, compared.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The op and its shape, e.g. `conv 3x3 s2 p1 (2,8,11,11)→16`.
    pub op: String,
    /// What was compared: `forward`, `dx`, `dw`, `dgamma`, `running_var`, …
    pub quantity: &'static str,
    pub max_relative: f32,
    /// [`TOLERANCE`], [`TF32_TOLERANCE`] for a TF32 convolution, 0 for the SGD update.
    pub bound: f32,
}

impl Comparison {
    /// Within its bound (a NaN fails).
    pub fn passes(&self) -> bool {
        self.max_relative <= self.bound
    }
}

/// The gradients of Σ out·r for a seeded r, for each of `vars` (variables).
fn gradients(out: &Tensor, key: &str, vars: &[&Tensor]) -> Result<Vec<Tensor>> {
    let r = seeded(out.dims(), key, 0.0, out.device())?;
    let grads = (out * r)?.sum_all()?.backward()?;
    vars.iter()
        .map(|v| {
            grads
                .get(v)
                .cloned()
                .ok_or_else(|| candle_core::Error::Msg("a gradient is missing".into()))
        })
        .collect()
}

/// The output and input-gradient comparisons of a one-input op, (fast, reference) pairs, each
/// taken on the host (the reference may live on another device).
fn output_and_dx(
    out: &mut Vec<Comparison>,
    op: String,
    output: (&Tensor, &Tensor),
    dx: (&Tensor, &Tensor),
) -> Result<()> {
    let host = |t: &Tensor| t.to_device(&Device::Cpu);
    out.push(Comparison {
        op: op.clone(),
        quantity: "forward",
        max_relative: max_relative(&host(output.0)?, &host(output.1)?)?,
        bound: TOLERANCE,
    });
    out.push(Comparison {
        op,
        quantity: "dx",
        max_relative: max_relative(&host(dx.0)?, &host(dx.1)?)?,
        bound: TOLERANCE,
    });
    Ok(())
}

fn convolutions(device: &Device, math: ConvMath, out: &mut Vec<Comparison>) -> Result<()> {
    let bound = match math {
        ConvMath::F32 => TOLERANCE,
        ConvMath::Tf32 => TF32_TOLERANCE,
    };
    // (k, stride, padding, batch, c_in, c_out, size): 3×3 (all backbones), its stride-2 form
    // (ResNet-18), the 1×1 stride-2 shortcut, ResNet-18's 7×7 stem; and Conv-4's second layer at
    // 84×84 on a fifth of an episode, since cuDNN picks its algorithm by shape
    for (k, stride, padding, batch, c_in, c_out, size) in [
        (3, 1, 1, 2, 3, 8, 12),
        (3, 2, 1, 2, 8, 16, 11),
        (1, 2, 0, 2, 8, 16, 10),
        (7, 2, 3, 2, 3, 8, 21),
        (3, 1, 1, 20, 64, 64, 42),
    ] {
        let op = format!(
            "conv {} {k}x{k} s{stride} p{padding} ({batch},{c_in},{size},{size})->{c_out}",
            math.name()
        );
        let x = Var::from_tensor(&seeded(&[batch, c_in, size, size], "check-x", 0.0, device)?)?;
        let w = Var::from_tensor(&seeded(&[c_out, c_in, k, k], "check-w", 0.0, device)?)?;
        let stock = x.conv2d(&w, padding, stride, 1, 1)?;
        let fast = crate::kernels::conv_ops::conv2d(&x, &w, stride, padding, math.into())?;
        let stock_grads = gradients(&stock, "check-r", &[&x, &w])?;
        let fast_grads = gradients(&fast, "check-r", &[&x, &w])?;
        out.push(Comparison {
            op: op.clone(),
            quantity: "forward",
            max_relative: max_relative(&fast, &stock)?,
            bound,
        });
        for (quantity, (f, s)) in ["dx", "dw"]
            .into_iter()
            .zip(fast_grads.iter().zip(&stock_grads))
        {
            out.push(Comparison {
                op: op.clone(),
                quantity,
                max_relative: max_relative(f, s)?,
                bound,
            });
        }
    }
    Ok(())
}

fn batch_norm(device: &Device, out: &mut Vec<Comparison>) -> Result<()> {
    let (channels, shape) = (6, [4usize, 6, 7, 9]);
    let make = || -> Result<candle_nn::BatchNorm> {
        let mut varmap = candle_nn::VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, device);
        let bn = candle_nn::batch_norm(channels, candle_nn::BatchNormConfig::default(), vb)?;
        varmap.set_one("weight", seeded(&[channels], "check-g", 1.0, device)?)?;
        varmap.set_one("bias", seeded(&[channels], "check-b", 0.0, device)?)?;
        Ok(bn)
    };
    let x = Var::from_tensor(&seeded(&shape, "check-bn-x", 0.5, device)?)?;
    // training, alone (with the running statistics) and with the activation that follows it in the
    // backbones, one op on the fast path (ResNet-12's slope, and ReLU), against the stock batch norm
    // and the stock activation; the first pair stays for evaluation mode
    let mut trained = None;
    for activation in [None, Some(0.1), Some(0.0)] {
        let (stock, fast) = (make()?, make()?);
        let y_stock = stock.forward_t(&x, true)?;
        let (y_stock, op, key) = match activation {
            None => (y_stock, format!("batch norm train {shape:?}"), "check-bn-r"),
            Some(slope) => (
                crate::layers::LeakyRelu::new(slope, LayerOps::f32(crate::layers::OpsPath::Stock))
                    .forward(&y_stock)?,
                format!("batch norm train + leaky relu {slope} {shape:?}"),
                "check-bn-act-r",
            ),
        };
        let (g, b) = fast.weight_and_bias().expect("affine");
        let y_fast = crate::kernels::batch_norm_ops::batch_norm_train(
            &x,
            g,
            b,
            (fast.running_mean(), fast.running_var()),
            (fast.momentum(), fast.eps()),
            activation,
        )?;
        let (sg, sb) = stock.weight_and_bias().expect("affine");
        let stock_grads = gradients(&y_stock, key, &[&x, sg, sb])?;
        let fast_grads = gradients(&y_fast, key, &[&x, g, b])?;
        let mut pairs: Vec<(&'static str, &Tensor, &Tensor)> = vec![
            ("forward", &y_fast, &y_stock),
            ("dx", &fast_grads[0], &stock_grads[0]),
            ("dgamma", &fast_grads[1], &stock_grads[1]),
            ("dbeta", &fast_grads[2], &stock_grads[2]),
        ];
        if activation.is_none() {
            pairs.push(("running_mean", fast.running_mean(), stock.running_mean()));
            pairs.push(("running_var", fast.running_var(), stock.running_var()));
        }
        for (quantity, f, s) in pairs {
            out.push(Comparison {
                op: op.clone(),
                quantity,
                max_relative: max_relative(f, s)?,
                bound: TOLERANCE,
            });
        }
        if activation.is_none() {
            trained = Some((stock, fast));
        }
    }
    let (stock, fast) = trained.expect("the first pass has no activation");
    let (g, b) = fast.weight_and_bias().expect("affine");
    // evaluation mode, on the running statistics the training step left
    let op = format!("batch norm eval {shape:?}");
    let x = Var::from_tensor(&seeded(&shape, "check-bn-eval-x", 0.3, device)?)?;
    let y_stock = stock.forward_t(&x, false)?;
    let y_fast = crate::kernels::batch_norm_eval_ops::batch_norm_eval(
        &x,
        g,
        b,
        (fast.running_mean(), fast.running_var()),
        fast.eps(),
    )?;
    let ds = gradients(&y_stock, "check-bn-eval-r", &[&x])?;
    let df = gradients(&y_fast, "check-bn-eval-r", &[&x])?;
    output_and_dx(out, op, (&y_fast, &y_stock), (&df[0], &ds[0]))
}

fn leaky_relu(device: &Device, out: &mut Vec<Comparison>) -> Result<()> {
    // ResNet-12's slope, and 0 (ReLU: Conv-4, ResNet-18)
    for slope in [0.1, 0.0] {
        let op = format!("leaky relu {slope} (3,5,20,30)");
        // offset 0.1: no value is exactly 0, where the paths' gradients differ by design
        let x = Var::from_tensor(&seeded(&[3, 5, 20, 30], "check-lrelu", 0.1, device)?)?;
        let stock =
            crate::layers::LeakyRelu::new(slope, LayerOps::f32(crate::layers::OpsPath::Stock))
                .forward(&x)?;
        let fast = crate::kernels::leaky_relu_ops::leaky_relu(&x, slope)?;
        let ds = gradients(&stock, "check-lrelu-r", &[&x])?;
        let df = gradients(&fast, "check-lrelu-r", &[&x])?;
        output_and_dx(out, op, (&fast, &stock), (&df[0], &ds[0]))?;
    }
    Ok(())
}

fn max_pooling(device: &Device, out: &mut Vec<Comparison>) -> Result<()> {
    // Conv-4's and ResNet-12's 2×2 pool on an odd side (21 → 10: the last row and column fall out of
    // every window), ResNet-18's overlapping 3×3 stem pool; positive inputs (no ties, and the stock
    // path's zero padding is exact)
    for (k, stride, padding, size) in [(2, 2, 0, 21), (3, 2, 1, 20)] {
        let op = format!("max pool {k}x{k} s{stride} p{padding} (4,8,{size},{size})");
        let x = Var::from_tensor(&seeded(&[4, 8, size, size], "check-pool", 2.0, device)?)?;
        let stock = crate::layers::max_pool2d(&x, k, stride, padding)?;
        let fast = crate::kernels::max_pool_ops::max_pool2d(&x, k, stride, padding)?;
        let ds = gradients(&stock, "check-pool-r", &[&x])?;
        let df = gradients(&fast, "check-pool-r", &[&x])?;
        output_and_dx(out, op, (&fast, &stock), (&df[0], &ds[0]))?;
    }
    // ResNet-18's padded stem pool on negative inputs, where a padding position would win a window
    // if it counted as 0 (the stock path's zero padding is wrong there, so the reference is the fast
    // op's own CPU formulas, which are tested against the definition): cuDNN's −∞ padding checked.
    // On the CPU this compares the op with itself and cannot fail; it means something on a device
    let op = "max pool 3x3 s2 p1 negative (4,8,20,20) vs cpu".to_string();
    let x = seeded(&[4, 8, 20, 20], "check-pool-negative", -2.0, device)?;
    let ((fast, cpu), (df, dc)) = pool_here_and_on_cpu(&x, (3, 2, 1), "check-pool-negative-r")?;
    output_and_dx(out, op, (&fast, &cpu), (&df, &dc))?;
    max_pool_ties(device, out)
}

type Pair = (Tensor, Tensor);

/// The fast max pool (kernel, stride, padding) of `x` on its device and of a copy on the CPU, and
/// the input gradients of both for the seeded upstream gradient `key`: ((outputs), (gradients)).
fn pool_here_and_on_cpu(
    x: &Tensor,
    (k, s, p): (usize, usize, usize),
    key: &str,
) -> Result<(Pair, Pair)> {
    let on_device = Var::from_tensor(x)?;
    let on_cpu = Var::from_tensor(&x.to_device(&Device::Cpu)?)?;
    let fast = crate::kernels::max_pool_ops::max_pool2d(&on_device, k, s, p)?;
    let cpu = crate::kernels::max_pool_ops::max_pool2d(&on_cpu, k, s, p)?;
    let df = gradients(&fast, key, &[&on_device])?.remove(0);
    let dc = gradients(&cpu, key, &[&on_cpu])?.remove(0);
    Ok(((fast, cpu), (df, dc)))
}

/// Max pooling where most windows hold a tied maximum (whole numbers in −3…3), against the fast op's
/// CPU formulas: the output must match; where a tie's gradient goes is cuDNN's undocumented rule,
/// so what is bound is each plane's gradient total (kept by any rule that routes a window's
/// gradient to its maxima), while the element-wise difference from the CPU's first-maximum rule is
/// reported (`reported`, no bound) for a GPU run to show which rule cuDNN follows. On the CPU it
/// compares the op with itself.
fn max_pool_ties(device: &Device, out: &mut Vec<Comparison>) -> Result<()> {
    let op = "max pool 2x2 s2 ties (4,8,20,20) vs cpu".to_string();
    let x = (seeded(&[4, 8, 20, 20], "check-pool-ties", 0.0, device)? * 3.0)?.round()?;
    let ((fast, cpu), (df, dc)) = pool_here_and_on_cpu(&x, (2, 2, 0), "check-pool-ties-r")?;
    let host = |t: &Tensor| t.to_device(&Device::Cpu);
    let plane_totals = |t: &Tensor| host(t)?.sum((2, 3));
    out.push(Comparison {
        op: op.clone(),
        quantity: "forward",
        max_relative: max_relative(&host(&fast)?, &host(&cpu)?)?,
        bound: TOLERANCE,
    });
    out.push(Comparison {
        op: op.clone(),
        quantity: "dx per plane",
        max_relative: max_relative(&plane_totals(&df)?, &plane_totals(&dc)?)?,
        bound: TOLERANCE,
    });
    out.push(Comparison {
        op,
        quantity: "dx tie rule",
        max_relative: max_relative(&host(&df)?, &host(&dc)?)?,
        bound: f32::INFINITY,
    });
    Ok(())
}

/// The SGD update: the in-place ops against `Sgd`'s composition of candle ops, weight and momentum
/// buffer after two steps (the first makes the buffer), for Nesterov and heavy-ball momentum, without
/// momentum and without weight decay. Bound 0: equal values (a zero's sign aside); the same bits on
/// the CPU (`model::optimizer`'s tests).
fn sgd_update(device: &Device, out: &mut Vec<Comparison>) -> Result<()> {
    use crate::model::optimizer::Sgd;
    let shape = [16usize, 8, 3, 3];
    for (momentum, nesterov, decay) in [
        (0.9, true, 5e-4),
        (0.9, false, 5e-4),
        (0.9, true, 0.0),
        (0.0, false, 5e-4),
    ] {
        let run = |ops: crate::layers::OpsPath| -> Result<(Tensor, Option<Tensor>)> {
            let var = Var::from_tensor(&seeded(&shape, "check-sgd-w", 0.0, device)?)?;
            let params = vec![("w".to_string(), var.clone())];
            let mut sgd = Sgd::new(momentum, nesterov, decay).on_path(ops);
            for step in 0..2 {
                let r = seeded(&shape, &format!("check-sgd-r{step}"), 0.0, device)?;
                let grads = (var.as_tensor().sqr()? * r)?.sum_all()?.backward()?;
                sgd.step(&grads, &params, 0.05)?;
            }
            Ok((var.as_tensor().clone(), sgd.buffers.get("w").cloned()))
        };
        let (stock, fast) = (
            run(crate::layers::OpsPath::Stock)?,
            run(crate::layers::OpsPath::Fast)?,
        );
        let kind = match (momentum != 0.0, nesterov) {
            (false, _) => "no momentum",
            (true, false) => "heavy ball",
            (true, true) => "nesterov",
        };
        let op = format!("sgd {kind} decay {decay} {shape:?}");
        let mut push = |quantity, f: &Tensor, s: &Tensor| -> Result<()> {
            out.push(Comparison {
                op: op.clone(),
                quantity,
                max_relative: max_relative(f, s)?,
                bound: 0.0,
            });
            Ok(())
        };
        push("weight", &fast.0, &stock.0)?;
        match (&fast.1, &stock.1) {
            (Some(f), Some(s)) => push("buffer", f, s)?,
            (None, None) => {}
            _ => candle_core::bail!("{op}: one path kept a momentum buffer, the other none"),
        }
    }
    Ok(())
}

/// Every comparison on `device`.
pub fn compare_with_stock(device: &Device) -> Result<Vec<Comparison>> {
    let mut out = Vec::new();
    convolutions(device, ConvMath::F32, &mut out)?;
    convolutions(device, ConvMath::Tf32, &mut out)?;
    batch_norm(device, &mut out)?;
    max_pooling(device, &mut out)?;
    leaky_relu(device, &mut out)?;
    sgd_update(device, &mut out)?;
    Ok(out)
}

/// The comparisons beyond [`TOLERANCE`] (or not finite), as `op quantity: error`.
fn failures(comparisons: &[Comparison]) -> Vec<String> {
    comparisons
        .iter()
        .filter(|c| !c.passes())
        .map(|c| {
            format!(
                "{} {}: {:.2e} (bound {:e})",
                c.op, c.quantity, c.max_relative, c.bound
            )
        })
        .collect()
}

/// Runs [`compare_with_stock`] once per process and device and fails, naming the ops, if any
/// disagrees beyond [`TOLERANCE`] or cannot run there.
pub fn verify(device: &Device) -> crate::Result<()> {
    static VERIFIED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let name = format!("{:?}", device.location());
    if VERIFIED
        .lock()
        .map(|v| v.as_ref().is_some_and(|set| set.contains(&name)))
        .unwrap_or(false)
    {
        return Ok(());
    }
    let comparisons = compare_with_stock(device).map_err(|e| {
        crate::Error::invalid(format!(
            "ops = \"fast\" cannot run on {name}: {e}; set ops = \"stock\" in the cell's [backbone]"
        ))
    })?;
    let failed = failures(&comparisons);
    if !failed.is_empty() {
        return Err(crate::Error::invalid(format!(
            "ops = \"fast\" disagrees with candle's stock ops on {name} (relative error): {}; set ops = \"stock\" in the cell's [backbone]",
            failed.join("; ")
        )));
    }
    if let Ok(mut v) = VERIFIED.lock() {
        v.get_or_insert_with(HashSet::new).insert(name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_the_cpu_every_fast_op_agrees_with_the_stock_one() {
        let comparisons = compare_with_stock(&Device::Cpu).unwrap();
        assert_eq!(
            comparisons.len(),
            2 * 5 * 3 + 6 + 2 * 4 + 2 + 3 * 2 + 2 * 2 + 3 * 2 + 1 + 3
        );
        for c in &comparisons {
            assert!(c.passes(), "{c:?}");
            assert!(c.max_relative.is_finite());
        }
        verify(&Device::Cpu).unwrap();
    }

    /// What `verify` refuses: a comparison past the bound or NaN, named; the error measure sees a
    /// shift of 1e-3 and no difference in equal tensors.
    #[test]
    fn disagreement_is_measured_and_named() {
        let x = seeded(&[2, 3, 4, 4], "k", 0.0, &Device::Cpu).unwrap();
        let shifted = (&x + 1e-3).unwrap();
        let at = |max_relative: f32| Comparison {
            op: "conv".into(),
            quantity: "dw",
            max_relative,
            bound: TOLERANCE,
        };
        let measured = max_relative(&shifted, &x).unwrap();
        assert!(measured > TOLERANCE, "{measured}");
        assert_eq!(max_relative(&x, &x).unwrap(), 0.0);
        // one NaN among finite values is not lost in the maximum
        let mut with_nan: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        with_nan[17] = f32::NAN;
        let with_nan = Tensor::from_vec(with_nan, x.dims(), &Device::Cpu).unwrap();
        assert!(max_relative(&with_nan, &x).unwrap().is_nan());
        assert!(!at(max_relative(&with_nan, &x).unwrap()).passes());
        let failed = failures(&[at(measured), at(1e-5), at(f32::NAN), at(TOLERANCE)]);
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert!(failed[0].starts_with("conv dw: "), "{failed:?}");
        assert!(failed[1].contains("NaN"), "{failed:?}");
    }
}
