//! Each converter on a fixture in its real format, through the real fetch (local mirror) and prepare
//! path: class and image counts, names, pixels, and the errors for bad input.

use std::path::PathBuf;

use fewshot::data::prepare::{prepare_dataset, store_dir};
use fewshot::data::store::Store;
use fewshot::fetch::{fetch_dataset, http_agent, Mirror};
use fewshot::manifest::DatasetManifest;

use crate::fixture_archives::{cifar_record, jpeg, png_grey, sha256, tar, tar_gz, zip};
use crate::toy_manifest::{manifest, Workspace};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

/// `[[source.archive]]` entries for files, with their real SHA-256s.
fn archives(files: &[(&str, &[u8])]) -> String {
    files
        .iter()
        .map(|(name, data)| {
            format!(
                "\n[[source.archive]]\nfile = \"{name}\"\nsha256 = \"{}\"\n",
                sha256(data)
            )
        })
        .collect()
}

/// A `class-folders` source (split folders named train/val/test) over `files`.
fn class_folder_source(files: &[(&str, &[u8])]) -> String {
    format!(
        "[[source]]\nid = \"folders\"\nformat = {{ kind = \"class-folders\", split_dirs = {{ train = \"train\", val = \"val\", test = \"test\" }} }}\n{}",
        archives(files)
    )
}

/// Puts `files` on a mirror, fetches and prepares; returns the workspace and the store folder.
fn prepare(m: &DatasetManifest, files: &[(&str, &[u8])]) -> fewshot::Result<(Workspace, PathBuf)> {
    let mut ws = Workspace::new(vec![]);
    let mirror = ws.mirror_dir(&m.name, files);
    ws.options.mirrors = vec![Mirror::Dir(mirror)];
    let fetched = fetch_dataset(m, &ws.options, &http_agent(), &mut Vec::new())?;
    let (prepared, skipped) = prepare_dataset(m, &fetched, &ws.options.data_dir, None)?;
    assert!(!skipped);
    // preparing again is a no-op
    let (again, skipped) = prepare_dataset(m, &fetched, &ws.options.data_dir, None)?;
    assert!(skipped);
    assert_eq!(again, prepared);
    let dir = store_dir(&ws.options.data_dir, m, "toy");
    Ok((ws, dir))
}

fn open(dir: &std::path::Path, split: &str) -> Store {
    Store::open(&dir.join(format!("{split}.store"))).unwrap()
}

#[test]
fn class_folder_tarballs_become_one_store_per_split() {
    let mut entries = Vec::new();
    for (split, classes) in [
        ("train", ["n01", "n02"]),
        ("val", ["n03", "n04"]),
        ("test", ["n05", "n06"]),
    ] {
        for (c, class) in classes.iter().enumerate() {
            for k in 0..3u8 {
                let colour = [40 * c as u8 + 10 * k, 200, 30];
                entries.push((
                    format!("mini-imagenet/{split}/{class}/{class}{k:08}.jpg"),
                    jpeg(12, 10, colour),
                ));
            }
        }
    }
    entries.push(("mini-imagenet/README.txt".into(), b"ignored".to_vec()));
    let archive = tar_gz(&entries);
    let files: [(&str, &[u8]); 1] = [("toy-84.tar.gz", &archive)];
    let m = manifest(
        "toy",
        "size = 8\nchannels = 3",
        [&["n01", "n02"], &["n03", "n04"], &["n05", "n06"]],
        "images_per_class = 3",
        &class_folder_source(&files),
    );
    let (_ws, dir) = prepare(&m, &files).unwrap();
    let train = open(&dir, "train");
    assert_eq!(train.header.count, 6);
    assert_eq!(
        train
            .header
            .classes
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["n01", "n02"]
    );
    let px = train.pixels(train.slot("n02", "n0200000001.jpg").unwrap());
    assert_eq!(px.len(), 8 * 8 * 3);
    // a flat JPEG colour survives decoding and resizing within JPEG error
    assert!(
        (px[0] as i32 - 50).abs() <= 3 && (px[1] as i32 - 200).abs() <= 3,
        "{:?}",
        &px[..3]
    );
    assert_eq!(open(&dir, "test").header.classes.len(), 2);
    // the manifest's count is enforced
    let strict = manifest(
        "toy",
        "size = 8\nchannels = 3",
        [&["n01", "n02"], &["n03", "n04"], &["n05", "n06"]],
        "images_per_class = 4",
        &class_folder_source(&files),
    );
    let text = prepare(&strict, &files).err().unwrap().to_string();
    assert!(
        text.contains("class n01 has 3 images, the manifest says 4"),
        "{text}"
    );
}

