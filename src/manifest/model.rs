//! Models as data: the backbone and head configurations every cell config carries, in plain serde
//! (no candle), so `xtask` can resolve and hash cells without linking the learning core.

use serde::{Deserialize, Serialize};

/// Which implementation the layers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpsPath {
    /// candle's own CPU/CUDA kernels.
    #[default]
    Stock,
    /// The fast path's custom ops (`kernels::conv_ops`, `batch_norm_ops`, `leaky_relu_ops`):
    /// convolutions as im2col + gemm on the CPU, forward and both gradients; training-mode batch norm
    /// fused into one op, evaluation batch norm, max pooling and (leaky) ReLU one op each. On CUDA:
    /// cuDNN and NVRTC kernels, checked against the stock ops on the device before a model uses them.
    Fast,
}

/// The arithmetic of the fast path's convolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConvMath {
    /// f32 products and sums (cuDNN's FMA math: no tensor cores).
    #[default]
    F32,
    /// TF32 products (each operand rounded to 10 mantissa bits), f32 sums: the tensor cores' format
    /// on Ampere and later GPUs, and eager PyTorch's default for convolutions. On the CPU the same
    /// operand rounding is applied to the im2col products, so a CPU run shows its accuracy effect.
    Tf32,
}

/// Which cuDNN convolution algorithms the fast path may run on a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConvAlgorithms {
    /// Only those cuDNN reports deterministic (no atomics in the backward passes), so a GPU run
    /// repeats bit for bit on the same card and library.
    #[default]
    Deterministic,
    /// Whatever cuDNN's heuristics rank first, deterministic or not (faster for some shapes).
    Fastest,
}

impl ConvAlgorithms {
    pub fn is_deterministic(&self) -> bool {
        *self == ConvAlgorithms::Deterministic
    }
}

impl ConvMath {
    pub fn is_f32(&self) -> bool {
        *self == ConvMath::F32
    }

    /// The name a cell config spells it with.
    pub fn name(&self) -> &'static str {
        match self {
            ConvMath::F32 => "f32",
            ConvMath::Tf32 => "tf32",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackboneKind {
    Conv4,
    Resnet12,
    Resnet18,
}

impl BackboneKind {
    /// The name papers print: Conv-4, ResNet-12, ResNet-18.
    pub fn display_name(&self) -> &'static str {
        match self {
            BackboneKind::Conv4 => "Conv-4",
            BackboneKind::Resnet12 => "ResNet-12",
            BackboneKind::Resnet18 => "ResNet-18",
        }
    }
}

/// A backbone as data (serialised into every cell config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneConfig {
    pub kind: BackboneKind,
    /// Block outputs to return. Conv-4 and ResNet-12: blocks 1–4. ResNet-18: 0 = stem, 1–2 = layer1,
    /// 3–4 = layer2, 5–6 = layer3, 7–8 = layer4 (the authors' "hyperpixel" ids).
    pub taps: Vec<usize>,
    /// Each tap is adaptive-average-pooled to `pool`×`pool`, or to the smallest tap's size if that is
    /// smaller (Conv-4 on small images).
    pub pool: usize,
    pub in_channels: usize,
    #[serde(default)]
    pub ops: OpsPath,
    /// The fast path's convolution arithmetic; absent = f32 (so existing cells keep their hashes).
    #[serde(default, skip_serializing_if = "ConvMath::is_f32")]
    pub conv_math: ConvMath,
    /// The fast path's cuDNN algorithms on a GPU; absent = deterministic (hashes unchanged). No
    /// effect on the CPU, whose convolutions are deterministic.
    #[serde(default, skip_serializing_if = "ConvAlgorithms::is_deterministic")]
    pub conv_algorithms: ConvAlgorithms,
}

