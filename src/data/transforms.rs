//! The protocol's image transforms (METHOD.md §6), from a stored u8 image to a normalised f32 CHW
//! tensor: test = `Resize([92, 92])` then `CenterCrop(84)`; train = torchvision's
//! `RandomResizedCrop(84)` (scale (0.08, 1), ratio (3/4, 4/3), ten tries then a centre fallback) and
//! `RandomHorizontalFlip`, drawn from a seeded counter-based stream (the box and the flip are drawn
//! here; given them, the pixels are torchvision's); pad-crop = `RandomCrop(84, padding=8)` (zero
//! fill) and `RandomHorizontalFlip`, the crop and flip of MetaOptNet's and RFS's train transform
//! (Lee et al. 2019, Tian et al. 2020) without their `ColorJitter`. Resizing is Pillow's BILINEAR, bit for bit
//! (`pillow_resize`), as torchvision resizes PIL images; tested against Pillow's output in
//! `tests/integration/pixels.rs`.

pub use crate::manifest::cell::PIXELS_VERSION;

use super::philox::CounterRng;
use super::pillow_resize::{crop_box, resize, PillowFilter};
use crate::sabotage::{decoder_off_by_one, PixelFault};

/// How one image is turned into a tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transform {
    /// Resize to `resize`×`resize`, then centre-crop `crop`×`crop`.
    Test { resize: u32, crop: u32 },
    /// Random resized crop to `size`×`size` and a random horizontal flip.
    Train { size: u32 },
    /// Zero-pad by `padding` on every side, take a random `size`×`size` crop, flip at random.
    PadCrop { size: u32, padding: u32 },
}

impl Transform {
    /// The protocol's test transform for 84×84 inputs.
    pub const PROTOCOL_TEST: Transform = Transform::Test {
        resize: 92,
        crop: 84,
    };
    pub const PROTOCOL_TRAIN: Transform = Transform::Train { size: 84 };

    /// Whether the transform draws from its random stream (so one image comes out differently in
    /// different episodes).
    pub fn draws_randomness(&self) -> bool {
        matches!(self, Transform::Train { .. } | Transform::PadCrop { .. })
    }

    /// Side length of the output.
    pub fn output_size(&self) -> u32 {
        match *self {
            Transform::Test { crop, .. } => crop,
            Transform::Train { size } | Transform::PadCrop { size, .. } => size,
        }
    }
}

/// One image as a store holds it: HWC u8, `side`×`side`×`channels`.
#[derive(Debug, Clone, Copy)]
pub struct StoredImage<'a> {
    pub pixels: &'a [u8],
    pub side: u32,
    pub channels: u8,
    /// A sabotage's fault, applied on the way to the tensor (see `crate::sabotage`).
    pub fault: Option<PixelFault>,
}

/// Applies `transform` to one stored image and writes the normalised CHW result into `out`
/// (`channels * size * size` floats). `rng` is used only by the train transform. The u8 pixels
/// before normalisation are [`transform_pixels`]'s; normalisation is torchvision's `ToTensor` then
/// `Normalize` in f32: `(p / 255 − mean) / std`.
pub fn apply(
    transform: Transform,
    stored: StoredImage,
    mean: &[f32],
    std: &[f32],
    rng: &mut CounterRng,
    out: &mut [f32],
) {
    let raw = transform_pixels(transform, stored, rng);
    let c = stored.channels as usize;
    let n = raw.len() / c;
    assert_eq!(out.len(), n * c, "output buffer size");
    let swap = stored.fault == Some(PixelFault::SwapRedBlue) && c == 3;
    for p in 0..n {
        for k in 0..c {
            let from = if swap { 2 - k } else { k };
            out[k * n + p] = (raw[p * c + from] as f32 / 255.0 - mean[k]) / std[k];
        }
    }
}

/// The transform's HWC u8 output, as torchvision's transforms on a PIL image give it (Pillow's
/// resize, see `pillow_resize`).
pub fn transform_pixels(
    transform: Transform,
    stored: StoredImage,
    rng: &mut CounterRng,
) -> Vec<u8> {
    let StoredImage {
        pixels,
        side,
        channels,
        fault,
    } = stored;
    let faulty;
    let pixels = match fault {
        Some(PixelFault::DecoderOffByOne) => {
            faulty = decoder_off_by_one(pixels);
            &faulty[..]
        }
        _ => pixels,
    };
    let (side, c) = (side as usize, channels as usize);
    match transform {
        Transform::Test { resize, crop } => {
            // torchvision's CenterCrop: top = left = round((H - crop) / 2)
            let (resize, crop) = (resize as usize, crop as usize);
            let mut offset = ((resize as f32 - crop as f32) / 2.0).round() as usize;
            if fault == Some(PixelFault::CropOffByOne) {
                offset = if offset + crop < resize {
                    offset + 1
                } else {
                    offset.saturating_sub(1)
                };
            }
            let resized = resize_image(
                pixels,
                (side, side),
                c,
                (resize, resize),
                PillowFilter::Bilinear,
            );
            crop_box(&resized, resize, c, (offset, offset, crop, crop))
        }
        Transform::Train { size } => {
            let (x, y, w, h) = random_resized_crop_box(side as u32, side as u32, rng);
            let flip = rng.unit_f32() < 0.5;
            resized_crop(
                pixels,
                side,
                c,
                (x as usize, y as usize, w as usize, h as usize),
                size as usize,
                flip,
            )
        }
        Transform::PadCrop { size, padding } => {
            // torchvision's RandomCrop.get_params on the padded image: top, then left
            let padded = side as u32 + 2 * padding;
            let top = rng.below(padded - size + 1) as usize;
            let left = rng.below(padded - size + 1) as usize;
            let flip = rng.unit_f32() < 0.5;
            pad_crop(
                pixels,
                side,
                c,
                padding as usize,
                (left, top),
                size as usize,
                flip,
            )
        }
    }
}