#[test]
fn a_corrupt_image_is_an_error_naming_the_file() {
    let mut entries = vec![];
    for (split, class) in [("train", "a"), ("val", "b"), ("test", "c")] {
        entries.push((format!("d/{split}/{class}/x.jpg"), jpeg(8, 8, [1, 2, 3])));
    }
    entries.push((
        "d/val/b/broken.jpg".into(),
        b"\xff\xd8\xff\xe0 truncated".to_vec(),
    ));
    let archive = tar_gz(&entries);
    let files: [(&str, &[u8]); 1] = [("d.tar.gz", &archive)];
    let m = manifest(
        "toy",
        "size = 8\nchannels = 3",
        [&["a"], &["b"], &["c"]],
        "",
        &class_folder_source(&files),
    );
    let text = prepare(&m, &files).err().unwrap().to_string();
    assert!(
        text.contains("d.tar.gz:d/val/b/broken.jpg: corrupt or unreadable image"),
        "{text}"
    );
}

#[test]
fn images_with_ravi_csvs_follow_the_csv_labels() {
    let mut entries = vec![];
    let mut csv = std::collections::BTreeMap::new();
    for (split, classes) in [
        ("train", ["n01", "n02"]),
        ("val", ["n03", "n04"]),
        ("test", ["n05", "n06"]),
    ] {
        let mut text = String::from("filename,label\n");
        for class in classes {
            for k in 0..2 {
                let name = format!("{class}{k:08}.jpg");
                entries.push((format!("miniimagenet/images/{name}"), jpeg(8, 8, [9, 9, 9])));
                text.push_str(&format!("{name},{class}\n"));
            }
        }
        csv.insert(split, text);
    }
    for (split, text) in &csv {
        entries.push((
            format!("miniimagenet/split/{split}.csv"),
            text.clone().into_bytes(),
        ));
    }
    let archive = tar(&entries);
    let files: [(&str, &[u8]); 1] = [("miniimagenet.tar", &archive)];
    let m = manifest(
        "toy",
        "size = 8\nchannels = 3",
        [&["n01", "n02"], &["n03", "n04"], &["n05", "n06"]],
        "images_per_class = 2",
        &format!(
            "[[source]]\nid = \"renet\"\nformat = {{ kind = \"images-csv\", csv = {{ train = \"train.csv\", val = \"val.csv\", test = \"test.csv\" }} }}\n{}",
            archives(&files)
        ),
    );
    let (_ws, dir) = prepare(&m, &files).unwrap();
    assert_eq!(
        open(&dir, "val").class("n04").unwrap().files,
        ["n0400000000.jpg", "n0400000001.jpg"]
    );
}

