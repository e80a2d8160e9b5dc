//! The pixels PyTorch codebases see (#27): JPEG decoding, channel conversion, every resize and the
//! protocol's transforms equal Pillow's bit for bit. The fixtures (`tests/fixtures/pixels/`) were
//! written by `pillow_reference.py` with the Pillow named in them; the real-data test compares every
//! image of miniImageNet's validation store with the SHA-256 of Pillow's decode of the same mirror file.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use fewshot::data::jpeg_pillow;
use fewshot::data::philox::CounterRng;
use fewshot::data::pillow_resize::{resize, PillowFilter};
use fewshot::data::raw_image::{Payload, RawImage};
use fewshot::data::store::Store;
use fewshot::data::transforms::{resized_crop, transform_pixels, StoredImage, Transform};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::real_data::mini_imagenet_store_dir;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pixels")
}

/// The members of `pillow.tar.gz` by name.
fn fixture_members() -> BTreeMap<String, Vec<u8>> {
    let file = std::fs::File::open(fixtures().join("pillow.tar.gz")).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut members = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        members.insert(name, bytes);
    }
    members
}

/// Compares two pixel buffers; on a difference says how many and how large.
fn same_pixels(what: &str, ours: &[u8], pillow: &[u8]) -> Option<String> {
    if ours == pillow {
        return None;
    }
    let differing = ours.iter().zip(pillow).filter(|(a, b)| a != b).count();
    let largest = ours.iter().zip(pillow).map(|(a, b)| a.abs_diff(*b)).max();
    Some(format!(
        "{what}: {differing} of {} values differ (largest {largest:?}; lengths {} and {})",
        pillow.len(),
        ours.len(),
        pillow.len()
    ))
}

#[test]
fn decoding_conversions_resizes_and_transforms_equal_pillow_s() {
    let members = fixture_members();
    let expected: Value = serde_json::from_slice(&members["expected.json"]).unwrap();
    println!(
        "fixtures by Pillow {} (libjpeg-turbo {})",
        expected["pillow"], expected["libjpeg_turbo"]
    );
    let mut failures = Vec::new();
    let mut checked = 0;
    for image in expected["images"].as_array().unwrap() {
        let file = image["file"].as_str().unwrap();
        let bytes = &members[file];
        let (w, h) = (
            image["width"].as_u64().unwrap() as usize,
            image["height"].as_u64().unwrap() as usize,
        );
        // the file as `prepare` stores it: decoded, converted and resized to `side`×`side`
        let as_stored = |channels: u8, side: u32| -> Vec<u8> {
            let raw = RawImage {
                split_key: "c".into(),
                class: "c".into(),
                file: file.into(),
                origin: file.into(),
                payload: Payload::Encoded(Arc::from(&bytes[..])),
                crop: None,
            };
            raw.decode(channels, &[side]).unwrap().remove(0)
        };
        let decode = |channels: usize| -> Vec<u8> {
            if jpeg_pillow::is_jpeg(bytes) {
                let d = jpeg_pillow::decode(bytes, channels).unwrap();
                assert_eq!((d.width, d.height), (w, h), "{file}");
                d.pixels
            } else {
                // PNGs go through the store's path; a square one at its own size is a plain decode
                assert_eq!(w, h, "{file}: the PNG fixture is square");
                as_stored(channels as u8, w as u32)
            }
        };
        let (rgb, grey) = (decode(3), decode(1));
        for (key, spec) in image["outputs"].as_object().unwrap() {
            let ours = match key.as_str() {
                "rgb" => rgb.clone(),
                "l" => grey.clone(),
                "resize84-bilinear" => as_stored(3, 84),
                "resize28-lanczos-l" => resize(&grey, (w, h), 1, (28, 28), PillowFilter::Lanczos),
                "resize84-bicubic" => resize(&rgb, (w, h), 3, (84, 84), PillowFilter::Bicubic),
                "test-resize92-crop84" => transform_pixels(
                    Transform::PROTOCOL_TEST,
                    StoredImage {
                        pixels: &rgb,
                        side: 84,
                        channels: 3,
                        fault: None,
                    },
                    &mut CounterRng::new([0, 0], 0),
                ),
                "train-box-7-11-50-61" => resized_crop(&rgb, 84, 3, (7, 11, 50, 61), 84, false),
                "train-box-7-11-50-61-flip" => resized_crop(&rgb, 84, 3, (7, 11, 50, 61), 84, true),
                other => panic!("{file}: unknown fixture output {other}"),
            };
            let pillow = &members[spec["file"].as_str().unwrap()];
            failures.extend(same_pixels(&format!("{file} {key}"), &ours, pillow));
            checked += 1;
        }
    }
    assert!(checked >= 50, "only {checked} outputs checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_mini_imagenet_validation_image_is_pillow_s_decode() {
    let path = fixtures().join("mini-imagenet-val.pillow-sha256.json.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let expected: Value = serde_json::from_str(&text).unwrap();
    let store = Store::open(&mini_imagenet_store_dir().join("val.store")).unwrap();
    let (mut compared, mut differing) = (0usize, Vec::new());
    for (class, files) in expected["sha256"].as_object().unwrap() {
        for (file, sha) in files.as_object().unwrap() {
            let slot = store
                .slot(class, file)
                .unwrap_or_else(|| panic!("{class}/{file} is not in the store"));
            let ours = hex::encode(Sha256::digest(store.pixels(slot)));
            let sha = sha.as_str().unwrap();
            if !ours.starts_with(sha) {
                differing.push(format!("{class}/{file}"));
            }
            compared += 1;
        }
    }
    assert_eq!(compared, store.header.count, "every image of the store");
    assert_eq!(compared, 9600);
    assert!(
        differing.is_empty(),
        "{} of {compared} images differ from Pillow's decode, e.g. {:?}",
        differing.len(),
        &differing[..differing.len().min(5)]
    );
}