impl BackboneConfig {
    /// The defaults: ResNet-18 layer4's two blocks at 3×3 (the authors'); ResNet-12 blocks 3 and 4 at
    /// 5×5; Conv-4 blocks 3 and 4 at 3×3 (or smaller).
    pub fn default_for(kind: BackboneKind, in_channels: usize) -> Self {
        let (taps, pool) = match kind {
            BackboneKind::Conv4 => (vec![3, 4], 3),
            BackboneKind::Resnet12 => (vec![3, 4], 5),
            BackboneKind::Resnet18 => (vec![7, 8], 3),
        };
        Self {
            kind,
            taps,
            pool,
            in_channels,
            ops: OpsPath::Stock,
            conv_math: ConvMath::F32,
            conv_algorithms: ConvAlgorithms::Deterministic,
        }
    }

    /// Channels of each block output, indexed by block id.
    pub fn block_channels(&self) -> Vec<usize> {
        match self.kind {
            BackboneKind::Conv4 => vec![self.in_channels, 64, 64, 64, 64],
            BackboneKind::Resnet12 => vec![self.in_channels, 64, 160, 320, 640],
            BackboneKind::Resnet18 => vec![64, 64, 64, 128, 128, 256, 256, 512, 512],
        }
    }

    /// Channels of each tap, in tap order.
    pub fn tap_channels(&self) -> Vec<usize> {
        let all = self.block_channels();
        self.taps.iter().map(|&t| all[t]).collect()
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        let blocks = self.block_channels().len();
        let first = if self.kind == BackboneKind::Resnet18 {
            0
        } else {
            1
        };
        if self.taps.is_empty() || self.taps.iter().any(|&t| t < first || t >= blocks) {
            return Err(format!(
                "taps {:?} must be block ids in {first}..{}",
                self.taps,
                blocks - 1
            ));
        }
        if self.pool == 0 {
            return Err("pool must be at least 1".into());
        }
        if !self.conv_math.is_f32() && self.ops != OpsPath::Fast {
            return Err(format!(
                "conv_math = \"{}\" is a setting of the fast path's convolutions: add ops = \"fast\" to the [backbone] table, or drop conv_math",
                self.conv_math.name()
            ));
        }
        if !self.conv_algorithms.is_deterministic() && self.ops != OpsPath::Fast {
            return Err(
                "conv_algorithms = \"fastest\" is a setting of the fast path's convolutions: add ops = \"fast\" to the [backbone] table, or drop conv_algorithms".into(),
            );
        }
        Ok(())
    }
}

/// A head as data (serialised into every cell config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum HeadConfig {
    /// logit = −‖q − prototype‖² / temperature (prototype = mean of the shots' features). The
    /// features are the pooled maps' spatial mean (C dims), or with `flatten` the whole pooled maps
    /// (C·pool² dims: Snell et al.'s 1,600-dimensional Conv-4 embedding at pool 5).
    Protonet {
        temperature: f64,
        #[serde(default, skip_serializing_if = "is_false")]
        flatten: bool,
    },
    /// logit = cos(q, prototype) / temperature, on the spatial mean or (`flatten`) the whole maps.
    Cosine {
        temperature: f64,
        #[serde(default, skip_serializing_if = "is_false")]
        flatten: bool,
    },
    /// logit = (temperature / nodes) · Σ flow · similarity, flow the exact EMD between the nodes
    /// (a constant for the gradient, as with the authors' OpenCV solver), or, when `sinkhorn` is
    /// given, the entropic plan that gradients flow through; K-shot against the mean prototype map,
    /// or against DeepEMD's structured fully connected layer (SFC) fine-tuned on the support set
    /// when `sfc` is given.
    Deepemd {
        temperature: f64,
        sfc: Option<SfcConfig>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sinkhorn: Option<SinkhornConfig>,
    },
    /// METHOD.md §3–4: γ = `temperature_attn`, τ = `temperature`, λ_m = `matcher_prob`.
    LwfmSpm {
        temperature_attn: f64,
        temperature: f64,
        matcher_prob: f64,
    },
}

