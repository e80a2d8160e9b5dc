//! Datasets after preparation.
