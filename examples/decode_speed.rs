//! JPEG decoding speed, the old decoder beside the new in one run (#27): every JPEG of a mirror
//! archive decoded to RGB by `image` 0.25.9 (zune-jpeg, the stores' decoder before prepare version 2)
//! and by `fewshot::data::jpeg_pillow` (libjpeg-turbo with Pillow's settings), on one thread each:
//! `cargo run --release --example decode_speed -- <archive.tar.gz>`. Prints images, seconds per
//! decoder, and how many images the two decode differently (and the largest difference).

use std::io::Read;
use std::time::Instant;

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: decode_speed <archive.tar.gz>");
    let file = std::fs::File::open(&path).expect("archive");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut files = Vec::new();
    for entry in archive.entries().expect("tar") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("name").to_string_lossy().to_lowercase();
        if name.ends_with(".jpg") || name.ends_with(".jpeg") {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).expect("read");
            files.push(bytes);
        }
    }
    let started = Instant::now();
    let old: Vec<Vec<u8>> = files
        .iter()
        .map(|b| {
            image::load_from_memory(b)
                .expect("zune")
                .into_rgb8()
                .into_raw()
        })
        .collect();
    let zune = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let new: Vec<Vec<u8>> = files
        .iter()
        .map(|b| {
            fewshot::data::jpeg_pillow::decode(b, 3)
                .expect("turbo")
                .pixels
        })
        .collect();
    let turbo = started.elapsed().as_secs_f64();
    let differing = old.iter().zip(&new).filter(|(a, b)| a != b).count();
    let largest = old
        .iter()
        .zip(&new)
        .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)))
        .max()
        .unwrap_or(0);
    println!(
        "{} JPEGs: image/zune-jpeg {zune:.2} s, libjpeg-turbo (Pillow's settings) {turbo:.2} s; \
         {differing} decoded differently, largest difference {largest} levels",
        files.len()
    );
}