/// The `size`×`size` window at (`left`, `top`) of the image zero-padded by `padding` on each side,
/// mirrored left to right when `flip`.
fn pad_crop(
    pixels: &[u8],
    side: usize,
    c: usize,
    padding: usize,
    (left, top): (usize, usize),
    size: usize,
    flip: bool,
) -> Vec<u8> {
    let mut out = vec![0u8; size * size * c];
    for y in 0..size {
        let Some(sy) = (y + top).checked_sub(padding).filter(|&v| v < side) else {
            continue;
        };
        for x in 0..size {
            let Some(sx) = (x + left).checked_sub(padding).filter(|&v| v < side) else {
                continue;
            };
            let ox = if flip { size - 1 - x } else { x };
            let (o, i) = ((y * size + ox) * c, (sy * side + sx) * c);
            out[o..o + c].copy_from_slice(&pixels[i..i + c]);
        }
    }
    out
}

/// torchvision's `resized_crop` on a PIL image, then `hflip` when `flip`: the box (x, y, w, h) of a
/// `side`×`side` image resized to `size`×`size` with Pillow's BILINEAR.
pub fn resized_crop(
    pixels: &[u8],
    side: usize,
    c: usize,
    (x, y, w, h): (usize, usize, usize, usize),
    size: usize,
    flip: bool,
) -> Vec<u8> {
    let cropped = crop_box(pixels, side, c, (x, y, w, h));
    let mut out = resize_image(&cropped, (w, h), c, (size, size), PillowFilter::Bilinear);
    if flip {
        for row in out.chunks_exact_mut(size * c) {
            for i in 0..size / 2 {
                for k in 0..c {
                    row.swap(i * c + k, (size - 1 - i) * c + k);
                }
            }
        }
    }
    out
}

/// Pillow's resize, or the image itself when the size does not change (as `Image.resize` copies).
fn resize_image(
    pixels: &[u8],
    from: (usize, usize),
    c: usize,
    to: (usize, usize),
    filter: PillowFilter,
) -> Vec<u8> {
    if from == to {
        pixels.to_vec()
    } else {
        resize(pixels, from, c, to, filter)
    }
}

