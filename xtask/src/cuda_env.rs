//! `cargo xtask cuda-env`: what the `cuda` feature needs to build (`nvcc`, the CUDA 13 libraries,
//! cuDNN 9), set up by the project. Where the system has a CUDA toolkit with cuDNN (a GPU user's
//! normal case) it says so and exports only the compute capability. Otherwise it installs the
//! pinned CUDA 13.0 toolkit and cuDNN wheels NVIDIA publishes on PyPI (`pip install --target`, no
//! GPU needed) into a project-local folder (`.cuda/13.0`, or `$FEWSHOT_CUDA_HOME`; CI keeps it
//! beside its build cache), lays them out as a `CUDA_ROOT` (bin/, include/, lib64/ with the
//! unversioned names the linker wants) and writes a link-time stub of `libcuda.so.1` from the
//! driver functions cudarc declares, so the build links on a machine without a driver. Prints the
//! environment as `export` lines on stdout (progress on stderr):
//!
//! ```text
//! eval "$(cargo xtask cuda-env)" && cargo build --release --features cuda
//! ```
//!
//! The stub is never loaded where a GPU is (the real `libcuda.so.1` is); `FEWSHOT_CUDA_LOCAL_LD_PATH`
//! lets a CUDA build start here on its CPU paths. Pins and layout follow the workplace script this
//! replaces (`cuda-build-env.sh`); the wheels are NVIDIA's (`nvidia-cuda-nvcc` etc. on pypi.org).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The wheels: CUDA 13.0 (nvcc 13.0.88 writes PTX ISA 9.0, which driver 580 loads) and the cuDNN 9
/// build PyTorch 2.9 (cu130) pins.
const PINS: [&str; 9] = [
    "nvidia-cuda-nvcc==13.0.88",
    "nvidia-cuda-crt==13.0.88",
    "nvidia-nvvm==13.0.88",
    "nvidia-cuda-runtime==13.0.96",
    "nvidia-cuda-nvrtc==13.0.88",
    "nvidia-cuda-cccl==13.0.85",
    "nvidia-cublas==13.0.2.14",
    "nvidia-curand==10.4.0.35",
    "nvidia-cudnn-cu13==9.13.0.50",
];

#[derive(clap::Args, Debug, Default)]
pub struct CudaEnvArgs {
    /// Where the wheels go (default: $FEWSHOT_CUDA_HOME, else .cuda/13.0 in the repository).
    #[arg(long)]
    pub home: Option<PathBuf>,
    /// Install the wheels even when the system has a CUDA toolkit.
    #[arg(long)]
    pub wheels: bool,
    /// The GPU's compute capability the kernels are built for (90: H100/H200).
    #[arg(long, default_value = "90")]
    pub compute_cap: String,
}

pub fn run(args: CudaEnvArgs) -> Result<()> {
    for (name, value) in setup(&args)? {
        println!("export {name}='{}'", value.replace('\'', r"'\''"));
    }
    Ok(())
}

/// Sets up what the `cuda` build needs and returns the environment to build with.
pub fn setup(args: &CudaEnvArgs) -> Result<Vec<(String, String)>> {
    let cap = ("CUDA_COMPUTE_CAP".to_string(), args.compute_cap.clone());
    if !args.wheels {
        if let Some(found) = system_toolkit() {
            eprintln!("cuda-env: using the system's CUDA toolkit ({found}); `--wheels` installs the pinned one instead");
            return Ok(vec![cap]);
        }
    }
    let root = crate::repo::root();
    let home = args
        .home
        .clone()
        .or_else(|| std::env::var_os("FEWSHOT_CUDA_HOME").map(PathBuf::from))
        .unwrap_or_else(|| root.join(".cuda/13.0"));
    let site = install_wheels(&home)?;
    let cuda_root = layout(&home, &site)?;
    let stubs = cuda_root.join("lib64/stubs");
    link_stub(&root, &stubs)?;
    let r = cuda_root.display().to_string();
    let lib64 = cuda_root.join("lib64").display().to_string();
    let path = format!("{r}/bin:{}", std::env::var("PATH").unwrap_or_default());
    let library = join_paths(&[&lib64, &stubs.display().to_string()], "LIBRARY_PATH");
    eprintln!(
        "cuda-env: CUDA_ROOT={r} (CUDA 13.0 and cuDNN 9.13 wheels, sm_{}, libcuda = link stub)",
        args.compute_cap
    );
    let mut env: Vec<(String, String)> = [
        "CUDA_ROOT",
        "CUDA_PATH",
        "CUDA_HOME",
        "CUDA_TOOLKIT_ROOT_DIR",
    ]
    .iter()
    .map(|v| (v.to_string(), r.clone()))
    .collect();
    env.extend([
        ("PATH".into(), path),
        ("NVCC".into(), format!("{r}/bin/nvcc")),
        cap,
        ("CUDARC_CUDA_VERSION".into(), "13000".into()),
        ("LIBRARY_PATH".into(), library),
        (
            "FEWSHOT_CUDA_LOCAL_LD_PATH".into(),
            format!("{lib64}:{}", stubs.display()),
        ),
    ]);
    Ok(env)
}

