//! Downloads against the loopback server: good, wrong hash, truncated then resumed, HTML instead of
//! an archive, 404 then the next URL, a server without Range support, Google Drive's confirmation,
//! trust-on-first-use pinning, mirrors before URLs, and a second run that does nothing.

use fewshot::fetch::{fetch_dataset, http_agent, ArchiveStatus, Mirror};
use fewshot::manifest::LockFile;
use fewshot::Error;

use crate::fixture_archives::{md5, sha256};
use crate::loopback_server::{Behaviour, LoopbackServer};
use crate::toy_manifest::{manifest, Workspace};

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

/// A one-archive source `blob.bin` with the given hash line and URLs.
fn one_archive(hash: &str, urls: &[String]) -> fewshot::manifest::DatasetManifest {
    let urls = urls
        .iter()
        .map(|u| format!("{u:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    manifest(
        "toy",
        "size = 8\nchannels = 3",
        [&["a"], &["b"], &["c"]],
        "",
        &format!(
            "[[source]]\nid = \"web\"\nformat = {{ kind = \"cifar100-binary\" }}\n\n[[source.archive]]\nfile = \"blob.bin\"\n{hash}\nurls = [{urls}]\n"
        ),
    )
}

#[test]
fn a_good_download_is_verified_stamped_and_not_repeated() {
    let body = payload(300_000);
    let server = LoopbackServer::start(vec![("/blob.bin", Behaviour::Serve(body.clone()))]);
    let m = one_archive(
        &format!("sha256 = \"{}\"", sha256(&body)),
        &[server.url("/blob.bin")],
    );
    let ws = Workspace::new(vec![]);
    let agent = http_agent();
    let mut outcomes = Vec::new();
    let fetched = fetch_dataset(&m, &ws.options, &agent, &mut outcomes).unwrap();
    assert_eq!(std::fs::read(&fetched.files[0]).unwrap(), body);
    assert!(matches!(outcomes[0].status, ArchiveStatus::Fetched { .. }));
    assert!(!ws.downloads("toy").join("blob.bin.part").exists());
    // the second run reads the stamp and asks the server nothing
    let before = server.requests().len();
    let mut again = Vec::new();
    fetch_dataset(&m, &ws.options, &agent, &mut again).unwrap();
    assert_eq!(again[0].status, ArchiveStatus::AlreadyVerified);
    assert_eq!(server.requests().len(), before);
    // a file changed on disk is no longer trusted: it is fetched again
    std::fs::write(&fetched.files[0], b"tampered").unwrap();
    let mut third = Vec::new();
    fetch_dataset(&m, &ws.options, &agent, &mut third).unwrap();
    assert!(matches!(third[0].status, ArchiveStatus::Fetched { .. }));
    assert_eq!(std::fs::read(&fetched.files[0]).unwrap(), body);
}

#[test]
fn a_wrong_hash_removes_the_file_and_names_both_hashes() {
    let body = payload(50_000);
    let server = LoopbackServer::start(vec![("/blob.bin", Behaviour::Serve(body.clone()))]);
    let wrong = "0".repeat(64);
    let m = one_archive(&format!("sha256 = \"{wrong}\""), &[server.url("/blob.bin")]);
    let ws = Workspace::new(vec![]);
    let err = fetch_dataset(&m, &ws.options, &http_agent(), &mut Vec::new()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::NoSourceWorked { .. }), "{text}");
    assert!(
        text.contains(&wrong) && text.contains(&sha256(&body)),
        "{text}"
    );
    assert!(text.contains("blob.bin: checksum mismatch"), "{text}");
    assert!(!ws.downloads("toy").join("blob.bin").exists());
    assert!(!ws.downloads("toy").join("blob.bin.part").exists());
}

#[test]
fn a_truncated_transfer_resumes_with_a_range_request() {
    let body = payload(400_000);
    let server = LoopbackServer::start(vec![(
        "/blob.bin",
        Behaviour::CutFirst {
            body: body.clone(),
            cut: 150_000,
            ignore_range: false,
        },
    )]);
    let m = one_archive(
        &format!("sha256 = \"{}\"", sha256(&body)),
        &[server.url("/blob.bin")],
    );
    let ws = Workspace::new(vec![]);
    let fetched = fetch_dataset(&m, &ws.options, &http_agent(), &mut Vec::new()).unwrap();
    assert_eq!(std::fs::read(&fetched.files[0]).unwrap(), body);
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    let range = requests[1].range.clone().expect("second request resumes");
    let start: usize = range
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(start > 0 && start <= 150_000, "{range}");
}