/// torchvision's `RandomResizedCrop.get_params` with scale (0.08, 1) and ratio (3/4, 4/3):
/// returns (x, y, w, h).
pub fn random_resized_crop_box(
    width: u32,
    height: u32,
    rng: &mut CounterRng,
) -> (u32, u32, u32, u32) {
    let area = (width * height) as f32;
    let (log_lo, log_hi) = ((3.0f32 / 4.0).ln(), (4.0f32 / 3.0).ln());
    for _ in 0..10 {
        let target = area * (0.08 + (1.0 - 0.08) * rng.unit_f32());
        let ratio = (log_lo + (log_hi - log_lo) * rng.unit_f32()).exp();
        let w = (target * ratio).sqrt().round() as u32;
        let h = (target / ratio).sqrt().round() as u32;
        if w > 0 && h > 0 && w <= width && h <= height {
            let y = rng.below(height - h + 1);
            let x = rng.below(width - w + 1);
            return (x, y, w, h);
        }
    }
    // fallback: the whole image, cropped to the nearest allowed ratio, centred
    let in_ratio = width as f32 / height as f32;
    let (w, h) = if in_ratio < 3.0 / 4.0 {
        (width, (width as f32 / (3.0 / 4.0)).round() as u32)
    } else if in_ratio > 4.0 / 3.0 {
        ((height as f32 * (4.0 / 3.0)).round() as u32, height)
    } else {
        (width, height)
    };
    ((width - w) / 2, (height - h) / 2, w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_transform_normalises_a_flat_image_exactly() {
        let pixels = vec![128u8; 84 * 84 * 3];
        let mut out = vec![0f32; 3 * 84 * 84];
        let mut rng = CounterRng::new([0, 0], 0);
        let (mean, std) = ([0.5, 0.25, 0.0], [0.5, 0.25, 1.0]);
        apply(
            Transform::PROTOCOL_TEST,
            StoredImage {
                pixels: &pixels,
                side: 84,
                channels: 3,
                fault: None,
            },
            &mean,
            &std,
            &mut rng,
            &mut out,
        );
        let v = 128.0 / 255.0;
        assert!((out[0] - (v - 0.5) / 0.5).abs() < 1e-6);
        assert!((out[84 * 84] - (v - 0.25) / 0.25).abs() < 1e-6);
        assert!((out[2 * 84 * 84 + 5] - v).abs() < 1e-6);
    }

    /// CUB's store holds box crops at 92×92 (RENet's and DeepEMD's `Resize([92, 92])`, done once at
    /// prepare time), so the test transform's resize is the identity there, as Pillow's is for an
    /// image of the asked size, and the tensor is the centre 84×84 of the stored pixels.
    #[test]
    fn on_a_92_store_the_test_transform_is_the_centre_crop() {
        let side = 92usize;
        let pixels: Vec<u8> = (0..side * side * 3)
            .map(|i| ((i * 7919) % 251) as u8)
            .collect();
        let mut rng = CounterRng::new([0, 0], 0);
        let stored = StoredImage {
            pixels: &pixels,
            side: side as u32,
            channels: 3,
            fault: None,
        };
        let out = transform_pixels(Transform::PROTOCOL_TEST, stored, &mut rng);
        assert_eq!(out, crop_box(&pixels, side, 3, (4, 4, 84, 84)));
    }

    #[test]
    fn centre_crop_takes_the_middle() {
        // an image whose left half is 0 and right half 255, resized 84->92 and cropped 84: the centre
        // column pair straddles the edge, the first and last columns keep their side's value
        let mut pixels = vec![0u8; 84 * 84];
        for y in 0..84 {
            for x in 42..84 {
                pixels[y * 84 + x] = 255;
            }
        }
        let mut out = vec![0f32; 84 * 84];
        let mut rng = CounterRng::new([0, 0], 0);
        apply(
            Transform::PROTOCOL_TEST,
            StoredImage {
                pixels: &pixels,
                side: 84,
                channels: 1,
                fault: None,
            },
            &[0.0],
            &[1.0],
            &mut rng,
            &mut out,
        );
        assert_eq!(out[0], 0.0);
        assert_eq!(out[83], 1.0);
    }

    /// RandomCrop(4, padding=1) of a 4×4 image: the window at (0, 2) of the 6×6 zero-padded image is
    /// one zero column, then the image's first three columns from its second row down, then a zero row.
    #[test]
    fn pad_crop_takes_a_window_of_the_zero_padded_image() {
        let pixels: Vec<u8> = (1..=16).collect();
        let out = pad_crop(&pixels, 4, 1, 1, (0, 2), 4, false);
        #[rustfmt::skip]
        let want = vec![0, 5, 6, 7,  0, 9, 10, 11,  0, 13, 14, 15,  0, 0, 0, 0];
        assert_eq!(out, want);
        let flipped = pad_crop(&pixels, 4, 1, 1, (0, 2), 4, true);
        let mirror: Vec<u8> = want
            .chunks(4)
            .flat_map(|r| r.iter().rev().copied())
            .collect();
        assert_eq!(flipped, mirror);
        // every offset of RandomCrop(84, padding=8) on an 84 image stays in range and keeps size; the
        // zero count depends only on the offsets' distances from 8 (45 unordered pairs), most seen
        let img = vec![7u8; 84 * 84 * 3];
        let t = Transform::PadCrop {
            size: 84,
            padding: 8,
        };
        let key = CounterRng::key_from("pad-crop");
        let mut seen = std::collections::BTreeSet::new();
        for s in 0..300 {
            let mut rng = CounterRng::new(key, s);
            let stored = StoredImage {
                pixels: &img,
                side: 84,
                channels: 3,
                fault: None,
            };
            let out = transform_pixels(t, stored, &mut rng);
            assert_eq!(out.len(), 84 * 84 * 3);
            seen.insert(out.iter().filter(|&&v| v == 0).count());
        }
        assert!(
            seen.contains(&0) && seen.len() > 30,
            "{} distinct paddings",
            seen.len()
        );
    }

    #[test]
    fn random_resized_crops_stay_inside_and_follow_the_seed() {
        let key = CounterRng::key_from("rrc");
        let mut seen = std::collections::BTreeSet::new();
        for s in 0..500 {
            let mut rng = CounterRng::new(key, s);
            let (x, y, w, h) = random_resized_crop_box(84, 84, &mut rng);
            assert!(w >= 1 && h >= 1 && x + w <= 84 && y + h <= 84);
            let area = (w * h) as f32 / (84.0 * 84.0);
            assert!((0.06..=1.0).contains(&area), "area fraction {area}");
            let mut again = CounterRng::new(key, s);
            assert_eq!(random_resized_crop_box(84, 84, &mut again), (x, y, w, h));
            seen.insert((x, y, w, h));
        }
        assert!(seen.len() > 400);
    }
}