/// DeepEMD's SFC fine-tuning (`get_sfc`): prototypes start as the mean of the shots' maps and are
/// fitted to the support set by SGD (momentum 0.9, dampening 0.9, no weight decay) on mini-batches of
/// `batch` support images, `steps` passes over a seeded permutation. DeepEMD's defaults: 100 steps,
/// batch 4, lr 0.1 (`train_meta.py`; `eval.py` uses 100).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SfcConfig {
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub seed: u64,
}

/// The DeepEMD-style head's differentiable transport (`heads/sinkhorn_plan.rs`): `iterations`
/// log-domain Sinkhorn updates with entropic regularisation `epsilon`, in the units of the head's
/// cost 1 − cos ∈ [0, 2]. The plan's cost exceeds the exact EMD's by at most
/// epsilon · nodes · ln(nodes²) once converged (not before: with few iterations the row sums are
/// still off); smaller epsilon is closer to the exact flow but needs more iterations (tested in f64
/// on problems up to 7 × 7 with weights ≥ 0.2: 3,000 iterations meet the weights to 1e-6 for
/// epsilon ≥ 0.05; the head's 25 × 25 f32 problems were not measured for convergence). Gradients
/// flow through the last 100 iterations (`heads::sinkhorn_plan::GRADIENT_ITERATIONS`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkhornConfig {
    pub epsilon: f64,
    pub iterations: usize,
}

/// The smallest LWE temperature γ (`temperature_attn`) at which no position weight of LWFM-SPM's
/// head can underflow to 0 in f32 on `positions` positions. The weights are softmaxes of unbiased
/// z-scores divided by γ; P z-scores span at most √(2(P − 1)) (two values ±c, the rest at the mean,
/// is the widest spread of a fixed variance), so the smallest softmax value is at least
/// exp(−√(2(P − 1))/γ)/P, and this γ keeps that above e^−80 (f32's smallest normal number is
/// about e^−87.3). 0.0514 for 3×3 maps, 0.0902 for 5×5, 0.4014 for 21×21; every published γ is 2 or 5.
/// Under it the authors' SPM cost would become 0/0 on a zero-weighted position.
pub fn min_attention_temperature(positions: usize) -> f64 {
    let p = positions as f64;
    (2.0 * (p - 1.0)).sqrt() / (80.0 - p.ln())
}

/// Absent from the canonical JSON when false, so cells without the option keep their hashes.
fn is_false(b: &bool) -> bool {
    !*b
}