#[test]
fn a_server_without_range_support_restarts_from_zero() {
    let body = payload(400_000);
    let server = LoopbackServer::start(vec![(
        "/blob.bin",
        Behaviour::CutFirst {
            body: body.clone(),
            cut: 100_000,
            ignore_range: true,
        },
    )]);
    let m = one_archive(
        &format!("sha256 = \"{}\"", sha256(&body)),
        &[server.url("/blob.bin")],
    );
    let ws = Workspace::new(vec![]);
    let fetched = fetch_dataset(&m, &ws.options, &http_agent(), &mut Vec::new()).unwrap();
    assert_eq!(std::fs::read(&fetched.files[0]).unwrap(), body);
    assert!(
        server.requests()[1].range.is_some(),
        "the client asked to resume"
    );
}

#[test]
fn an_html_page_is_refused_with_what_it_said() {
    let page = "<!DOCTYPE html><html><head><title>Sign in - Google Accounts</title></head><body>log in</body></html>";
    let server = LoopbackServer::start(vec![("/blob.bin", Behaviour::Html(page.into()))]);
    let m = one_archive(
        &format!("sha256 = \"{}\"", "1".repeat(64)),
        &[server.url("/blob.bin")],
    );
    let ws = Workspace::new(vec![]);
    let text = fetch_dataset(&m, &ws.options, &http_agent(), &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("sent an HTML page instead of the archive"),
        "{text}"
    );
    assert!(text.contains("Sign in - Google Accounts"), "{text}");
    assert!(!ws.downloads("toy").join("blob.bin.part").exists());
}

