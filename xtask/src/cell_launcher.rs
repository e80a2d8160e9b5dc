//! `cargo xtask cell train|eval --config <cell.toml> --device cpu|cuda[:N]`: builds the release
//! `fewshot` binary (with the `cuda` feature for a CUDA device), checks that every shared library it
//! needs resolves (a CUDA build links cuBLAS, cuRAND, cuDNN and the driver at load time and cannot even
//! start without them), then runs it. `reproduce` launches its cells the same way.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use crate::repo;

#[derive(Clone, Copy, ValueEnum)]
pub enum Action {
    Train,
    Eval,
}

#[derive(Args)]
pub struct CellArgs {
    action: Action,
    /// The cell config (a TOML under manifests/cells/).
    #[arg(long)]
    config: PathBuf,
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Run this binary instead of building one (e.g. a CUDA build made aside).
    #[arg(long)]
    binary: Option<PathBuf>,
}

pub fn run(args: CellArgs) -> Result<()> {
    let cuda = args.device.starts_with("cuda");
    if cuda {
        cuda_ready(&probe_cuda(), args.binary.is_some(), "this cell")?;
    }
    let binary = match args.binary {
        Some(b) => b,
        None => build_fewshot(true, cuda)?,
    };
    check_libraries(&binary)?;
    let action = match args.action {
        Action::Train => "train",
        Action::Eval => "eval",
    };
    let status = Command::new(&binary)
        .arg(action)
        .arg("--config")
        .arg(&args.config)
        .arg("--device")
        .arg(&args.device)
        .current_dir(repo::root())
        .status()
        .with_context(|| format!("starting {}", binary.display()))?;
    if !status.success() {
        bail!("{} {action} failed ({status})", binary.display());
    }
    Ok(())
}

/// What this machine offers a CUDA run: GPUs that `nvidia-smi -L` lists, and whether `nvcc` (the
/// toolkit the `cuda` feature's build needs) answers.
#[derive(Debug, Clone, PartialEq)]
pub struct CudaProbe {
    pub gpus: usize,
    pub nvcc: bool,
}

pub fn probe_cuda() -> CudaProbe {
    let answers = |program: &str, arg: &str| {
        Command::new(program)
            .arg(arg)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    CudaProbe {
        gpus: answers("nvidia-smi", "-L")
            .map(|out| out.lines().filter(|l| l.starts_with("GPU ")).count())
            .unwrap_or(0),
        nvcc: answers("nvcc", "--version").is_some(),
    }
}

/// Refuses a CUDA run up front, before anything is fetched or built, when this machine has no GPU
/// or (unless a prebuilt binary is given) no CUDA toolkit; the message says what runs here instead.
pub fn cuda_ready(probe: &CudaProbe, prebuilt: bool, what: &str) -> Result<()> {
    if probe.gpus == 0 {
        bail!(
            "{what} runs on CUDA, but this machine has no NVIDIA GPU (`nvidia-smi -L` lists none); on the CPU run `cargo xtask reproduce --table 1 --profile cpu-conv4` (Conv-4 on miniImageNet, 8 hours or more on 2 cores) or `--profile smoke` (minutes), or pass --device cpu"
        );
    }
    if !probe.nvcc && !prebuilt {
        bail!(
            "{what} runs on CUDA, but `nvcc` does not answer: the `cuda` build needs the CUDA 13 toolkit and cuDNN 9 (`eval \"$(cargo xtask cuda-env)\"` sets them up), or pass --binary with a fewshot built with --features cuda"
        );
    }
    Ok(())
}

/// `cargo build [--release] --bin fewshot [--features cuda]`; returns the binary's path as cargo
/// reports it (so `CARGO_TARGET_DIR` and `build.target-dir` are honoured). The dev build is what
/// `cargo test` already built (CI's gate uses it); CUDA runs need the release build.
pub fn build_fewshot(release: bool, cuda: bool) -> Result<PathBuf> {
    if cuda && !release {
        bail!("a CUDA run needs the release build with the cuda feature, not the dev build");
    }
    let mut cmd = crate::repo::cargo();
    cmd.args([
        "build",
        "--bin",
        "fewshot",
        "--message-format=json-render-diagnostics",
    ])
    .current_dir(repo::root())
    .stderr(std::process::Stdio::inherit());
    if release {
        cmd.arg("--release");
    }
    if cuda {
        cmd.args(["--features", "cuda"]);
    }
    let output = cmd.output().context("running cargo build")?;
    if !output.status.success() {
        let hint = if cuda {
            " (a CUDA build needs the CUDA 13 toolkit's nvcc and cuDNN 9 on PATH and LD_LIBRARY_PATH; README, Set-up)"
        } else {
            ""
        };
        bail!("building the fewshot binary failed{hint}");
    }
    fewshot_executable(&String::from_utf8_lossy(&output.stdout))
        .context("cargo build succeeded but named no fewshot executable in its JSON messages")
}

/// The `fewshot` executable among cargo's JSON build messages (`compiler-artifact` lines).
fn fewshot_executable(messages: &str) -> Option<PathBuf> {
    messages
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "fewshot")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

/// One `fewshot train|eval` invocation for a cell, as `regress` and `reproduce` launch it: the
/// folders are explicit, the output is appended to a log.
pub struct CellCommand<'a> {
    pub binary: &'a Path,
    pub config: &'a Path,
    pub device: &'a str,
    pub data_dir: &'a Path,
    pub runs: &'a Path,
    /// Arguments after the common ones (e.g. `--checkpoint FILE`, `--sabotage NAME`).
    pub extra: Vec<std::ffi::OsString>,
    /// Environment set for the child (e.g. a slot's `CUDA_VISIBLE_DEVICES`).
    pub env: Vec<(String, String)>,
}

