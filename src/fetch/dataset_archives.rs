//! Getting every archive of one dataset onto disk, verified: the source list is tried in preference
//! order, mirrors before public URLs, and the first source whose archives all verify is used. A file
//! verified once is stamped (size, mtime, SHA-256), so a second run does nothing, quickly.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::checksum::{hash_file, Digests, Expected};
use super::location::{Location, Mirror};
use super::transfer::{part_path, transfer};
use crate::atomic_write::write_atomically;
use crate::clock::utc_now;
use crate::error::{Error, Result};
use crate::manifest::{Archive, DatasetManifest, LockFile, LockedArchive, Source};

/// Where data lives and where it may come from.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// `datasets/` by default; each dataset gets `<data_dir>/<name>/`.
    pub data_dir: PathBuf,
    /// The `manifests/` folder (for lock files).
    pub manifests: PathBuf,
    /// Tried before any public URL.
    pub mirrors: Vec<Mirror>,
    /// Re-hash what is on disk; download nothing.
    pub verify_only: bool,
}

/// What happened to one archive, for the final table.
#[derive(Debug, Clone, PartialEq)]
pub enum ArchiveStatus {
    Fetched { from: String, seconds: f64 },
    AlreadyVerified,
    Reverified { seconds: f64 },
    Missing,
}

#[derive(Debug, Clone)]
pub struct ArchiveOutcome {
    pub dataset: String,
    pub source: String,
    pub file: String,
    pub size: u64,
    pub status: ArchiveStatus,
    /// The SHA-256 was pinned in the lock file by this run.
    pub pinned: bool,
}

/// The source that was fetched, with its verified archive files in manifest order.
#[derive(Debug, Clone)]
pub struct FetchedSource {
    pub source: Source,
    pub files: Vec<PathBuf>,
    pub sha256: Vec<String>,
}

pub use crate::manifest::downloads_dir;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Stamp {
    sha256: String,
    size: u64,
    mtime_ns: u128,
}

fn stamp_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".verified.json");
    file.with_file_name(name)
}

fn mtime_ns(path: &Path) -> Option<(u64, u128)> {
    let meta = std::fs::metadata(path).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some((meta.len(), mtime))
}

/// The stamp's SHA-256 if `file` is unchanged since it was verified.
fn read_stamp(file: &Path) -> Option<String> {
    let (size, mtime) = mtime_ns(file)?;
    let stamp: Stamp = serde_json::from_slice(&std::fs::read(stamp_path(file)).ok()?).ok()?;
    (stamp.size == size && stamp.mtime_ns == mtime).then_some(stamp.sha256)
}

fn write_stamp(file: &Path, sha256: &str) -> Result<()> {
    let (size, mtime_ns) =
        mtime_ns(file).ok_or_else(|| Error::invalid(format!("{} vanished", file.display())))?;
    let stamp = Stamp {
        sha256: sha256.to_string(),
        size,
        mtime_ns,
    };
    write_atomically(
        &stamp_path(file),
        &serde_json::to_vec(&stamp).expect("plain struct"),
    )
}

/// Fetches (or, with `verify_only`, re-checks) the dataset's archives; see the module docs.
pub fn fetch_dataset(
    manifest: &DatasetManifest,
    options: &FetchOptions,
    agent: &ureq::Agent,
    outcomes: &mut Vec<ArchiveOutcome>,
) -> Result<FetchedSource> {
    fetch_sources(&manifest.name, &manifest.sources, options, agent, outcomes)
}

