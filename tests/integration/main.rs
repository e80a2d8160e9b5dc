//! The integration tests: one binary, one module per area. Fixture archives are built by the tests in
//! each real format; downloads go to a loopback HTTP server; the real-data tests read the dataset
//! mirror (FEWSHOT_MIRROR, else ../shared/datasets) and fail, not skip, when it is missing.

mod converters;
mod fetch;
mod fixture_archives;
mod heads;
mod loopback_server;
mod real_data;
mod torch_checkpoints;
mod toy_manifest;
