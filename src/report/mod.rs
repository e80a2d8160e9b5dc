//! Reports of an experiment (plain Rust): the accuracy table with published numbers beside it, paired
//! comparisons on identical episodes, plots, and the provenance of every number.

pub mod accuracy_table;
pub mod consistency;
pub mod paired_section;
pub mod paired_tests;
pub mod plan_report;
pub mod plots;
pub mod provenance;
pub mod readme_block;
pub mod report_files;
pub mod run_results;