/// `nvcc` answering and cuDNN 9's header or library present: the system toolkit, described.
fn system_toolkit() -> Option<String> {
    let out = Command::new("nvcc").arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let release = text
        .lines()
        .find_map(|l| l.split("release ").nth(1))?
        .to_string();
    let cuda_home = std::env::var("CUDA_HOME").unwrap_or_else(|_| "/usr/local/cuda".into());
    let cudnn = [
        format!("{cuda_home}/include/cudnn_version.h"),
        "/usr/include/cudnn_version.h".into(),
        "/usr/include/x86_64-linux-gnu/cudnn_version.h".into(),
    ]
    .into_iter()
    .any(|p| Path::new(&p).is_file());
    cudnn.then(|| format!("nvcc release {release}, cuDNN header found"))
}

fn join_paths(first: &[&str], var: &str) -> String {
    let mut parts: Vec<String> = first.iter().map(|s| s.to_string()).collect();
    if let Ok(old) = std::env::var(var) {
        parts.extend(old.split(':').filter(|p| !p.is_empty()).map(String::from));
    }
    parts.dedup();
    parts.join(":")
}

/// pip-installs the pinned wheels into `home/site` unless they are there; returns that folder.
fn install_wheels(home: &Path) -> Result<PathBuf> {
    let site = home.join("site");
    let pins_file = home.join(".pins");
    let want = PINS.join("\n") + "\n";
    let done = std::fs::read_to_string(&pins_file).is_ok_and(|p| p == want)
        && site.join("nvidia/cu13/bin/nvcc").is_file();
    if done {
        return Ok(site);
    }
    std::fs::create_dir_all(home).with_context(|| format!("creating {}", home.display()))?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let tmp = home.join(format!("site.part.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    eprintln!(
        "cuda-env: installing the CUDA 13.0 and cuDNN 9 wheels into {} (~1 GB download, 1.6 GB on disk) ...",
        site.display()
    );
    let extra = std::env::var("FEWSHOT_PIP_ARGS").unwrap_or_default();
    let status = Command::new(&python)
        .args(["-m", "pip", "install", "--disable-pip-version-check"])
        .args([
            "--no-warn-script-location",
            "--no-deps",
            "--only-binary=:all:",
        ])
        .arg("--target")
        .arg(&tmp)
        .args(extra.split_whitespace())
        .args(PINS)
        .stdout(std::process::Stdio::null())
        .status()
        .with_context(|| {
            format!("running `{python} -m pip` (install python3-pip, or set PYTHON)")
        })?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        bail!("pip could not install the CUDA wheels into {} ({status}): it needs pypi.org, or FEWSHOT_PIP_ARGS='--no-index --find-links DIR' with the wheels in DIR", home.display());
    }
    let _ = std::fs::remove_dir_all(&site);
    let _ = std::fs::remove_dir_all(home.join("root"));
    std::fs::rename(&tmp, &site).with_context(|| format!("moving {} into place", tmp.display()))?;
    std::fs::write(&pins_file, want).with_context(|| format!("writing {}", pins_file.display()))?;
    Ok(site)
}

/// `home/root`: the wheel toolkit's folders linked in, and lib64/ with every wheel's libraries and
/// their unversioned names (`-lcublas` → libcublas.so), as candle-kernels' and cudarc's build
/// scripts look for them.
fn layout(home: &Path, site: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::symlink;
    let root = home.join("root");
    let lib64 = root.join("lib64");
    if !root.join(".ok").is_file() {
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(lib64.join("stubs"))?;
        let toolkit = site.join("nvidia/cu13");
        for entry in
            std::fs::read_dir(&toolkit).with_context(|| format!("reading {}", toolkit.display()))?
        {
            let entry = entry?;
            let name = entry.file_name();
            if name != "lib64" && !name.to_string_lossy().starts_with('.') {
                symlink(entry.path(), root.join(entry.file_name()))?;
            }
        }
        for package in std::fs::read_dir(site.join("nvidia"))? {
            let lib = package?.path().join("lib");
            let Ok(files) = std::fs::read_dir(&lib) else {
                continue;
            };
            for file in files {
                let file = file?;
                let name = file.file_name().to_string_lossy().to_string();
                if name.starts_with("lib") && name.contains(".so") && !lib64.join(&name).exists() {
                    symlink(file.path(), lib64.join(&name))?;
                }
            }
        }
        for file in std::fs::read_dir(&lib64)? {
            let name = file?.file_name().to_string_lossy().to_string();
            if let Some((base, _)) = name.split_once(".so.") {
                let plain = lib64.join(format!("{base}.so"));
                if !name.contains(".alt.so") && !plain.exists() {
                    symlink(&name, plain)?;
                }
            }
        }
        std::fs::write(root.join(".ok"), "")?;
    }
    for lib in ["cudart", "nvrtc", "cublas", "cublasLt", "curand", "cudnn"] {
        if !lib64.join(format!("lib{lib}.so")).exists() {
            bail!(
                "lib{lib}.so is missing in {}: delete {} and run `cargo xtask cuda-env` again",
                lib64.display(),
                home.display()
            );
        }
    }
    Ok(root)
}