/// The same for any named list of sources (datasets, pretrained weights): files go to
/// `<data_dir>/<name>/downloads/`, mirrors are read at `<mirror>/<name>/<file>`, pins go to
/// `manifests/locks/<name>.lock`.
pub fn fetch_sources(
    name: &str,
    sources: &[Source],
    options: &FetchOptions,
    agent: &ureq::Agent,
    outcomes: &mut Vec<ArchiveOutcome>,
) -> Result<FetchedSource> {
    let manifest = &Named { name, sources };
    let lock_path = LockFile::path(&options.manifests, manifest.name);
    let mut fetch = Fetch {
        manifest,
        downloads: downloads_dir(&options.data_dir, manifest.name),
        lock: LockFile::load(&lock_path)?,
        lock_path,
    };
    // 1. a source already on disk and verified earlier
    for source in manifest.sources {
        let files = fetch.files(source);
        if !files.iter().all(|f| f.is_file()) {
            continue;
        }
        if options.verify_only {
            return reverify(
                manifest,
                source,
                &files,
                &fetch.lock,
                &fetch.lock_path,
                outcomes,
            );
        }
        if let Some(shas) = fetch.stamped(source, &files) {
            let earlier = vec![None; files.len()];
            return fetch.record(source, files, shas, earlier, outcomes);
        }
    }
    if options.verify_only {
        return Err(fetch.nothing_to_verify(outcomes));
    }
    // 2. mirrors first, then 3. public URLs, each over the sources in preference order
    let mut attempts: Vec<String> = Vec::new();
    let passes: [(&str, bool); 2] = [("mirror", true), ("public URL", false)];
    for (pass, mirrors_only) in passes {
        if mirrors_only && options.mirrors.is_empty() {
            continue;
        }
        for source in manifest.sources {
            if !mirrors_only && source.mirror_only() {
                continue;
            }
            let via = Pass {
                name: pass,
                mirrors: mirrors_only.then_some(options.mirrors.as_slice()),
            };
            if let Some((files, shas, fetched)) =
                fetch.transfer_source(source, &via, agent, &mut attempts)?
            {
                return fetch.record(source, files, shas, fetched, outcomes);
            }
        }
    }
    Err(Error::NoSourceWorked {
        dataset: manifest.name.to_string(),
        attempts: if attempts.is_empty() {
            "  (no source has a location to try)".into()
        } else {
            attempts.join("\n")
        },
    })
}

/// Where an archive came from in this run, how long it took and what it hashed to (None: a file
/// verified earlier).
type Fetched = Option<(String, f64, Digests)>;

/// One pass over the sources: through the mirrors (`Some`) or the public URLs (`None`).
struct Pass<'a> {
    name: &'a str,
    mirrors: Option<&'a [Mirror]>,
}

/// What fetching one named list of sources works with: its downloads folder and its lock file.
struct Fetch<'a> {
    manifest: &'a Named<'a>,
    downloads: PathBuf,
    lock: LockFile,
    lock_path: PathBuf,
}

