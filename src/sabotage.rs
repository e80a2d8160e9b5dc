//! Deliberate faults, switched on per cell, that prove the accuracy gate of `cargo xtask regress` can
//! turn red (issues #5 and #33). Each one breaks one real step of the normal code path, where that
//! step lives, rather than a copy of it: the episode slots (support labels), the stores'
//! normalisation constants, the LWFM-SPM head (its LWE reweighting), the test split (training
//! classes reused), and the pixels a model sees (colour order, the test crop, the decoder's
//! rounding; applied by `data::transforms::apply` through [`PixelFault`]). A sabotaged cell hashes
//! differently from its honest twin, so it never overwrites a real run.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sabotage {
    /// Support images are moved between the episode's classes (a seeded shuffle per episode), so
    /// the support labels no longer describe the images.
    ShuffleSupportLabels,
    /// LWFM-SPM's layer-wise embedding weights are replaced by uniform ones (no reweighting).
    NoLwe,
    /// The dataset's normalisation constants are off: mean + 0.5, std × 2 (per channel).
    WrongNormalisation,
    /// Test episodes are drawn from the training classes (the leak the protocol forbids).
    TrainClassesInTest,
    /// Every image's red and blue planes are swapped (BGR fed as RGB).
    SwapRedBlue,
    /// Another dataset's normalisation constants: ImageNet's (0.485, 0.456, 0.406) / (0.229, 0.224,
    /// 0.225), the usual slip in miniImageNet code.
    ImagenetNormalisation,
    /// The test transform's centre crop one pixel right and down of torchvision's.
    CropOffByOne,
    /// A decoder that rounds differently: every stored pixel moved by one level, up or down in a
    /// fixed pattern.
    DecoderOffByOne,
}

/// A fault in the pixels a model sees, applied where the stored image becomes a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFault {
    SwapRedBlue,
    CropOffByOne,
    DecoderOffByOne,
}

/// ImageNet's normalisation constants (torchvision's), for [`Sabotage::ImagenetNormalisation`].
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl Sabotage {
    pub const ALL: [Sabotage; 8] = [
        Sabotage::ShuffleSupportLabels,
        Sabotage::NoLwe,
        Sabotage::WrongNormalisation,
        Sabotage::TrainClassesInTest,
        Sabotage::SwapRedBlue,
        Sabotage::ImagenetNormalisation,
        Sabotage::CropOffByOne,
        Sabotage::DecoderOffByOne,
    ];

    /// The faults only a colour (RGB) evaluation gate can see: the Omniglot gate's single grey
    /// channel and same-size test transform are blind to them (swapped planes, three-channel
    /// constants, a crop of the full image), or nearly so (one level of rounding).
    pub const PIXELS: [Sabotage; 4] = [
        Sabotage::SwapRedBlue,
        Sabotage::ImagenetNormalisation,
        Sabotage::CropOffByOne,
        Sabotage::DecoderOffByOne,
    ];

    /// The fault to apply to pixels, if this sabotage is one.
    pub fn pixel_fault(self) -> Option<PixelFault> {
        match self {
            Sabotage::SwapRedBlue => Some(PixelFault::SwapRedBlue),
            Sabotage::CropOffByOne => Some(PixelFault::CropOffByOne),
            Sabotage::DecoderOffByOne => Some(PixelFault::DecoderOffByOne),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Sabotage::ShuffleSupportLabels => "shuffle-support-labels",
            Sabotage::NoLwe => "no-lwe",
            Sabotage::WrongNormalisation => "wrong-normalisation",
            Sabotage::TrainClassesInTest => "train-classes-in-test",
            Sabotage::SwapRedBlue => "swap-red-blue",
            Sabotage::ImagenetNormalisation => "imagenet-normalisation",
            Sabotage::CropOffByOne => "crop-off-by-one",
            Sabotage::DecoderOffByOne => "decoder-off-by-one",
        }
    }

    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|s| s.name()).collect();
                format!("unknown sabotage {name:?}; one of {}", names.join(", "))
            })
    }
}

/// With [`PixelFault::DecoderOffByOne`]: `pixels` moved by one level, up where the byte's index is
/// even and down where it is odd (saturating, so a 0 or 255 may stay).
pub fn decoder_off_by_one(pixels: &[u8]) -> Vec<u8> {
    pixels
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            if i % 2 == 0 {
                p.saturating_add(1)
            } else {
                p.saturating_sub(1)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for s in Sabotage::ALL {
            assert_eq!(Sabotage::parse(s.name()).unwrap(), s);
        }
        let err = Sabotage::parse("nope").unwrap_err();
        assert!(err.contains("no-lwe") && err.contains("train-classes-in-test"));
    }
}
