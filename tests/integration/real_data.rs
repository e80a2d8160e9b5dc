//! End to end on real data: `../shared/datasets` (or FEWSHOT_MIRROR) as the mirror, fetch and prepare
//! Omniglot and all of miniImageNet through `set_up_dataset` (what `cargo xtask fetch-data` runs),
//! check counts, pin the fingerprints, and check that the committed frozen episodes apply unchanged
//! and are exactly what the sampler draws. A missing mirror fails these tests; it never skips them.

use std::path::PathBuf;
use std::sync::OnceLock;

use fewshot::data::dataset_setup::{
    protocol_episode_sets, set_up_dataset, DatasetReady, EpisodeFileStatus,
};
use fewshot::data::episode_tensors::EpisodeLoader;
use fewshot::data::frozen_episodes::{frozen_dir, frozen_file_name, FrozenEpisodes};
use fewshot::data::store::Store;
use fewshot::data::transforms::Transform;
use fewshot::fetch::{http_agent, FetchOptions, Mirror};
use fewshot::manifest::load_dataset;

/// Fingerprints of the stores prepared from the mirror (pinned: a change in decoding, resizing,
/// naming or the mirror's content shows up here; they moved with prepare version 2, Pillow's pixels).
const MINI_FINGERPRINTS: [(&str, &str); 3] = [
    (
        "train",
        "18b7f2acc1907e022b30640a120d1c086f69d59841f2f6981b5d034b9f0ff812",
    ),
    (
        "val",
        "02a771e27a6e3b0d09751343f02b029666b09e6a09518a22f966d4ac2b67952e",
    ),
    (
        "test",
        "9df30158d9febf377072a6068896c97a99256e644f37a44036d28174438e38a7",
    ),
];
const OMNIGLOT_FINGERPRINTS: [(&str, &str); 3] = [
    (
        "train",
        "cfcfb95cad10ce7e74ff8446a87ef9a7f01f096a99e2ac35e1a76a203141f086",
    ),
    (
        "val",
        "0ba01e1bdf0c5d16d04d3dd4618bbb2aad8c7ae971d8f593c8714abd16f6b244",
    ),
    (
        "test",
        "1d31d82a4d7c20fbbd6a67bed4057f5de8f5f95390d9fb02d642a36d6ebc351a",
    ),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn mirror() -> PathBuf {
    let dir = std::env::var_os("FEWSHOT_MIRROR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/datasets"));
    assert!(
        dir.join("mini-imagenet").is_dir() && dir.join("omniglot").is_dir(),
        "the dataset mirror {} is missing: set FEWSHOT_MIRROR to the folder holding mini-imagenet/ and omniglot/",
        dir.display()
    );
    dir
}

struct Prepared {
    dir: PathBuf,
    mini: DatasetReady,
    omniglot: DatasetReady,
}

/// Prepared once per test binary: all of miniImageNet takes a while.
fn prepared() -> &'static Prepared {
    static ONCE: OnceLock<Prepared> = OnceLock::new();
    ONCE.get_or_init(|| {
        fewshot::threads::pin_thread_count();
        // A static is never dropped, so a `TempDir` held here stayed on disk after every run (1.5 GB
        // each in /tmp, which filled the disk across runs): one fixed folder under cargo's target
        // directory instead, emptied at the start of every run so each run prepares afresh.
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("real-data");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        let options = FetchOptions {
            data_dir: dir.join("datasets"),
            manifests: repo().join("manifests"),
            mirrors: vec![Mirror::Dir(mirror())],
            verify_only: false,
        };
        let agent = http_agent();
        let set_up = |name: &str| {
            let m = load_dataset(&options.manifests, name).unwrap();
            set_up_dataset(&m, &options, None, &agent, &mut Vec::new()).unwrap()
        };
        let omniglot = set_up("omniglot");
        let mini = set_up("mini-imagenet");
        Prepared {
            dir,
            mini,
            omniglot,
        }
    })
}

/// The data folder the real-data tests prepared (Omniglot and miniImageNet stores).
pub fn prepared_data_dir() -> PathBuf {
    prepared().dir.join("datasets")
}

/// The folder of the prepared miniImageNet stores (`<split>.store`).
pub fn mini_imagenet_store_dir() -> PathBuf {
    prepared().mini.store_dir.clone()
}

fn fingerprints(ready: &DatasetReady, size: u32) -> Vec<(String, String)> {
    ready
        .prepared
        .stores
        .iter()
        .filter(|s| s.size == size)
        .map(|s| (s.split.clone(), s.fingerprint.clone()))
        .collect()
}

#[test]
fn mini_imagenet_prepares_to_64_16_20_classes_of_600_with_pinned_fingerprints() {
    let p = prepared();
    assert_eq!(p.mini.prepared.source, "mini-imagenet-84");
    for (split, classes) in [("train", 64), ("val", 16), ("test", 20)] {
        let store = Store::open(&p.mini.store_dir.join(format!("{split}.store"))).unwrap();
        assert_eq!(store.header.classes.len(), classes, "{split}");
        assert!(
            store.header.classes.iter().all(|c| c.files.len() == 600),
            "{split}"
        );
        assert_eq!((store.header.height, store.header.channels), (84, 3));
    }
    let expected: Vec<(String, String)> = MINI_FINGERPRINTS
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(fingerprints(&p.mini, 84), expected);
}