#[test]
fn ren_pickles_written_by_python_are_read_with_csv_names() {
    let pk = [
        fixture("mini-imagenet-cache-train.pkl"),
        fixture("mini-imagenet-cache-validation.pkl"),
        fixture("mini-imagenet-cache-test.pkl"),
    ];
    let csv = [
        fixture("ravi-train.csv"),
        fixture("ravi-val.csv"),
        fixture("ravi-test.csv"),
    ];
    let files: [(&str, &[u8]); 6] = [
        ("mini-imagenet-cache-train.pkl", &pk[0]),
        ("mini-imagenet-cache-validation.pkl", &pk[1]),
        ("mini-imagenet-cache-test.pkl", &pk[2]),
        ("train.csv", &csv[0]),
        ("val.csv", &csv[1]),
        ("test.csv", &csv[2]),
    ];
    let m = manifest(
        "toy",
        "size = 8\nchannels = 3",
        [&["n01532829", "n01558993"], &["n01855672", "n02091244"], &["n01930112", "n01981276"]],
        "images_per_class = 3",
        &format!(
            "[[source]]\nid = \"zenodo\"\nformat = {{ kind = \"ren-pickles\", files = {{ train = \"mini-imagenet-cache-train.pkl\", val = \"mini-imagenet-cache-validation.pkl\", test = \"mini-imagenet-cache-test.pkl\" }}, csv = {{ train = \"train.csv\", val = \"val.csv\", test = \"test.csv\" }} }}\n{}",
            archives(&files)
        ),
    );
    let (_ws, dir) = prepare(&m, &files).unwrap();
    let train = open(&dir, "train");
    // class_dict {'n01532829': [0, 2, 4], …}: its second CSV row (n0153282900000008.jpg) is image_data[2]
    let slot = train.slot("n01532829", "n0153282900000008.jpg").unwrap();
    let parsed = fewshot::pickle::parse(&pk[0]).unwrap();
    let array = fewshot::pickle::NdArray::from_value(parsed.get("image_data").unwrap()).unwrap();
    let raw = array.as_u8().unwrap();
    assert_eq!(train.pixels(slot), &raw[2 * 192..3 * 192]);
}

#[test]
fn tiered_png_pickles_written_by_python_are_read() {
    let mut owned = Vec::new();
    for split in ["train", "val", "test"] {
        for kind in ["images_png", "labels"] {
            let name = format!("tiered-imagenet-{split}_{kind}.pkl");
            owned.push((name.clone(), fixture(&name)));
        }
    }
    let files: Vec<(&str, &[u8])> = owned
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let m = manifest(
        "toy",
        "size = 10\nchannels = 3",
        [&["n01530575", "n01531178"], &["n02099267", "n02099429"], &["n03314780", "n07565083"]],
        "",
        &format!(
            "[[source]]\nid = \"zenodo\"\nformat = {{ kind = \"tiered-png-pickles\", images = {{ train = \"tiered-imagenet-train_images_png.pkl\", val = \"tiered-imagenet-val_images_png.pkl\", test = \"tiered-imagenet-test_images_png.pkl\" }}, labels = {{ train = \"tiered-imagenet-train_labels.pkl\", val = \"tiered-imagenet-val_labels.pkl\", test = \"tiered-imagenet-test_labels.pkl\" }} }}\n{}",
            archives(&files)
        ),
    );
    let (_ws, dir) = prepare(&m, &files).unwrap();
    let test = open(&dir, "test");
    // labels [0, 1, 0, 1, 1]: class 1 (n07565083) holds images 1, 3, 4, grey 50, 130, 170
    let c = test.class("n07565083").unwrap();
    assert_eq!(
        c.files,
        [
            "n07565083_000001.png",
            "n07565083_000002.png",
            "n07565083_000003.png"
        ]
    );
    let greys: Vec<u8> = c.slots.iter().map(|&s| test.pixels(s)[0]).collect();
    assert_eq!(greys, [50, 130, 170]);
}