#[test]
fn a_404_falls_through_to_the_next_url() {
    let body = payload(10_000);
    let server = LoopbackServer::start(vec![("/good/blob.bin", Behaviour::Serve(body.clone()))]);
    let m = one_archive(
        &format!("sha256 = \"{}\"", sha256(&body)),
        &[server.url("/gone/blob.bin"), server.url("/good/blob.bin")],
    );
    let ws = Workspace::new(vec![]);
    let mut outcomes = Vec::new();
    fetch_dataset(&m, &ws.options, &http_agent(), &mut outcomes).unwrap();
    match &outcomes[0].status {
        ArchiveStatus::Fetched { from, .. } => assert!(from.ends_with("/good/blob.bin"), "{from}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.requests()[0].path, "/gone/blob.bin");
}

#[test]
fn google_drive_confirmation_is_followed() {
    let body = payload(70_000);
    let server = LoopbackServer::start(vec![(
        "/uc/FILEID",
        Behaviour::DriveConfirm { body: body.clone() },
    )]);
    let m = one_archive(
        &format!("md5 = \"{}\"", md5(&body)),
        &[server.url("/uc/FILEID")],
    );
    let ws = Workspace::new(vec![]);
    let fetched = fetch_dataset(&m, &ws.options, &http_agent(), &mut Vec::new()).unwrap();
    assert_eq!(std::fs::read(&fetched.files[0]).unwrap(), body);
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths[0], "/uc/FILEID");
    assert!(
        paths[1].starts_with("/drive-download?id=FILEID&export=download&confirm=t"),
        "{paths:?}"
    );
}

#[test]
fn an_unpublished_sha256_is_checked_by_md5_then_pinned_and_enforced() {
    let body = payload(20_000);
    let server = LoopbackServer::start(vec![
        ("/blob.bin", Behaviour::Serve(body.clone())),
        (
            "/other/blob.bin",
            Behaviour::Serve(body.iter().rev().copied().collect()),
        ),
    ]);
    let ws = Workspace::new(vec![]);
    // a wrong md5 is refused before anything is pinned
    let bad = one_archive(
        &format!("md5 = \"{}\"", "f".repeat(32)),
        &[server.url("/blob.bin")],
    );
    assert!(fetch_dataset(&bad, &ws.options, &http_agent(), &mut Vec::new()).is_err());
    let lock_path = LockFile::path(&ws.options.manifests, "toy");
    assert!(!lock_path.exists());
    // the right md5: the SHA-256 is pinned in manifests/locks/toy.lock
    let good = one_archive(
        &format!("md5 = \"{}\"", md5(&body)),
        &[server.url("/blob.bin")],
    );
    let mut outcomes = Vec::new();
    fetch_dataset(&good, &ws.options, &http_agent(), &mut outcomes).unwrap();
    assert!(outcomes[0].pinned);
    let lock = LockFile::load(&lock_path).unwrap();
    assert_eq!(lock.find("web", "blob.bin").unwrap().sha256, sha256(&body));
    // later downloads must match the pin, even with no md5 to check
    std::fs::remove_dir_all(ws.downloads("toy")).unwrap();
    let unpublished = one_archive("", &[server.url("/other/blob.bin")]);
    let text = fetch_dataset(&unpublished, &ws.options, &http_agent(), &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(text.contains(&sha256(&body)), "{text}");
}

#[test]
fn a_mirror_is_tried_before_public_urls_and_mirror_only_sources_need_one() {
    let body = payload(5_000);
    let server = LoopbackServer::start(vec![("/blob.bin", Behaviour::Serve(body.clone()))]);
    let m = one_archive(
        &format!("sha256 = \"{}\"", sha256(&body)),
        &[server.url("/blob.bin")],
    );
    let mut ws = Workspace::new(vec![]);
    let mirror = ws.mirror_dir("toy", &[("blob.bin", &body)]);
    ws.options.mirrors = vec![Mirror::Dir(mirror.clone())];
    let mut outcomes = Vec::new();
    fetch_dataset(&m, &ws.options, &http_agent(), &mut outcomes).unwrap();
    assert!(
        server.requests().is_empty(),
        "the public URL was not needed"
    );
    match &outcomes[0].status {
        ArchiveStatus::Fetched { from, .. } => {
            assert!(from.starts_with(&mirror.display().to_string()))
        }
        other => panic!("{other:?}"),
    }
    // an HTTP mirror works the same way
    let ws2 = Workspace::new(vec![Mirror::parse(&format!("{}/m", server.base))]);
    let mirror_server =
        LoopbackServer::start(vec![("/m/toy/blob.bin", Behaviour::Serve(body.clone()))]);
    let mut opts = ws2.options.clone();
    opts.mirrors = vec![Mirror::parse(&format!("{}/m", mirror_server.base))];
    fetch_dataset(&m, &opts, &http_agent(), &mut Vec::new()).unwrap();
    assert_eq!(mirror_server.requests().len(), 1);
    // a source with no URLs and no mirror cannot be fetched, and the error says how to fix it
    let mirror_only = one_archive(&format!("sha256 = \"{}\"", sha256(&body)), &[]);
    let ws3 = Workspace::new(vec![]);
    let text = fetch_dataset(&mirror_only, &ws3.options, &http_agent(), &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(text.contains("--mirror"), "{text}");
}

#[test]
fn a_published_sha256_prefix_is_checked_then_the_full_hash_pinned() {
    // torchvision names its checkpoints after the first 8 hex digits of their SHA-256
    let body = payload(30_000);
    let full = sha256(&body);
    let server = LoopbackServer::start(vec![("/blob.bin", Behaviour::Serve(body.clone()))]);
    let ws = Workspace::new(vec![]);
    let wrong = one_archive("sha256_prefix = \"00000000\"", &[server.url("/blob.bin")]);
    let text = fetch_dataset(&wrong, &ws.options, &http_agent(), &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(text.contains("expected sha256 prefix 00000000"), "{text}");
    let right = one_archive(
        &format!("sha256_prefix = \"{}\"", &full[..8]),
        &[server.url("/blob.bin")],
    );
    let mut outcomes = Vec::new();
    fetch_dataset(&right, &ws.options, &http_agent(), &mut outcomes).unwrap();
    assert!(outcomes[0].pinned);
    let lock = LockFile::load(&LockFile::path(&ws.options.manifests, "toy")).unwrap();
    assert_eq!(lock.find("web", "blob.bin").unwrap().sha256, full);
}