impl Fetch<'_> {
    /// Where `source`'s archives go.
    fn files(&self, source: &Source) -> Vec<PathBuf> {
        (source.archives.iter())
            .map(|a| self.downloads.join(&a.file))
            .collect()
    }

    /// The SHA-256s of `source`'s `files` when every one carries a stamp of an earlier
    /// verification that still matches it (and the checksum expected).
    fn stamped(&self, source: &Source, files: &[PathBuf]) -> Option<Vec<String>> {
        let mut shas = Vec::new();
        for (archive, file) in source.archives.iter().zip(files) {
            let expected = expected_for(source, archive, &self.lock, &self.lock_path);
            match read_stamp(file) {
                Some(sha) if expected.sha256.as_deref().is_none_or(|e| e == sha) => shas.push(sha),
                _ => return None,
            }
        }
        Some(shas)
    }

    /// `--verify-only` with no source on disk: the first source's archives reported missing.
    fn nothing_to_verify(&self, outcomes: &mut Vec<ArchiveOutcome>) -> Error {
        let source = &self.manifest.sources[0];
        for archive in &source.archives {
            outcomes.push(ArchiveOutcome {
                dataset: self.manifest.name.to_string(),
                source: source.id.clone(),
                file: archive.file.clone(),
                size: 0,
                status: ArchiveStatus::Missing,
                pinned: false,
            });
        }
        Error::Store {
            path: self.downloads.clone(),
            dataset: self.manifest.name.to_string(),
            message: "no source's archives are all on disk, so nothing could be verified".into(),
        }
    }

    /// Every archive of `source` through `via` (an archive verified earlier is kept): the files,
    /// their SHA-256s and how each was got, or None when one archive could not be got (the
    /// attempts say why).
    #[allow(clippy::type_complexity)]
    fn transfer_source(
        &self,
        source: &Source,
        via: &Pass,
        agent: &ureq::Agent,
        attempts: &mut Vec<String>,
    ) -> Result<Option<(Vec<PathBuf>, Vec<String>, Vec<Fetched>)>> {
        let (mut files, mut shas, mut fetched) = (Vec::new(), Vec::new(), Vec::new());
        for archive in &source.archives {
            let dest = self.downloads.join(&archive.file);
            let expected = expected_for(source, archive, &self.lock, &self.lock_path);
            if let Some(sha) =
                read_stamp(&dest).filter(|s| expected.sha256.as_deref().is_none_or(|e| e == s))
            {
                files.push(dest);
                shas.push(sha);
                fetched.push(None);
                continue;
            }
            let locations: Vec<Location> = match via.mirrors {
                Some(mirrors) => (mirrors.iter())
                    .map(|m| m.locate(self.manifest.name, &archive.file))
                    .collect(),
                None => (archive.urls.iter())
                    .map(|u| Location::Http(u.clone()))
                    .collect(),
            };
            let Some((digests, from, seconds)) =
                first_that_transfers(agent, &locations, &dest, archive, &expected, |e| {
                    attempts.push(format!("  {} ({}): {e}", source.id, via.name))
                })
            else {
                if locations.is_empty() {
                    let pass = via.name;
                    attempts.push(format!("  {}: {} has no {pass}", source.id, archive.file));
                }
                return Ok(None);
            };
            write_stamp(&dest, &digests.sha256)?;
            files.push(dest);
            shas.push(digests.sha256.clone());
            fetched.push(Some((from, seconds, digests)));
        }
        Ok(Some((files, shas, fetched)))
    }

    /// `source` as the one fetched: each archive pinned in the lock file if it was not, and its
    /// outcome reported.
    fn record(
        &mut self,
        source: &Source,
        files: Vec<PathBuf>,
        shas: Vec<String>,
        fetched: Vec<Fetched>,
        outcomes: &mut Vec<ArchiveOutcome>,
    ) -> Result<FetchedSource> {
        for ((archive, file), (sha, fetched)) in source
            .archives
            .iter()
            .zip(&files)
            .zip(shas.iter().zip(fetched))
        {
            let (status, from) = match fetched {
                Some((from, seconds, _)) => (
                    ArchiveStatus::Fetched {
                        from: from.clone(),
                        seconds,
                    },
                    from,
                ),
                None => (
                    ArchiveStatus::AlreadyVerified,
                    "a file verified earlier".to_string(),
                ),
            };
            let pinned = pin_if_needed(
                self.manifest,
                source,
                archive,
                sha,
                file,
                &from,
                &mut self.lock,
                &self.lock_path,
            )?;
            outcomes.push(ArchiveOutcome {
                dataset: self.manifest.name.to_string(),
                source: source.id.clone(),
                file: archive.file.clone(),
                size: std::fs::metadata(file).map(|m| m.len()).unwrap_or(0),
                status,
                pinned,
            });
        }
        Ok(FetchedSource {
            source: source.clone(),
            files,
            sha256: shas,
        })
    }
}

/// The first of `locations` that transfers `archive` to `dest` and verifies: its digests, where it
/// came from and the seconds it took; each failure is handed to `failed` (a local mirror's missing
/// file too).
fn first_that_transfers(
    agent: &ureq::Agent,
    locations: &[Location],
    dest: &Path,
    archive: &Archive,
    expected: &Expected,
    mut failed: impl FnMut(String),
) -> Option<(Digests, String, f64)> {
    for location in locations {
        if let Location::Local(path) = location {
            if !path.is_file() {
                failed(format!("{} is not on this mirror", path.display()));
                continue;
            }
        }
        let started = Instant::now();
        match fetch_one(agent, location, dest, &archive.file, expected) {
            Ok(digests) => {
                let seconds = started.elapsed().as_secs_f64();
                return Some((digests, location.to_string(), seconds));
            }
            Err(e) => {
                tracing::warn!("{e}");
                failed(e.to_string());
            }
        }
    }
    None
}