#[test]
fn cub_is_cropped_to_its_bounding_boxes_and_split_by_class_id() {
    let classes = [
        "001.Black_footed_Albatross",
        "002.Laysan_Albatross",
        "003.Sooty_Albatross",
    ];
    let mut images_txt = String::new();
    let mut boxes = String::new();
    let mut entries = vec![];
    for (i, class) in classes.iter().enumerate() {
        let id = i + 1;
        let file = format!("{}_{:04}_{}.jpg", &class[4..], id, 100 + id);
        // black 40x30 image with a white 10x10 box at (20, 5)
        let mut img = image::RgbImage::from_pixel(40, 30, image::Rgb([0, 0, 0]));
        for x in 20..30 {
            for y in 5..15 {
                img.put_pixel(x, y, image::Rgb([255, 255, 255]));
            }
        }
        let mut jpg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpg, 100)
            .encode_image(&img)
            .unwrap();
        entries.push((format!("CUB_200_2011/images/{class}/{file}"), jpg));
        images_txt.push_str(&format!("{id} {class}/{file}\n"));
        boxes.push_str(&format!("{id} 20.0 5.0 10.0 10.0\n"));
    }
    entries.push(("CUB_200_2011/images.txt".into(), images_txt.into_bytes()));
    entries.push(("CUB_200_2011/bounding_boxes.txt".into(), boxes.into_bytes()));
    entries.push((
        "attributes.txt".into(),
        b"1 has_bill_shape::curved\n".to_vec(),
    ));
    let archive = tar_gz(&entries);
    let files: [(&str, &[u8]); 1] = [("CUB_200_2011.tgz", &archive)];
    let m = manifest(
        "toy",
        "size = 6\nchannels = 3",
        [&["002"], &["001"], &["003"]],
        "",
        &format!("[[source]]\nid = \"official\"\nformat = {{ kind = \"cub-tgz\", bbox_crop = true }}\n{}", archives(&files)),
    );
    let (_ws, dir) = prepare(&m, &files).unwrap();
    let val = open(&dir, "val");
    assert_eq!(val.header.classes[0].name, "001.Black_footed_Albatross");
    let px = val.pixels(0);
    assert!(
        px.iter().all(|&v| v > 240),
        "the crop holds only the white box: {:?}",
        &px[..6]
    );
    assert!(val.header.transform.starts_with("crop to bounding box"));
}

#[test]
fn cifar100_binary_records_pool_train_and_test_in_hwc() {
    let names = "apple\nbanana\ncherry\n";
    let mut train = Vec::new();
    let mut test = Vec::new();
    for fine in 0..3u8 {
        train.extend(cifar_record(0, fine, [10 + fine, 20, 30]));
        train.extend(cifar_record(0, fine, [10 + fine, 20, 30]));
        test.extend(cifar_record(0, fine, [100, 110 + fine, 120]));
    }
    let archive = tar_gz(&[
        ("cifar-100-binary/train.bin".into(), train),
        ("cifar-100-binary/test.bin".into(), test),
        (
            "cifar-100-binary/fine_label_names.txt".into(),
            names.as_bytes().to_vec(),
        ),
        (
            "cifar-100-binary/coarse_label_names.txt".into(),
            b"fruit\n".to_vec(),
        ),
    ]);
    let files: [(&str, &[u8]); 1] = [("cifar-100-binary.tar.gz", &archive)];
    let m = manifest(
        "toy",
        "size = 32\nchannels = 3",
        [&["apple"], &["banana"], &["cherry"]],
        "images_per_class = 3",
        &format!(
            "[[source]]\nid = \"binary\"\nformat = {{ kind = \"cifar100-binary\" }}\n{}",
            archives(&files)
        ),
    );
    let (_ws, dir) = prepare(&m, &files).unwrap();
    let val = open(&dir, "val");
    assert_eq!(
        val.class("banana").unwrap().files,
        ["test_00001", "train_00002", "train_00003"]
    );
    let px = val.pixels(val.slot("banana", "test_00001").unwrap());
    assert_eq!(&px[..6], &[100, 111, 120, 100, 111, 120]);
}