#[test]
fn omniglot_prepares_by_alphabet_with_pinned_fingerprints() {
    let p = prepared();
    let expected: Vec<(String, String)> = OMNIGLOT_FINGERPRINTS
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(fingerprints(&p.omniglot, 28), expected);
    let test = Store::open(&p.omniglot.store_dir.join("test.store")).unwrap();
    assert_eq!(test.header.classes.len(), 89);
    assert!(test
        .header
        .classes
        .iter()
        .all(|c| c.name.starts_with("Japanese_(katakana)/") || c.name.starts_with("Sanskrit/")));
}

#[test]
fn committed_frozen_episodes_apply_and_are_what_the_sampler_draws() {
    let p = prepared();
    for (name, ready) in [("mini-imagenet", &p.mini), ("omniglot", &p.omniglot)] {
        // the committed files were checked, not (re)written
        assert_eq!(ready.episodes.len(), 4);
        for (path, status) in &ready.episodes {
            assert_eq!(status, &EpisodeFileStatus::Checked, "{}", path.display());
        }
        let m = load_dataset(&repo().join("manifests"), name).unwrap();
        for (split, spec, seed, count) in protocol_episode_sets() {
            let path = frozen_dir(
                &repo().join("manifests"),
                name,
                &m.default_split,
                &m.default_split,
            )
            .join(frozen_file_name(split, spec, seed, count));
            let committed = FrozenEpisodes::read(&path).unwrap();
            let store = Store::open(&ready.store_dir.join(format!("{split}.store"))).unwrap();
            let redrawn = FrozenEpisodes::draw(&store, spec, seed, count).unwrap();
            assert_eq!(
                redrawn.content_sha256,
                committed.content_sha256,
                "{}",
                path.display()
            );
            assert_eq!(committed.count, count);
        }
    }
}

#[test]
fn a_tampered_episode_file_is_refused() {
    let path = repo().join("manifests/episodes/omniglot/val-5w1s15q-seed2-n200.episodes.json.gz");
    let mut frozen = FrozenEpisodes::read(&path).unwrap();
    frozen.episodes[0][0][1] = frozen.episodes[0][0][2];
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("x.episodes.json.gz");
    frozen.write(&copy).unwrap();
    let text = FrozenEpisodes::read(&copy).unwrap_err().to_string();
    assert!(text.contains("content hash mismatch"), "{text}");
}

#[test]
fn episodes_refuse_a_store_that_lacks_their_images() {
    let p = prepared();
    let path =
        repo().join("manifests/episodes/mini-imagenet/test-5w1s15q-seed1-n2000.episodes.json.gz");
    let frozen = FrozenEpisodes::read(&path).unwrap();
    // the omniglot test store has none of miniImageNet's names
    let other = Store::open(&p.omniglot.store_dir.join("test.store")).unwrap();
    let text = frozen.resolve(&other, &path).unwrap_err().to_string();
    assert!(
        text.contains("cannot be used with the store of omniglot/test"),
        "{text}"
    );
    let csv = frozen.to_csv();
    assert_eq!(csv.lines().count(), 1 + 2000 * 5 * 16);
}

#[test]
fn episode_tensors_have_the_protocol_shapes_and_follow_the_seed() {
    let p = prepared();
    let path =
        repo().join("manifests/episodes/mini-imagenet/test-5w5s15q-seed1-n2000.episodes.json.gz");
    let store = Store::open(&p.mini.store_dir.join("test.store")).unwrap();
    let episodes = FrozenEpisodes::read(&path)
        .unwrap()
        .resolve(&store, &path)
        .unwrap();
    let test = EpisodeLoader {
        store: &store,
        transform: Transform::PROTOCOL_TEST,
        seed: 0,
    };
    let t = test.load(&episodes[3]);
    assert_eq!(t.image_shape, [3, 84, 84]);
    assert_eq!(t.support.len(), 25 * 3 * 84 * 84);
    assert_eq!(t.query.len(), 75 * 3 * 84 * 84);
    assert_eq!(&t.support_labels[..6], &[0, 1, 2, 3, 4, 0]);
    assert!(t
        .support
        .iter()
        .chain(&t.query)
        .all(|v| v.is_finite() && v.abs() < 5.0));
    // normalised pixels have roughly zero mean and unit spread over an episode
    let mean: f32 = t.query.iter().sum::<f32>() / t.query.len() as f32;
    assert!(mean.abs() < 0.5, "{mean}");
    assert_eq!(
        test.load(&episodes[3]),
        t,
        "the test transform is deterministic"
    );
    let train = |seed| EpisodeLoader {
        store: &store,
        transform: Transform::PROTOCOL_TRAIN,
        seed,
    };
    let a = train(5).load(&episodes[3]);
    assert_eq!(train(5).load(&episodes[3]), a);
    assert_ne!(train(6).load(&episodes[3]).support, a.support);
}
