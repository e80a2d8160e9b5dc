//! Verified downloads.
