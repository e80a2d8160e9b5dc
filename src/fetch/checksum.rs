//! Checksums: SHA-256 and MD5 computed together while bytes stream past, and the rule that decides
//! whether a finished file is the one the manifest (or its lock file) expects.

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::error::Error;

/// Hashes a stream with SHA-256 and MD5 at once.
#[derive(Clone, Default)]
pub struct StreamHasher {
    sha256: Sha256,
    md5: Md5,
    bytes: u64,
}

/// The digests of a finished stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Digests {
    pub sha256: String,
    pub md5: String,
    pub size: u64,
}

impl StreamHasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.sha256.update(data);
        self.md5.update(data);
        self.bytes += data.len() as u64;
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn finish(self) -> Digests {
        Digests {
            sha256: hex::encode(self.sha256.finalize()),
            md5: hex::encode(self.md5.finalize()),
            size: self.bytes,
        }
    }
}

/// What a file must hash to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expected {
    pub size: Option<u64>,
    /// Published, or pinned in the lock file.
    pub sha256: Option<String>,
    /// Where `sha256` comes from ("manifest" or the lock file's path), for messages.
    pub sha256_origin: String,
    pub sha256_prefix: Option<String>,
    pub md5: Option<String>,
}

impl Expected {
    /// Whether the SHA-256 is still to be pinned (no published or locked value).
    pub fn needs_pin(&self) -> bool {
        self.sha256.is_none()
    }

    /// Checks `got` for `file` fetched from `from`.
    pub fn check(&self, file: &str, from: &str, got: &Digests) -> Result<(), Error> {
        if let Some(size) = self.size {
            if size != got.size {
                return Err(Error::Size {
                    file: file.to_string(),
                    from: from.to_string(),
                    expected: size,
                    actual: got.size,
                });
            }
        }
        let mismatch = |algorithm, expected: &str, actual: &str| Error::Checksum {
            file: file.to_string(),
            from: from.to_string(),
            algorithm,
            expected: expected.to_string(),
            actual: actual.to_string(),
        };
        if let Some(sha) = &self.sha256 {
            if *sha != got.sha256 {
                return Err(mismatch("sha256", sha, &got.sha256));
            }
            return Ok(());
        }
        if let Some(prefix) = &self.sha256_prefix {
            if !got.sha256.starts_with(prefix.as_str()) {
                return Err(mismatch("sha256 prefix", prefix, &got.sha256));
            }
        }
        if let Some(md5) = &self.md5 {
            if *md5 != got.md5 {
                return Err(mismatch("md5", md5, &got.md5));
            }
        }
        Ok(())
    }
}

/// Hashes a whole file.
pub fn hash_file(path: &std::path::Path) -> std::io::Result<Digests> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = StreamHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digests_of(data: &[u8]) -> Digests {
        let mut h = StreamHasher::new();
        h.update(data);
        h.finish()
    }

    #[test]
    fn known_digests() {
        // Standard test vectors for "abc" (FIPS 180-2, RFC 1321).
        let d = digests_of(b"abc");
        assert_eq!(
            d.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.md5, "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn expected_prefers_sha256_then_prefix_and_md5() {
        let d = digests_of(b"abc");
        let ok = Expected {
            sha256: Some(d.sha256.clone()),
            md5: Some("0".repeat(32)), // ignored when a SHA-256 is known
            ..Default::default()
        };
        assert!(ok.check("f", "here", &d).is_ok());
        let bad_md5 = Expected {
            md5: Some("0".repeat(32)),
            ..Default::default()
        };
        let err = bad_md5.check("f", "here", &d).unwrap_err().to_string();
        assert!(
            err.contains("expected md5 000") && err.contains(&d.md5),
            "{err}"
        );
        let prefix = Expected {
            sha256_prefix: Some("ba7816bf".into()),
            ..Default::default()
        };
        assert!(prefix.check("f", "here", &d).is_ok());
        let size = Expected {
            size: Some(4),
            ..Default::default()
        };
        assert!(size
            .check("f", "here", &d)
            .unwrap_err()
            .to_string()
            .contains("expected 4 bytes"));
    }
}
