//! JPEG decoding that gives the pixels Pillow gives (`Image.open(f).convert("RGB")`, as torchvision's
//! folder loaders and the field's codebases read images): libjpeg-turbo, built from the source
//! `turbojpeg-sys` vendors, with Pillow's settings, the accurate integer IDCT (`JDCT_ISLOW`) and
//! fancy chroma upsampling, and libjpeg's own YCbCr→RGB conversion. A greyscale JPEG is decoded to
//! one channel and copied into three, as Pillow's `L`→`RGB`; a CMYK or YCCK JPEG is decoded to CMYK,
//! inverted (Pillow reads every CMYK JPEG as `CMYK;I`, Adobe's convention) and converted as Pillow's
//! `cmyk2rgb`: `v = 255 − k; out = v − round(c·v / 255)`. A one-channel result from colour pixels uses
//! Pillow's `rgb2l`: `(19595 R + 38470 G + 7471 B + 0x8000) >> 16`. libjpeg warnings (e.g. extra
//! bytes after the image) are ignored, as Pillow ignores them; errors are errors.
//!
//! Equality with Pillow is tested exactly on committed fixtures (4:4:4, 4:2:2, 4:2:0, progressive,
//! greyscale, CMYK) and on every image of a miniImageNet split (`tests/integration/pixels.rs`).

use std::ffi::CStr;

use turbojpeg_sys as tj;

/// The version of libjpeg-turbo that `turbojpeg-sys` 1.2.0 vendors (checked by a test against the
/// library's own `TJ` version macro would need bindgen; the crate pins it).
pub const LIBJPEG_TURBO_VERSION: &str = "libjpeg-turbo 3.1.0";

/// A decoded JPEG: HWC u8 pixels with `channels` (1 or 3).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub pixels: Vec<u8>,
}

/// Whether `bytes` start like a JPEG file (SOI marker).
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8])
}

/// Owns a TurboJPEG decompressor.
struct Handle(tj::tjhandle);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once
        unsafe { tj::tj3Destroy(self.0) }
    }
}

impl Handle {
    fn error(&self) -> String {
        // SAFETY: tj3GetErrorStr returns a NUL-terminated string owned by the handle
        unsafe { CStr::from_ptr(tj::tj3GetErrorStr(self.0)) }
            .to_string_lossy()
            .into_owned()
    }

    fn get(&self, param: tj::TJPARAM) -> i32 {
        // SAFETY: a valid handle and parameter id
        unsafe { tj::tj3Get(self.0, param as i32) }
    }

    /// Checks a TurboJPEG return code: warnings pass (as in Pillow), except a premature end of the
    /// data (Pillow refuses truncated files); errors carry the library's text.
    fn check(&self, code: i32) -> Result<(), String> {
        if code == 0 {
            return Ok(());
        }
        let message = self.error();
        // SAFETY: a valid handle
        let warning = unsafe { tj::tj3GetErrorCode(self.0) } == tj::TJERR_TJERR_WARNING as i32;
        if warning && !message.contains("Premature end") {
            Ok(())
        } else {
            Err(message)
        }
    }
}