/// The driver functions cudarc declares (`fn cu…(` inside `extern "C"` blocks of its
/// `src/driver/sys/mod.rs`), each defined in a stub that returns CUDA_ERROR_NO_DEVICE.
fn link_stub(repo: &Path, stubs: &Path) -> Result<()> {
    let status = crate::repo::cargo()
        .args(["fetch", "--quiet"])
        .current_dir(repo)
        .status()
        .context("running cargo fetch")?;
    if !status.success() {
        bail!("cargo fetch failed ({status}): the stub is made from cudarc's downloaded sources");
    }
    let bindings = cudarc_bindings(repo)?;
    let text = std::fs::read_to_string(&bindings)
        .with_context(|| format!("reading {}", bindings.display()))?;
    let symbols = driver_symbols(&text);
    if symbols.len() < 100 {
        bail!(
            "found only {} driver functions in {}: cudarc's layout changed",
            symbols.len(),
            bindings.display()
        );
    }
    let list = symbols.join("\n") + "\n";
    let library = stubs.join("libcuda.so.1");
    if library.is_file()
        && std::fs::read_to_string(stubs.join("cuda_syms.txt")).is_ok_and(|s| s == list)
    {
        return Ok(());
    }
    let source = stubs.join("libcuda_stub.c");
    let mut c = String::from("/* Link-time stub of libcuda.so.1 made by `cargo xtask cuda-env` from cudarc's bindings.\n   Never used where a GPU is. Every entry point returns CUDA_ERROR_NO_DEVICE (100). */\n");
    for s in &symbols {
        c.push_str(&format!("int {s}(void) {{ return 100; }}\n"));
    }
    std::fs::write(&source, c)?;
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-shared", "-fPIC", "-O0", "-o"])
        .arg(&library)
        .arg("-Wl,-soname,libcuda.so.1")
        .arg(&source)
        .status()
        .with_context(|| format!("running {cc} (install gcc, or set CC)"))?;
    if !status.success() {
        bail!(
            "compiling the libcuda link stub {} failed ({status})",
            source.display()
        );
    }
    let plain = stubs.join("libcuda.so");
    let _ = std::fs::remove_file(&plain);
    std::os::unix::fs::symlink("libcuda.so.1", plain)?;
    std::fs::write(stubs.join("cuda_syms.txt"), list)?;
    Ok(())
}

/// cudarc's driver bindings, located through `cargo metadata`.
fn cudarc_bindings(repo: &Path) -> Result<PathBuf> {
    let out = crate::repo::cargo()
        .args([
            "metadata",
            "--format-version",
            "1",
            "--features",
            "fewshot/cuda",
        ])
        .current_dir(repo)
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let packages = meta["packages"].as_array().cloned().unwrap_or_default();
    packages
        .iter()
        .filter(|p| p["name"] == "cudarc")
        .filter_map(|p| p["manifest_path"].as_str())
        .map(|m| Path::new(m).with_file_name("src/driver/sys/mod.rs"))
        .find(|p| p.is_file())
        .context("cudarc's sources are not in cargo's registry: the lockfile should name cudarc (the cuda feature)")
}

/// Every `cu…` function declared in an `extern "C"` block, sorted and once.
fn driver_symbols(bindings: &str) -> Vec<String> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in bindings.lines() {
        if line.contains("extern \"C\"") && line.trim_end().ends_with('{') {
            inside = true;
            continue;
        }
        if inside {
            if let Some(at) = line.find("fn cu") {
                let name: String = line[at + 3..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if line[at + 3 + name.len()..].starts_with('(') {
                    out.push(name);
                    inside = false;
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_symbols_are_the_functions_of_extern_blocks() {
        let text = "extern \"C\" {\n    pub fn cuInit(flags: u32) -> CUresult;\n}\npub fn cuNotExtern() {}\nextern \"C\" {\n    pub fn cuMemAlloc_v2(\n        p: *mut u64) -> CUresult;\n}\nextern \"C\" {\n    pub fn cuInit(flags: u32) -> CUresult;\n}\n";
        assert_eq!(driver_symbols(text), ["cuInit", "cuMemAlloc_v2"]);
    }
}
