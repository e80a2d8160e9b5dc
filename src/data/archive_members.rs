//! Reading the members of a downloaded archive without unpacking it to disk: tar (plain or gzipped,
//! detected by magic bytes), zip, or a plain file that is itself the member (a `.pkl`, say).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::error::{Error, Result};

/// The kind of container a file is, by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Container {
    TarGz,
    Tar,
    Zip,
    Plain,
}

pub fn container_of(path: &Path) -> Result<Container> {
    let mut head = [0u8; 512];
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut n = 0;
    while n < head.len() {
        let got = file.read(&mut head[n..]).map_err(|e| Error::io(path, e))?;
        if got == 0 {
            break;
        }
        n += got;
    }
    Ok(if n >= 2 && head[..2] == [0x1f, 0x8b] {
        Container::TarGz
    } else if n >= 4 && head[..4] == *b"PK\x03\x04" {
        Container::Zip
    } else if n >= 262 && &head[257..262] == b"ustar" {
        Container::Tar
    } else {
        Container::Plain
    })
}

/// A member's bytes (`size` reserved), or the message of why they could not be read.
fn read_bytes(
    member: &mut impl Read,
    size: u64,
    name: &str,
    what: &str,
) -> std::result::Result<Vec<u8>, String> {
    let mut bytes = Vec::with_capacity(size as usize);
    member
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{name}: {what}{e}"))?;
    Ok(bytes)
}

/// Calls `visit(member path, bytes)` for every regular file in the archive, in archive order. A
/// plain file is visited once, under its own file name.
pub fn for_each_member(
    path: &Path,
    visit: &mut dyn FnMut(&str, Vec<u8>) -> Result<()>,
) -> Result<()> {
    let bad = |message: String| Error::Archive {
        path: path.to_path_buf(),
        message,
    };
    match container_of(path)? {
        Container::TarGz | Container::Tar => {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            let reader: Box<dyn Read> = if container_of(path)? == Container::TarGz {
                Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
                    1 << 20,
                    file,
                )))
            } else {
                Box::new(BufReader::with_capacity(1 << 20, file))
            };
            let mut archive = tar::Archive::new(reader);
            for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
                let mut entry = entry.map_err(|e| bad(format!("corrupt tar stream: {e}")))?;
                if !entry.header().entry_type().is_file() {
                    continue;
                }
                let name = entry
                    .path()
                    .map_err(|e| bad(e.to_string()))?
                    .to_string_lossy()
                    .into_owned();
                let size = entry.size();
                let bytes =
                    read_bytes(&mut entry, size, &name, "truncated member: ").map_err(bad)?;
                visit(&name, bytes)?;
            }
            Ok(())
        }
        Container::Zip => {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            let mut archive =
                zip::ZipArchive::new(BufReader::new(file)).map_err(|e| bad(e.to_string()))?;
            for i in 0..archive.len() {
                let mut member = archive.by_index(i).map_err(|e| bad(e.to_string()))?;
                if !member.is_file() {
                    continue;
                }
                let name = member.name().to_string();
                let size = member.size();
                let bytes = read_bytes(&mut member, size, &name, "").map_err(bad)?;
                visit(&name, bytes)?;
            }
            Ok(())
        }
        Container::Plain => {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            visit(&name, bytes)
        }
    }
}

/// The bytes of the member whose file name is `wanted`, searched through `archives` (an archive
/// that *is* that file counts).
pub fn read_member(archives: &[std::path::PathBuf], wanted: &str) -> Result<Vec<u8>> {
    for archive in archives {
        if archive.file_name().is_some_and(|n| n == wanted)
            && container_of(archive)? == Container::Plain
        {
            return std::fs::read(archive).map_err(|e| Error::io(archive, e));
        }
    }
    for archive in archives {
        if container_of(archive)? == Container::Plain {
            continue;
        }
        let mut found = None;
        for_each_member(archive, &mut |name, bytes| {
            if found.is_none() && basename(name) == wanted {
                found = Some(bytes);
            }
            Ok(())
        })?;
        if let Some(bytes) = found {
            return Ok(bytes);
        }
    }
    Err(Error::Archive {
        path: archives.first().cloned().unwrap_or_default(),
        message: format!("no member named {wanted:?} in the source's archives"),
    })
}

/// The last component of a member path.
pub fn basename(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}