/// Transfers one file to `<dest>.part`, verifies it, and renames it to `dest`; a file that fails
/// verification is removed.
fn fetch_one(
    agent: &ureq::Agent,
    location: &Location,
    dest: &Path,
    label: &str,
    expected: &Expected,
) -> Result<Digests> {
    let part = part_path(dest);
    let digests = transfer(agent, location, &part, label)?;
    if let Err(e) = expected.check(label, &location.to_string(), &digests) {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    std::fs::rename(&part, dest).map_err(|e| Error::io(dest, e))?;
    Ok(digests)
}

/// Published hashes from the manifest, or the SHA-256 pinned in the lock file.
fn expected_for(source: &Source, archive: &Archive, lock: &LockFile, lock_path: &Path) -> Expected {
    let locked = lock.find(&source.id, &archive.file);
    Expected {
        size: archive.size.or(locked.map(|l| l.size)),
        sha256: archive.sha256.clone().or(locked.map(|l| l.sha256.clone())),
        sha256_origin: if archive.sha256.is_some() {
            "manifest".into()
        } else {
            lock_path.display().to_string()
        },
        sha256_prefix: archive.sha256_prefix.clone(),
        md5: archive.md5.clone(),
    }
}

/// What the fetching code needs to know of a manifest.
struct Named<'a> {
    name: &'a str,
    sources: &'a [Source],
}

#[allow(clippy::too_many_arguments)]
fn pin_if_needed(
    manifest: &Named,
    source: &Source,
    archive: &Archive,
    sha256: &str,
    file: &Path,
    from: &str,
    lock: &mut LockFile,
    lock_path: &Path,
) -> Result<bool> {
    if archive.sha256.is_some() || lock.find(&source.id, &archive.file).is_some() {
        return Ok(false);
    }
    let checked = match (&archive.md5, &archive.sha256_prefix) {
        (Some(_), _) => "its published md5 matched",
        (None, Some(_)) => "its published SHA-256 prefix matched",
        (None, None) => "nothing was published to check it against",
    };
    lock.pin(
        lock_path,
        LockedArchive {
            source: source.id.clone(),
            file: archive.file.clone(),
            size: std::fs::metadata(file)
                .map_err(|e| Error::io(file, e))?
                .len(),
            sha256: sha256.to_string(),
            pinned_from: from.to_string(),
            pinned_at: utc_now(),
        },
    )?;
    tracing::warn!(
        "{}: no SHA-256 is published for {}; pinned {} in {} ({checked}); commit that file to check every later download",
        manifest.name,
        archive.file,
        sha256,
        lock_path.display()
    );
    Ok(true)
}

fn reverify(
    manifest: &Named,
    source: &Source,
    files: &[PathBuf],
    lock: &LockFile,
    lock_path: &Path,
    outcomes: &mut Vec<ArchiveOutcome>,
) -> Result<FetchedSource> {
    let mut shas = Vec::new();
    for (archive, file) in source.archives.iter().zip(files) {
        let started = Instant::now();
        let digests = hash_file(file).map_err(|e| Error::io(file, e))?;
        let expected = expected_for(source, archive, lock, lock_path);
        expected.check(&archive.file, &file.display().to_string(), &digests)?;
        write_stamp(file, &digests.sha256)?;
        outcomes.push(ArchiveOutcome {
            dataset: manifest.name.to_string(),
            source: source.id.clone(),
            file: archive.file.clone(),
            size: digests.size,
            status: ArchiveStatus::Reverified {
                seconds: started.elapsed().as_secs_f64(),
            },
            pinned: false,
        });
        shas.push(digests.sha256);
    }
    Ok(FetchedSource {
        source: source.clone(),
        files: files.to_vec(),
        sha256: shas,
    })
}