impl<'a> CellCommand<'a> {
    /// The command for one cell's config, with no extra arguments.
    pub fn new(
        binary: &'a Path,
        config: &'a Path,
        device: &'a str,
        data_dir: &'a Path,
        runs: &'a Path,
    ) -> Self {
        Self {
            binary,
            config,
            device,
            data_dir,
            runs,
            extra: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Runs `fewshot <action>` with stdout and stderr appended to `log`; an error on a non-zero exit.
    pub fn run(&self, action: &str, log: &Path) -> Result<()> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| log.display().to_string())?;
        let status = Command::new(self.binary)
            .arg(action)
            .arg("--config")
            .arg(self.config)
            .arg("--device")
            .arg(self.device)
            .arg("--data-dir")
            .arg(self.data_dir)
            .arg("--manifests")
            .arg(repo::manifests())
            .arg("--runs")
            .arg(self.runs)
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::from(file.try_clone()?))
            .stderr(std::process::Stdio::from(file))
            .status()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        if !status.success() {
            bail!("fewshot {action} exited with {status}");
        }
        Ok(())
    }
}

/// Fails, naming each library, when `ldd` reports shared libraries of `binary` that do not resolve.
pub fn check_libraries(binary: &Path) -> Result<()> {
    if !binary.is_file() {
        bail!("{} does not exist", binary.display());
    }
    let Ok(out) = Command::new("ldd").arg(binary).output() else {
        return Ok(()); // no ldd (not Linux/glibc): let the loader speak for itself
    };
    let missing = missing_libraries(&String::from_utf8_lossy(&out.stdout));
    if !missing.is_empty() {
        bail!(
            "{} cannot start: these shared libraries do not resolve: {}. A CUDA build needs them at load time; add the folders that hold them to LD_LIBRARY_PATH (on the GPU machine: `source gpu-env.sh`; here, for CPU paths only: LD_LIBRARY_PATH=$FEWSHOT_CUDA_LOCAL_LD_PATH from `cargo xtask cuda-env`)",
            binary.display(),
            missing.join(", ")
        );
    }
    Ok(())
}

/// Library names from `ldd` lines of the form `libcublas.so.13 => not found`.
fn missing_libraries(ldd: &str) -> Vec<String> {
    ldd.lines()
        .filter(|l| l.contains("=> not found"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cuda_run_without_a_gpu_or_toolkit_is_refused_with_what_runs_here() {
        let none = CudaProbe {
            gpus: 0,
            nvcc: false,
        };
        let err = cuda_ready(&none, false, "profile full")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no NVIDIA GPU")
                && err.contains("--profile cpu-conv4")
                && err.contains("--device cpu"),
            "{err}"
        );
        let no_toolkit = CudaProbe {
            gpus: 1,
            nvcc: false,
        };
        assert!(cuda_ready(&no_toolkit, false, "x")
            .unwrap_err()
            .to_string()
            .contains("nvcc"));
        cuda_ready(&no_toolkit, true, "x").unwrap();
        cuda_ready(
            &CudaProbe {
                gpus: 1,
                nvcc: true,
            },
            false,
            "x",
        )
        .unwrap();
    }

    #[test]
    fn the_binary_is_where_cargo_says_it_put_it() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","target":{"name":"fewshot","kind":["lib"]},"executable":null}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"name":"fewshot","kind":["bin"]},"executable":"/elsewhere/target/release/fewshot"}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
            "\n"
        );
        assert_eq!(
            fewshot_executable(messages),
            Some(PathBuf::from("/elsewhere/target/release/fewshot"))
        );
        assert_eq!(fewshot_executable("not json\n"), None);
    }

    #[test]
    fn names_the_libraries_ldd_cannot_find() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibcublas.so.13 => not found\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f)\n\tlibcudnn.so.9 => not found\n";
        assert_eq!(
            missing_libraries(ldd),
            vec!["libcublas.so.13", "libcudnn.so.9"]
        );
        assert!(missing_libraries("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n").is_empty());
    }

    #[test]
    fn a_cpu_binary_passes_and_a_missing_one_is_named() {
        // this test binary itself links only system libraries
        let me = std::env::current_exe().unwrap();
        check_libraries(&me).unwrap();
        let err = check_libraries(Path::new("/nonexistent/fewshot"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/fewshot does not exist"));
    }
}
