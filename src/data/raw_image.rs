//! One image as a converter hands it over (encoded file bytes or raw pixels, with its class and file
//! name), and its decoding to the store's channels and resolutions.
//!
//! Resizing stretches the whole image (or its crop box) to size×size with a triangle (bilinear)
//! filter whose support widens when shrinking, which is how PIL's `resize(BILINEAR)` antialiases; the
//! field's 84×84 copies were made with PIL, so this is the closest match available without Python.

use std::sync::Arc;

use image::{imageops::FilterType, DynamicImage, GrayImage, RgbImage};

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
        let mut image = match &self.payload {
            Payload::Encoded(bytes) => {
                image::load_from_memory(bytes).map_err(|e| bad(e.to_string()))?
            }
            Payload::Raw {
                width,
                height,
                channels: c,
                data,
                offset,
            } => {
                let len = (*width as usize) * (*height as usize) * (*c as usize);
                let pixels = data
                    .get(*offset..offset + len)
                    .ok_or_else(|| bad("raw pixel range out of bounds".into()))?;
                if *c == channels
                    && self.crop.is_none()
                    && sizes.iter().all(|s| s == width && s == height)
                {
                    return Ok(sizes.iter().map(|_| pixels.to_vec()).collect());
                }
                match c {
                    3 => DynamicImage::ImageRgb8(
                        RgbImage::from_raw(*width, *height, pixels.to_vec())
                            .ok_or_else(|| bad("bad raw size".into()))?,
                    ),
                    1 => DynamicImage::ImageLuma8(
                        GrayImage::from_raw(*width, *height, pixels.to_vec())
                            .ok_or_else(|| bad("bad raw size".into()))?,
                    ),
                    _ => return Err(bad(format!("{c} channels are not supported"))),
                }
            }
        };
        if let Some(b) = self.crop {
            let (w, h) = (image.width() as f32, image.height() as f32);
            let x0 = b.x.round().clamp(0.0, w - 1.0);
            let y0 = b.y.round().clamp(0.0, h - 1.0);
            let x1 = (b.x + b.width).round().clamp(x0 + 1.0, w);
            let y1 = (b.y + b.height).round().clamp(y0 + 1.0, h);
            image = image.crop_imm(x0 as u32, y0 as u32, (x1 - x0) as u32, (y1 - y0) as u32);
        }
        Ok(sizes
            .iter()
            .map(|&s| {
                let resized = if image.width() == s && image.height() == s {
                    image.clone()
                } else {
                    image.resize_exact(s, s, FilterType::Triangle)
                };
                match channels {
                    1 => resized.into_luma8().into_raw(),
                    _ => resized.into_rgb8().into_raw(),
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // a flat colour stays that colour under any resize; grey = ITU-R 601 luma of (200, 100, 0)
        let img = raw(Payload::Encoded(png(10, 6, [200, 100, 0])), None);
        let out = img.decode(3, &[4, 2]).unwrap();
        assert_eq!(out[0].len(), 4 * 4 * 3);
        assert_eq!(&out[1][..3], &[200, 100, 0]);
        let grey = img.decode(1, &[3]).unwrap();
        assert_eq!(grey[0].len(), 9);
        assert_eq!(
            grey[0][0],
            ((200.0 * 0.2126 + 100.0 * 0.7152) as f32).round() as u8
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
