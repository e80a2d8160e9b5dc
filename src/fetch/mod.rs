//! Verified downloads: locations and mirrors, resumable HTTP transfers into `.part` files, checksums,
//! and the per-dataset logic that walks a manifest's sources until one verifies.

pub mod checksum;
pub mod dataset_archives;
pub mod html_page;
pub mod location;
pub mod transfer;

pub use checksum::{hash_file, Digests, Expected};
pub use dataset_archives::{
    downloads_dir, fetch_dataset, fetch_sources, ArchiveOutcome, ArchiveStatus, FetchOptions,
    FetchedSource,
};
pub use location::{Location, Mirror};
pub use transfer::http_agent;

/// The HTTP client type the fetch functions take.
pub type HttpAgent = ureq::Agent;
