//! One image as a converter hands it over (encoded file bytes or raw pixels, with its class and file
//! name), and its decoding to the store's channels and resolutions.
//!
//! JPEGs are decoded as Pillow decodes them (`jpeg_pillow`, libjpeg-turbo), PNGs by the `image`
//! crate (lossless, so any correct decoder gives the same pixels); channels are converted as
//! Pillow's `convert("RGB" | "L")`. Resizing stretches the whole image (or its crop box) to
//! size×size with Pillow's BILINEAR, bit for bit (`pillow_resize`), which is what the field's
//! PIL-based loaders (`Resize([84, 84])`) do.

use std::sync::Arc;

use super::jpeg_pillow::{self, is_jpeg, pillow_convert};
use super::pillow_resize::{crop_box, resize, PillowFilter};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub enum Payload {
    /// A JPEG or PNG file's bytes.
    Encoded(Arc<[u8]>),
    /// Pixels in HWC order, `height * width * channels` bytes starting at `offset` of `data`.
    Raw {
        width: u32,
        height: u32,
        channels: u8,
        data: Arc<[u8]>,
        offset: usize,
    },
}

/// A crop box in pixel coordinates of the original image (CUB's `bounding_boxes.txt`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropBox {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

#[derive(Debug, Clone)]
pub struct RawImage {
    /// The name the manifest's split lists use for this class (CUB: the 3-digit id).
    pub split_key: String,
    /// The class name recorded in the store.
    pub class: String,
    /// The file name recorded in the store and in episodes.
    pub file: String,
    /// Archive and member, for error messages.
    pub origin: String,
    pub payload: Payload,
    pub crop: Option<CropBox>,
}

impl RawImage {
    /// Decodes, crops and resizes to each of `sizes`; returns HWC u8 pixels per size.
    pub fn decode(&self, channels: u8, sizes: &[u32]) -> Result<Vec<Vec<u8>>> {
        let bad = |message: String| Error::Image {
            path: self.origin.clone(),
            message,
        };
        let c = channels as usize;
        let (mut pixels, mut width, mut height) = match &self.payload {
            Payload::Encoded(bytes) if is_jpeg(bytes) => {
                let d = jpeg_pillow::decode(bytes, c).map_err(bad)?;
                (d.pixels, d.width, d.height)
            }
            Payload::Encoded(bytes) => {
                let image = image::load_from_memory(bytes).map_err(|e| bad(e.to_string()))?;
                let (w, h) = (image.width() as usize, image.height() as usize);
                let pixels = match (c, image.color().has_color()) {
                    (1, false) => image.into_luma8().into_raw(),
                    (1, true) => pillow_convert(&image.into_rgb8().into_raw(), 3, 1),
                    _ => image.into_rgb8().into_raw(),
                };
                (pixels, w, h)
            }
            Payload::Raw {
                width,
                height,
                channels: from,
                data,
                offset,
            } => {
                if !matches!(from, 1 | 3) {
                    return Err(bad(format!("{from} channels are not supported")));
                }
                let len = (*width as usize) * (*height as usize) * (*from as usize);
                let pixels = data
                    .get(*offset..offset + len)
                    .ok_or_else(|| bad("raw pixel range out of bounds".into()))?;
                let pixels = pillow_convert(pixels, *from as usize, c);
                (pixels, *width as usize, *height as usize)
            }
        };
        if let Some(b) = self.crop {
            let (w, h) = (width as f32, height as f32);
            let x0 = b.x.round().clamp(0.0, w - 1.0) as usize;
            let y0 = b.y.round().clamp(0.0, h - 1.0) as usize;
            let x1 = (b.x + b.width).round().clamp(x0 as f32 + 1.0, w) as usize;
            let y1 = (b.y + b.height).round().clamp(y0 as f32 + 1.0, h) as usize;
            pixels = crop_box(&pixels, width, c, (x0, y0, x1 - x0, y1 - y0));
            (width, height) = (x1 - x0, y1 - y0);
        }
        Ok(sizes
            .iter()
            .map(|&s| {
                let s = s as usize;
                if (width, height) == (s, s) {
                    pixels.clone()
                } else {
                    resize(&pixels, (width, height), c, (s, s), PREPARE_FILTER)
                }
            })
            .collect())
    }
}

/// The filter of every prepare-time resize: torchvision's default (`Resize` on PIL images).
pub const PREPARE_FILTER: PillowFilter = PillowFilter::Bilinear;

#[cfg(test)]
mod tests {
    use super::*;
    use image::RgbImage;

    fn png(width: u32, height: u32, fill: [u8; 3]) -> Arc<[u8]> {
        let img = RgbImage::from_pixel(width, height, image::Rgb(fill));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        Arc::from(out.into_inner())
    }

    fn raw(payload: Payload, crop: Option<CropBox>) -> RawImage {
        RawImage {
            split_key: "c".into(),
            class: "c".into(),
            file: "f.png".into(),
            origin: "test.tar:f.png".into(),
            payload,
            crop,
        }
    }

    #[test]
    fn decodes_resizes_and_converts_channels() {
        // a flat colour stays that colour under any resize; grey = Pillow's rgb2l of (200, 100, 0)
        let img = raw(Payload::Encoded(png(10, 6, [200, 100, 0])), None);
        let out = img.decode(3, &[4, 2]).unwrap();
        assert_eq!(out[0].len(), 4 * 4 * 3);
        assert_eq!(&out[1][..3], &[200, 100, 0]);
        let grey = img.decode(1, &[3]).unwrap();
        assert_eq!(grey[0].len(), 9);
        assert_eq!(
            grey[0][0],
            ((200 * 19595 + 100 * 38470 + 0x8000) >> 16) as u8
        );
    }

    #[test]
    fn raw_pixels_at_the_store_size_are_copied_unchanged() {
        let data: Arc<[u8]> = Arc::from((0..2 * 2 * 3 * 2).map(|v| v as u8).collect::<Vec<_>>());
        let second = raw(
            Payload::Raw {
                width: 2,
                height: 2,
                channels: 3,
                data,
                offset: 12,
            },
            None,
        );
        assert_eq!(
            second.decode(3, &[2]).unwrap()[0],
            (12..24).collect::<Vec<u8>>()
        );
    }

    #[test]
    fn crops_to_the_box_before_resizing() {
        // left half black, right half white: cropping the right half gives all white
        let mut img = RgbImage::from_pixel(8, 4, image::Rgb([0, 0, 0]));
        for x in 4..8 {
            for y in 0..4 {
                img.put_pixel(x, y, image::Rgb([255, 255, 255]));
            }
        }
        let data: Arc<[u8]> = Arc::from(img.into_raw());
        let payload = Payload::Raw {
            width: 8,
            height: 4,
            channels: 3,
            data,
            offset: 0,
        };
        let cropped = raw(
            payload,
            Some(CropBox {
                x: 4.0,
                y: 0.0,
                width: 4.0,
                height: 4.0,
            }),
        );
        assert!(cropped.decode(3, &[2]).unwrap()[0]
            .iter()
            .all(|&v| v == 255));
    }

    #[test]
    fn a_corrupt_file_names_its_origin() {
        let img = raw(
            Payload::Encoded(Arc::from(&b"\xff\xd8\xff\xe0 not really a jpeg"[..])),
            None,
        );
        let err = img.decode(3, &[4]).unwrap_err().to_string();
        assert!(
            err.starts_with("test.tar:f.png: corrupt or unreadable image"),
            "{err}"
        );
    }
}