#[test]
fn omniglot_zips_keep_repeated_alphabets_once_and_refuse_conflicts() {
    let mut small1 = vec![];
    let mut small2 = vec![];
    for (set, alphabets) in [
        (&mut small1, ["Greek", "Korean"]),
        (&mut small2, ["Greek", "Tagalog"]),
    ] {
        let prefix = if alphabets[1] == "Korean" {
            "images_background_small1"
        } else {
            "images_background_small2"
        };
        for alphabet in alphabets {
            for c in 1..=2 {
                for d in 1..=3 {
                    let v = if alphabet == "Greek" { 0 } else { 255 };
                    set.push((
                        format!("{prefix}/{alphabet}/character{c:02}/0{c}{d}_{d:02}.png"),
                        png_grey(105, 105, v),
                    ));
                }
            }
        }
    }
    let (z1, z2) = (zip(&small1), zip(&small2));
    let files: [(&str, &[u8]); 2] = [("small1.zip", &z1), ("small2.zip", &z2)];
    let source = format!(
        "[[source]]\nid = \"small\"\nformat = {{ kind = \"omniglot-zips\" }}\n{}",
        archives(&files)
    );
    let m = manifest(
        "toy",
        "size = 28\nchannels = 1\nextra_sizes = [84]",
        [
            &["Greek/character01", "Greek/character02"],
            &["Korean/character01", "Korean/character02"],
            &["Tagalog/character01", "Tagalog/character02"],
        ],
        "images_per_class = 3",
        &source,
    );
    let (_ws, dir) = prepare(&m, &files).unwrap();
    let train = open(&dir, "train");
    assert_eq!(train.header.count, 6, "Greek is in both zips and kept once");
    assert_eq!((train.header.height, train.header.channels), (28, 1));
    let big = Store::open(&dir.join("train@84.store")).unwrap();
    assert_eq!(big.header.height, 84);
    // a repeated name with other bytes is an error
    let mut conflicting = small2.clone();
    conflicting[0].1 = png_grey(105, 105, 7);
    let z3 = zip(&conflicting);
    let files: [(&str, &[u8]); 2] = [("small1.zip", &z1), ("small2.zip", &z3)];
    let source = format!(
        "[[source]]\nid = \"small\"\nformat = {{ kind = \"omniglot-zips\" }}\n{}",
        archives(&files)
    );
    let m = manifest(
        "toy",
        "size = 28\nchannels = 1",
        [
            &["Greek/character01", "Greek/character02"],
            &["Korean/character01", "Korean/character02"],
            &["Tagalog/character01", "Tagalog/character02"],
        ],
        "",
        &source,
    );
    let text = prepare(&m, &files).err().unwrap().to_string();
    assert!(
        text.contains("differs from the Greek/character01"),
        "{text}"
    );
}

#[test]
fn classes_outside_the_split_lists_are_an_error() {
    let entries = vec![
        ("d/train/a/1.jpg".to_string(), jpeg(8, 8, [0, 0, 0])),
        ("d/val/b/1.jpg".to_string(), jpeg(8, 8, [0, 0, 0])),
        ("d/test/c/1.jpg".to_string(), jpeg(8, 8, [0, 0, 0])),
        ("d/test/zebra/1.jpg".to_string(), jpeg(8, 8, [0, 0, 0])),
    ];
    let archive = tar_gz(&entries);
    let files: [(&str, &[u8]); 1] = [("d.tar.gz", &archive)];
    let m = manifest(
        "toy",
        "size = 8\nchannels = 3",
        [&["a"], &["b"], &["c"]],
        "",
        &class_folder_source(&files),
    );
    let text = prepare(&m, &files).err().unwrap().to_string();
    assert!(
        text.contains("1 classes are in none of the manifest's toy split lists: zebra"),
        "{text}"
    );
}

#[test]
fn unknown_manifest_keys_are_errors() {
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests/datasets/cifar-fs.toml"),
    )
    .unwrap();
    let broken = text.replacen(
        "images_per_class = 600",
        "images_per_class = 600\nimage_per_class = 600",
        1,
    );
    let err = fewshot::manifest::parse_dataset(&broken, std::path::Path::new("cifar-fs.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `image_per_class`"), "{err}");
    for name in fewshot::manifest::DATASETS {
        fewshot::manifest::load_dataset(
            &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests"),
            name,
        )
        .unwrap();
    }
}
