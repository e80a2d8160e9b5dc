//! Builders for fixture archives in the real formats DATASETS.md describes: tar.gz/tar/zip members,
//! JPEG and PNG images, CUB's text files, CIFAR-100 binary records.

use std::io::Write;

/// A `w`×`h` RGB JPEG filled with `rgb` (quality 95).
pub fn jpeg(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb(rgb));
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95)
        .encode_image(&img)
        .unwrap();
    out
}

/// A `w`×`h` greyscale PNG filled with `v`.
pub fn png_grey(w: u32, h: u32, v: u8) -> Vec<u8> {
    let img = image::GrayImage::from_pixel(w, h, image::Luma([v]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn tar_bytes(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append_data(&mut header, name, &data[..]).unwrap();
    }
    builder.into_inner().unwrap()
}

pub fn tar(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    tar_bytes(entries)
}

pub fn tar_gz(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar_bytes(entries)).unwrap();
    gz.finish().unwrap()
}

pub fn zip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        writer.start_file(name.as_str(), options).unwrap();
        writer.write_all(data).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// One CIFAR-100 binary record: coarse label, fine label, then the R, G and B planes (1,024 bytes each).
pub fn cifar_record(coarse: u8, fine: u8, rgb: [u8; 3]) -> Vec<u8> {
    let mut r = vec![coarse, fine];
    for c in rgb {
        r.extend(std::iter::repeat_n(c, 1024));
    }
    r
}

/// SHA-256 of bytes, hex.
pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

pub fn md5(data: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(data))
}