/// Decodes a JPEG to `channels` (1 or 3) as Pillow's `Image.open(...).convert("L" or "RGB")`.
pub fn decode(bytes: &[u8], channels: usize) -> Result<Decoded, String> {
    // SAFETY: tj3Init returns null or a handle we own
    let raw = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as i32) };
    if raw.is_null() {
        return Err("libjpeg-turbo could not allocate a decompressor".into());
    }
    let handle = Handle(raw);
    // SAFETY: the buffer outlives the call
    handle.check(unsafe { tj::tj3DecompressHeader(handle.0, bytes.as_ptr(), bytes.len() as _) })?;
    let (width, height) = (
        handle.get(tj::TJPARAM_TJPARAM_JPEGWIDTH),
        handle.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT),
    );
    if width <= 0 || height <= 0 {
        return Err(format!(
            "no image size in the JPEG header ({})",
            handle.error()
        ));
    }
    let (width, height) = (width as usize, height as usize);
    // Pillow's defaults, set explicitly: accurate DCT, fancy upsampling
    for param in [
        tj::TJPARAM_TJPARAM_FASTDCT,
        tj::TJPARAM_TJPARAM_FASTUPSAMPLE,
    ] {
        // SAFETY: a valid handle and parameter id
        handle.check(unsafe { tj::tj3Set(handle.0, param as i32, 0) })?;
    }
    let colorspace = handle.get(tj::TJPARAM_TJPARAM_COLORSPACE) as tj::TJCS;
    let (format, per_pixel) = match colorspace {
        tj::TJCS_TJCS_GRAY => (tj::TJPF_TJPF_GRAY, 1),
        tj::TJCS_TJCS_CMYK | tj::TJCS_TJCS_YCCK => (tj::TJPF_TJPF_CMYK, 4),
        _ => (tj::TJPF_TJPF_RGB, 3),
    };
    let mut out = vec![0u8; width * height * per_pixel];
    // SAFETY: `out` holds width·height·per_pixel bytes, the size of an unscaled, uncropped decode
    handle.check(unsafe {
        tj::tj3Decompress8(
            handle.0,
            bytes.as_ptr(),
            bytes.len() as _,
            out.as_mut_ptr(),
            0,
            format,
        )
    })?;
    if !matches!(channels, 1 | 3) {
        return Err(format!("{channels} channels are not supported"));
    }
    let (out, per_pixel) = match per_pixel {
        4 => (
            out.chunks_exact(4)
                .flat_map(pillow_cmyk_inverted_to_rgb)
                .collect(),
            3,
        ),
        _ => (out, per_pixel),
    };
    let pixels = pillow_convert(&out, per_pixel, channels);
    Ok(Decoded {
        width,
        height,
        channels,
        pixels,
    })
}

/// Pillow's `CMYK;I` unpacking (255 − byte) then `cmyk2rgb`.
fn pillow_cmyk_inverted_to_rgb(stored: &[u8]) -> [u8; 3] {
    let [c, m, y, k] = [0, 1, 2, 3].map(|i| 255 - stored[i] as i32);
    let nk = 255 - k;
    let muldiv255 = |a: i32, b: i32| {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    };
    [c, m, y].map(|v| (nk - muldiv255(v, nk)).clamp(0, 255) as u8)
}

/// HWC pixels with `from` channels as `to` channels (1 or 3), as Pillow's `convert`: grey copied
/// into three, colour to grey by [`pillow_rgb_to_l`], the same count copied.
pub fn pillow_convert(pixels: &[u8], from: usize, to: usize) -> Vec<u8> {
    match (from, to) {
        (1, 3) => pixels.iter().flat_map(|&l| [l, l, l]).collect(),
        (3, 1) => pixels.chunks_exact(3).map(pillow_rgb_to_l).collect(),
        _ => pixels.to_vec(),
    }
}

/// Pillow's `rgb2l` (ITU-R 601-2 luma in 16-bit fixed point, rounded).
pub fn pillow_rgb_to_l(rgb: &[u8]) -> u8 {
    ((rgb[0] as u32 * 19595 + rgb[1] as u32 * 38470 + rgb[2] as u32 * 7471 + 0x8000) >> 16) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_jpeg_is_an_error_with_the_library_s_reason() {
        let err = decode(&[0xFF, 0xD8, 0xFF, 0xD9], 3).unwrap_err();
        assert!(!err.is_empty());
        assert!(!is_jpeg(b"\x89PNG"));
    }

    #[test]
    fn pillow_s_colour_formulas_at_their_ends() {
        assert_eq!(pillow_rgb_to_l(&[255, 255, 255]), 255);
        assert_eq!(pillow_rgb_to_l(&[0, 0, 0]), 0);
        // stored inverted: 255 is no ink, so white
        assert_eq!(pillow_cmyk_inverted_to_rgb(&[255, 255, 255, 255]), [255; 3]);
        assert_eq!(pillow_cmyk_inverted_to_rgb(&[255, 255, 255, 0]), [0; 3]);
    }
}