/// A logit temperature must be a positive, finite number.
fn positive_temperature(name: &str, value: f64) -> std::result::Result<(), String> {
    if value > 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(format!(
            "head.{name} = {value} must be a positive, finite number (it scales the logits)"
        ))
    }
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
            "protonet" => HeadConfig::Protonet {
                temperature: 1.0,
                flatten: false,
            },
            "cosine" => HeadConfig::Cosine {
                temperature: 0.2,
                flatten: false,
            },
            "deepemd" => HeadConfig::Deepemd {
                temperature: 12.5,
                sfc: None,
                sinkhorn: None,
            },
            "lwfm-spm" => HeadConfig::LwfmSpm {
                temperature_attn: 5.0,
                temperature: 0.2,
                matcher_prob: 0.25,
            },
            _ => return None,
        })
    }

    /// The head's numbers against what its formulas can take, on feature maps of at most `pool`²
    /// positions (the backbone's `pool`). Each error names the setting and the fix.
    pub fn validate(&self, pool: usize) -> std::result::Result<(), String> {
        let positions = pool.saturating_mul(pool);
        match self {
            HeadConfig::Protonet { temperature, .. } | HeadConfig::Cosine { temperature, .. } => {
                positive_temperature("temperature", *temperature)
            }
            HeadConfig::Deepemd {
                temperature,
                sfc,
                sinkhorn,
            } => {
                positive_temperature("temperature", *temperature)?;
                if let Some(s) = sfc {
                    if s.batch == 0 || !(s.lr >= 0.0 && s.lr.is_finite()) {
                        return Err(format!(
                            "head.sfc needs batch >= 1 and a finite lr >= 0 (got batch = {}, lr = {})",
                            s.batch, s.lr
                        ));
                    }
                }
                if let Some(s) = sinkhorn {
                    if !(s.epsilon > 0.0 && s.epsilon.is_finite()) || s.iterations == 0 {
                        return Err(format!(
                            "head.sinkhorn needs epsilon > 0 and iterations >= 1 (got epsilon = {}, iterations = {})",
                            s.epsilon, s.iterations
                        ));
                    }
                }
                Ok(())
            }
            HeadConfig::LwfmSpm {
                temperature_attn,
                temperature,
                matcher_prob,
            } => {
                positive_temperature("temperature", *temperature)?;
                if positions < 2 {
                    return Err(format!(
                        "the lwfm-spm head needs feature maps of at least 2 positions (LWE z-scores each position against the others), but backbone.pool = {pool} gives {positions}: set pool >= 2"
                    ));
                }
                if !(*temperature_attn > 0.0 && temperature_attn.is_finite()) {
                    return Err(format!(
                        "head.temperature_attn = {temperature_attn} must be a positive, finite number (it divides LWE's z-scores; the published values are 2 and 5)"
                    ));
                }
                let least = min_attention_temperature(positions);
                if *temperature_attn < least {
                    // rounded up, so the value shown is itself accepted
                    let shown = (least * 1000.0).ceil() / 1000.0;
                    return Err(format!(
                        "head.temperature_attn = {temperature_attn} is too small for {positions} positions: LWE's softmax could underflow to 0 in f32 (the authors' SPM cost is then 0/0); use at least {shown} (the published values are 2 and 5)"
                    ));
                }
                if !(*matcher_prob >= 0.0 && matcher_prob.is_finite()) {
                    return Err(format!(
                        "head.matcher_prob = {matcher_prob} must be a finite number >= 0 (0 turns SPM off)"
                    ));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backbone(text: &str) -> Result<BackboneConfig, String> {
        let config: BackboneConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn conv_math_is_a_fast_path_setting_and_absent_when_f32() {
        let base = "kind = \"conv4\"\ntaps = [3, 4]\npool = 3\nin_channels = 3\n";
        let plain = backbone(base).unwrap();
        assert_eq!(plain.conv_math, ConvMath::F32);
        // f32 is not written, so cells that never named it keep their serialisation (and hash)
        assert!(!toml::to_string(&plain).unwrap().contains("conv_math"));
        let tf32 = backbone(&format!("{base}ops = \"fast\"\nconv_math = \"tf32\"\n")).unwrap();
        assert_eq!(tf32.conv_math, ConvMath::Tf32);
        assert!(toml::to_string(&tf32)
            .unwrap()
            .contains("conv_math = \"tf32\""));
        let e = backbone(&format!("{base}conv_math = \"tf32\"\n")).unwrap_err();
        assert!(e.contains("ops = \"fast\""), "{e}");
        let e = backbone(&format!("{base}ops = \"fast\"\nconv_math = \"bf17\"\n")).unwrap_err();
        assert!(e.contains("bf17"), "{e}");
    }

    #[test]
    fn conv_algorithms_default_to_deterministic_and_are_absent_then() {
        let base = "kind = \"conv4\"\ntaps = [3, 4]\npool = 3\nin_channels = 3\n";
        let plain = backbone(base).unwrap();
        assert_eq!(plain.conv_algorithms, ConvAlgorithms::Deterministic);
        assert!(!toml::to_string(&plain).unwrap().contains("conv_algorithms"));
        let fastest = backbone(&format!(
            "{base}ops = \"fast\"\nconv_algorithms = \"fastest\"\n"
        ))
        .unwrap();
        assert_eq!(fastest.conv_algorithms, ConvAlgorithms::Fastest);
        assert!(toml::to_string(&fastest)
            .unwrap()
            .contains("conv_algorithms = \"fastest\""));
        let e = backbone(&format!("{base}conv_algorithms = \"fastest\"\n")).unwrap_err();
        assert!(e.contains("ops = \"fast\""), "{e}");
    }

    #[test]
    fn head_numbers_are_checked_against_what_the_formulas_take() {
        let lwfm = |gamma: f64, prob: f64| HeadConfig::LwfmSpm {
            temperature_attn: gamma,
            temperature: 0.2,
            matcher_prob: prob,
        };
        // the bound grows with the positions: 3x3, 5x5, 21x21
        let (p9, p25, p441) = (
            min_attention_temperature(9),
            min_attention_temperature(25),
            min_attention_temperature(441),
        );
        assert!((p9 - 4.0 / (80.0 - 9f64.ln())).abs() < 1e-12, "{p9}");
        assert!(p9 < p25 && p25 < p441 && p441 < 0.5, "{p9} {p25} {p441}");
        for published in [2.0, 5.0] {
            lwfm(published, 0.25).validate(21).unwrap();
        }
        lwfm(p9, 0.0).validate(3).unwrap();
        // the value the message suggests is accepted
        let e = lwfm(p9 * 0.99, 0.25).validate(3).unwrap_err();
        assert!(
            e.contains("temperature_attn") && e.contains("at least 0.052 "),
            "{e}"
        );
        lwfm(0.052, 0.25).validate(3).unwrap();
        let e = lwfm(0.4, 0.25).validate(21).unwrap_err();
        assert!(e.contains("at least 0.402 "), "{e}");
        lwfm(0.402, 0.25).validate(21).unwrap();
        for bad in [f64::NAN, f64::INFINITY, 0.0, -5.0] {
            let e = lwfm(bad, 0.25).validate(3).unwrap_err();
            assert!(e.contains("positive, finite"), "{e}");
        }
        let e = lwfm(5.0, -0.25).validate(3).unwrap_err();
        assert!(e.contains("matcher_prob"), "{e}");
        let e = lwfm(5.0, 0.25).validate(1).unwrap_err();
        assert!(
            e.contains("backbone.pool = 1 gives 1") && e.contains("pool >= 2"),
            "{e}"
        );
        // an absurd pool saturates instead of wrapping round to a small number
        assert!(lwfm(5.0, 0.25).validate(usize::MAX).is_err());
        let mut bad_tau = lwfm(5.0, 0.25);
        if let HeadConfig::LwfmSpm { temperature, .. } = &mut bad_tau {
            *temperature = 0.0;
        }
        assert!(bad_tau
            .validate(3)
            .unwrap_err()
            .contains("head.temperature = 0"));
        // the other heads: any pool, a positive finite temperature
        assert!(HeadConfig::Protonet {
            temperature: 64.0,
            flatten: false
        }
        .validate(1)
        .is_ok());
        assert!(HeadConfig::Protonet {
            temperature: -1.0,
            flatten: false
        }
        .validate(1)
        .is_err());
        assert!(HeadConfig::Cosine {
            temperature: f64::INFINITY,
            flatten: false
        }
        .validate(1)
        .is_err());
        let emd = |sfc, sinkhorn| HeadConfig::Deepemd {
            temperature: 12.5,
            sfc,
            sinkhorn,
        };
        assert!(emd(None, None).validate(5).is_ok());
        let sfc = |batch, lr| SfcConfig {
            steps: 100,
            batch,
            lr,
            seed: 1,
        };
        assert!(emd(Some(sfc(4, 0.1)), None).validate(5).is_ok());
        assert!(emd(Some(sfc(0, 0.1)), None)
            .validate(5)
            .unwrap_err()
            .contains("head.sfc"));
        let sinkhorn = SinkhornConfig {
            epsilon: 0.0,
            iterations: 10,
        };
        assert!(emd(None, Some(sinkhorn))
            .validate(5)
            .unwrap_err()
            .contains("head.sinkhorn"));
    }
}
