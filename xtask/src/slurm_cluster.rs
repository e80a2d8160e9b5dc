//! A real one-node Slurm cluster for tests: Debian's `slurm-wlm` and `munge` daemons (`.ci/run`
//! installs them) started as this process's children in a temporary folder — `munged` with its own
//! key and socket, `slurmctld` and `slurmd` on two free loopback ports, one node with this machine's
//! CPUs, no accounting database — and stopped when the value is dropped. Clients find it through
//! `SLURM_CONF`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub struct Cluster {
    dir: tempfile::TempDir,
    daemons: Vec<Child>,
}

fn output(cmd: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("running {cmd}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Every daemon and client the cluster and its tests run, or an error naming the package.
fn check_installed() -> Result<()> {
    for program in [
        "munged",
        "slurmctld",
        "slurmd",
        "sbatch",
        "squeue",
        "scontrol",
        "sinfo",
    ] {
        if output("sh", &["-c", &format!("command -v {program}")])?.is_empty() {
            bail!(
                "{program} is not installed: apt-get install slurm-wlm munge (what .ci/run does)"
            );
        }
    }
    Ok(())
}

/// A munge key of 1,024 bytes (this cluster's own: the process id mixed in), readable by its owner only.
fn write_munge_key(key: &std::path::Path) -> Result<()> {
    let bytes: Vec<u8> = (0..1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 ^ std::process::id() as u8)
        .collect();
    std::fs::write(key, bytes)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o400))?;
    Ok(())
}

/// Polls `ready` (Ok(Ok(())) when ready, Ok(Err(why)) while not) until it is or `timeout` passes,
/// then fails with the last `why`.
fn wait_until(
    timeout: Duration,
    mut ready: impl FnMut() -> Result<std::result::Result<(), String>>,
) -> Result<()> {
    let t = Instant::now();
    loop {
        match ready()? {
            Ok(()) => return Ok(()),
            Err(why) if t.elapsed() > timeout => bail!(why),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// `slurm.conf` for one node (this host at 127.0.0.1, its CPUs and 90% of its memory) in the
/// cluster folder `p`: two free loopback ports, munge through the folder's socket, no accounting.
fn slurm_conf(p: &std::path::Path) -> Result<String> {
    let arg = |s: &str| p.join(s).display().to_string();
    let host = output("hostname", &["-s"])?;
    let user = output("id", &["-un"])?;
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .map(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        })
        .flatten()
        .map_or(4000, |kb| kb / 1024 * 9 / 10);
    let (ctld, slurmd) = (free_port()?, free_port()?);
    Ok(format!(
        "ClusterName=fewshot-test\nSlurmctldHost={host}(127.0.0.1)\nSlurmctldPort={ctld}\nSlurmdPort={slurmd}\n\
         AuthType=auth/munge\nAuthInfo=socket={socket}\nCredType=cred/munge\nSlurmUser={user}\nSlurmdUser={user}\n\
         StateSaveLocation={state}\nSlurmdSpoolDir={spool}\nSlurmctldPidFile={run}/slurmctld.pid\nSlurmdPidFile={run}/slurmd.pid\n\
         SlurmctldLogFile={log}/slurmctld.log\nSlurmdLogFile={log}/slurmd.log\nProctrackType=proctrack/linuxproc\n\
         TaskPlugin=task/none\nSelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\nSchedulerType=sched/backfill\n\
         MpiDefault=none\nReturnToService=2\nJobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n\
         JobCompType=jobcomp/none\nSchedulerParameters=defer_batch\nMinJobAge=600\n\
         NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN\n\
         PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
        socket = arg("run/munge.socket"),
        state = arg("state"),
        spool = arg("spool"),
        run = arg("run"),
        log = arg("log"),
    ))
}

impl Cluster {
    /// Starts the daemons and waits (up to a minute) until the node is idle.
    pub fn start() -> Result<Self> {
        check_installed()?;
        let dir = tempfile::Builder::new().prefix("slurm-").tempdir()?;
        let p = dir.path().to_path_buf();
        for sub in ["run", "log", "state", "spool"] {
            std::fs::create_dir_all(p.join(sub))?;
        }
        write_munge_key(&p.join("munge.key"))?;
        let mut cluster = Cluster {
            dir,
            daemons: Vec::new(),
        };
        let arg = |s: &str| p.join(s).display().to_string();
        cluster.spawn(
            "munged",
            &[
                "--foreground",
                "--force",
                "--key-file",
                &arg("munge.key"),
                "--socket",
                &arg("run/munge.socket"),
                "--pid-file",
                &arg("run/munged.pid"),
                "--log-file",
                &arg("log/munged.log"),
                "--seed-file",
                &arg("run/munge.seed"),
            ],
        )?;
        let socket = p.join("run/munge.socket");
        wait_until(Duration::from_secs(20), || {
            Ok(socket.exists().then_some(()).ok_or_else(|| {
                format!(
                    "munged did not create {} (log {})",
                    socket.display(),
                    arg("log/munged.log")
                )
            }))
        })?;
        std::fs::write(cluster.conf(), slurm_conf(&p)?)?;
        let conf = cluster.conf().display().to_string();
        cluster.spawn("slurmctld", &["-D", "-i", "-f", &conf])?;
        cluster.spawn("slurmd", &["-D", "-f", &conf])?;
        wait_until(Duration::from_secs(60), || {
            let state = Command::new("sinfo")
                .env("SLURM_CONF", &conf)
                .args(["-h", "-o", "%T"])
                .output()?;
            let state = String::from_utf8_lossy(&state.stdout).trim().to_string();
            Ok((state == "idle").then_some(()).ok_or_else(|| {
                format!(
                    "the node is `{state}`, not idle, after 60 s (logs in {})",
                    arg("log")
                )
            }))
        })?;
        Ok(cluster)
    }

    fn spawn(&mut self, program: &str, args: &[&str]) -> Result<()> {
        let log = std::fs::File::create(self.dir.path().join(format!("log/{program}.out")))?;
        let child = Command::new(program)
            .args(args)
            .env("SLURM_CONF", self.conf())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        self.daemons.push(child);
        Ok(())
    }

    /// The `slurm.conf` clients are to read (`SLURM_CONF`).
    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("slurm.conf")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // slurmd first (it kills its jobs' steps), then the controller, then munged
        for child in self.daemons.iter_mut().rev() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(10) && child.try_wait().ok().flatten().is_none()
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_ends_when_ready_or_fails_with_the_last_reason_after_the_timeout() {
        let mut polls = 0;
        wait_until(Duration::from_secs(5), || {
            polls += 1;
            Ok(if polls < 3 {
                Err("not yet".into())
            } else {
                Ok(())
            })
        })
        .unwrap();
        assert_eq!(polls, 3);
        let e = wait_until(Duration::from_millis(300), || {
            Ok(Err("still starting".into()))
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "still starting");
        // an error from the poll itself ends the wait at once
        let t = Instant::now();
        assert!(wait_until(Duration::from_secs(5), || bail!("sinfo failed")).is_err());
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn the_configuration_names_one_node_on_loopback_with_the_folder_s_paths() {
        let dir = tempfile::tempdir().unwrap();
        let conf = slurm_conf(dir.path()).unwrap();
        let socket = dir.path().join("run/munge.socket");
        assert!(conf.contains(&format!("AuthInfo=socket={}", socket.display())));
        assert!(
            conf.contains("NodeAddr=127.0.0.1")
                && conf.contains("AccountingStorageType=accounting_storage/none")
        );
        assert_eq!(
            conf.lines().filter(|l| l.starts_with("NodeName=")).count(),
            1
        );
    }
}
