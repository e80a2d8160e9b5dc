//! The integration tests: one binary, one module per area. Fixture archives are built by the tests in
//! each real format; downloads go to a loopback HTTP server; the real-data tests read the dataset
//! mirror (FEWSHOT_MIRROR, else ../shared/datasets) and fail, not skip, when it is missing.

mod accuracy_gate;
mod backbones;
mod converters;
mod cpu_conv4_results;
mod evaluation_routes;
mod fetch;
mod fixture_archives;
mod heads;
mod killed_processes;
mod learning;
mod loopback_server;
mod pixels;
mod real_data;
mod tidy;
mod torch_checkpoints;
mod toy_manifest;

// as in the `fewshot` binary: candle's CPU kernels churn large allocations
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
