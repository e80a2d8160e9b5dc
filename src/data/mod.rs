//! Datasets after download: converters that prepare stores, the store format, and episodes.

pub mod archive_members;
pub mod prepare;
pub mod raw_image;
pub mod store;
