//! `client up [user@]host[:port]`: from a rented machine reachable by SSH to a running TLS
//! worker the client is set up for, in six steps, each saying what it found or what to do.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use super::bundle::{self, Bundle};
use super::ssh::{Answer, Ssh};
use crate::config::{self, Profile};

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// The machine, as for ssh: `[user@]host[:port]` (aliases from ~/.ssh/config work).
    pub destination: String,
    /// Name of the worker profile to save (default: the host).
    #[arg(long)]
    pub name: Option<String>,
    /// TCP port the worker listens on, on all of the machine's addresses (TLS).
    #[arg(long, default_value_t = 50051)]
    pub port: u16,
    /// The worker bundle to install (default: dist/easel-worker-VERSION-linux-x86_64.tar.gz).
    #[arg(long, env = "EASEL_BUNDLE")]
    pub bundle: Option<PathBuf>,
    /// Easel's folder on the machine: the install, worker.toml and the data (jobs, token,
    /// certificate). As root, `~` is /var/lib/easel: with systemd the worker runs as the system
    /// user `easel` (made by the install), which root's home is closed to.
    #[arg(long, default_value = "~/.easel")]
    pub remote_dir: String,
    /// Host name or IP the client reaches the worker at, when not the one ssh connects to
    /// (e.g. ssh goes through a jump host).
    #[arg(long)]
    pub address: Option<String>,
    /// Run the worker as a supervised background process even where systemd runs.
    #[arg(long)]
    pub no_systemd: bool,
    /// The worker listens on the machine's loopback only; the client reaches it through an SSH
    /// port forward it opens itself for every connection (for machines whose firewall lets
    /// only SSH through).
    #[arg(long)]
    pub tunnel: bool,
    /// The machine is a Slurm cluster's login node: the worker submits each job to Slurm
    /// (`[executor] kind = "slurm"`), runs as your user in the background, and is reached
    /// through an SSH tunnel (implies --tunnel and --no-systemd).
    #[arg(long)]
    pub slurm: bool,
    /// With --slurm: the partition jobs go to (else the cluster's default).
    #[arg(long, requires = "slurm", default_value = "")]
    pub partition: String,
    /// With --slurm: the account jobs are charged to (else your default).
    #[arg(long, requires = "slurm", default_value = "")]
    pub account: String,
}

impl UpArgs {
    fn tunnelled(&self) -> bool {
        self.tunnel || self.slurm
    }

    /// The `start` verb's arguments after the folder: version, port, how to run it, the
    /// address it listens on and, on a Slurm login node, the executor.
    fn start_args(&self, version: &str) -> Vec<String> {
        let mode = if self.no_systemd || self.slurm {
            "background"
        } else {
            "auto"
        };
        let host = if self.tunnelled() {
            "127.0.0.1"
        } else {
            "0.0.0.0"
        };
        let mut args = vec![
            version.to_owned(),
            self.port.to_string(),
            mode.to_owned(),
            host.to_owned(),
        ];
        if self.slurm {
            args.extend([
                "slurm".to_owned(),
                self.partition.clone(),
                self.account.clone(),
            ]);
        }
        args
    }
}

const STEPS: usize = 6;

/// Prints `[n/6] name  …` and names the step in any error it ends with.
fn step<T>(
    number: usize,
    name: &str,
    work: impl FnOnce() -> anyhow::Result<(T, String)>,
) -> anyhow::Result<T> {
    match work() {
        Ok((value, line)) => {
            println!("[{number}/{STEPS}] {name:<7} {line}");
            Ok(value)
        }
        Err(error) => Err(error.context(format!(
            "client up stopped at step {number}/{STEPS} ({name})"
        ))),
    }
}

pub fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let ssh_program = std::env::var("EASEL_SSH").ok();
    let ssh = Ssh::new(&args.destination, ssh_program.as_deref())?;
    let name = match &args.name {
        Some(name) => name.clone(),
        None => default_name(&args.destination),
    };
    check_name(&name)?;
    let bundle = bundle::locate(args.bundle.as_deref())?;

    let probe = step(1, "check", || {
        let probe = ssh.run("probe", &[&args.remote_dir, &bundle.version], false)?;
        let mut line = check_machine(&probe, &bundle)?;
        if args.slurm {
            let slurm = probe.get("slurm").ok_or_else(|| {
                anyhow!("`sbatch` is not on the machine's PATH: --slurm needs a Slurm cluster's login node")
            })?;
            line.push_str(&format!("; {slurm}"));
        }
        Ok((probe, line))
    })?;
    let dir = probe
        .get("dir")
        .ok_or_else(|| anyhow!("the machine did not say where {} is", args.remote_dir))?
        .to_owned();

    step(2, "install", || install(&ssh, &probe, &bundle, &dir))?;

    let port = args.port.to_string();
    step(3, "start", || start(&ssh, &args, &dir, &bundle.version))?;

    let (token, fingerprint) = step(4, "trust", || {
        let trust = ssh.run("trust", &[&dir], false)?;
        let token = trust
            .get("token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| anyhow!("the machine sent no token"))?
            .to_owned();
        let fingerprint = trust.get("fingerprint").map(str::to_owned);
        let line = match &fingerprint {
            Some(fingerprint) => {
                format!("access token and TLS fingerprint {fingerprint} read over SSH")
            }
            None => format!(
                "access token read over SSH; the worker serves WITHOUT TLS ([tls] in {dir}/worker.toml)"
            ),
        };
        Ok(((token, fingerprint), line))
    })?;

    let scheme = if fingerprint.is_some() {
        "https"
    } else {
        "http"
    };
    let address = if args.tunnelled() {
        // As the machine sees it: the client's own SSH forward leads there.
        format!("{scheme}://127.0.0.1:{port}")
    } else {
        let host = match &args.address {
            Some(host) => host.clone(),
            None => ssh.hostname()?,
        };
        format!("{scheme}://{}:{port}", bracketed(&host))
    };
    step(5, "health", || {
        let trust = (token.as_str(), fingerprint.as_deref());
        let line = health(&ssh, &args, &dir, &address, trust)?;
        Ok(((), line))
    })?;

    let profile = Profile {
        address: address.clone(),
        token: Some(token),
        fingerprint,
        ssh: Some(args.destination.clone()),
        ssh_command: ssh.custom_program(),
        remote_dir: Some(dir.clone()),
        tunnel: args.tunnelled(),
    };
    step(6, "profile", || {
        let kept = config::save_profile(&name, &profile)?;
        let mut line = format!(
            "saved as worker `{name}` in {} (now the default)",
            config::config_path_text()
        );
        if let Some(kept) = kept {
            line.push_str(&format!(
                "; the worker configured there before is kept as `{kept}`"
            ));
        }
        Ok(((), line))
    })?;
    println!(
        "ready: `client submit experiment.toml` trains on {name}; `client down {name}` stops it"
    );
    Ok(ExitCode::SUCCESS)
}

/// Starts (or keeps) the worker on the machine; the step's line.
fn start(ssh: &Ssh, args: &UpArgs, dir: &str, version: &str) -> anyhow::Result<((), String)> {
    let mut start_args = vec![dir.to_owned()];
    start_args.extend(args.start_args(version));
    let start_args: Vec<&str> = start_args.iter().map(String::as_str).collect();
    let started = ssh.run("start", &start_args, true)?;
    let how = match started.get("service") {
        Some("systemd") => {
            "as the systemd service easel-worker.service, user easel (starts at boot)"
        }
        Some("systemd-user") => "as the user systemd service easel-worker.service (lingering on)",
        _ => "as a background process kept running by easel-worker-supervise (no systemd)",
    };
    let port = args.port;
    let executor = if args.slurm {
        ", submitting jobs to Slurm"
    } else {
        ""
    };
    let line = if started.get("started") == Some("no") {
        format!("already running {how}: kept it")
    } else if args.tunnelled() {
        format!("worker started {how}, listening on the machine's loopback port {port}{executor}")
    } else {
        format!("worker started {how}, listening on port {port}")
    };
    Ok(((), line))
}

/// The worker answering at `address`, reached directly, or through an SSH tunnel of the
/// client's own when it listens on the machine's loopback; `trust` is its token and
/// fingerprint.
fn health(
    ssh: &Ssh,
    args: &UpArgs,
    dir: &str,
    address: &str,
    trust: (&str, Option<&str>),
) -> anyhow::Result<String> {
    let (token, fingerprint) = trust;
    if !args.tunnelled() {
        return wait_for_health(ssh, dir, address, token, fingerprint);
    }
    let (scheme, remote) = address.split_once("://").unwrap_or(("https", address));
    let program = ssh.custom_program();
    let tunnel = super::tunnel::Tunnel::open(&args.destination, program.as_deref(), remote)?;
    let here = format!("{scheme}://{}", tunnel.local);
    let line = wait_for_health(ssh, dir, &here, token, fingerprint)?;
    Ok(format!(
        "{line}, through an SSH tunnel to {remote} on the machine"
    ))
}

/// The host part of `[user@]host[:port]`, as ssh's destination parsing finds it.
fn default_name(destination: &str) -> String {
    let host = super::ssh::parse_destination(destination)
        .map(|(host, _)| host)
        .unwrap_or_else(|_| destination.to_owned());
    let host = host.rsplit_once('@').map_or(host.as_str(), |(_, h)| h);
    host.replace(':', "-")
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let fine = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !fine {
        bail!("`{name}` cannot name a worker: use letters, digits, `-`, `_` and `.` (--name)");
    }
    Ok(())
}

fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

const GIB: f64 = (1u64 << 30) as f64;
/// PyTorch 2.11 with its CUDA libraries, installed by install.sh when the machine lacks it.
const PYTORCH_INSTALL_BYTES: u64 = 10 << 30;

/// One line about the machine, or why the worker cannot run there.
fn check_machine(probe: &Answer, bundle: &Bundle) -> anyhow::Result<String> {
    let os = probe.get("os").unwrap_or("?");
    let arch = probe.get("arch").unwrap_or("?");
    if os != "Linux" || arch != "x86_64" {
        bail!("the machine runs {os} on {arch}; the worker bundle is for Linux on x86_64");
    }
    let missing = probe.all("missing");
    if !missing.is_empty() {
        bail!(
            "the machine lacks {}: install them (e.g. `sudo apt-get install bash tar gzip coreutils util-linux python3-pip`)",
            missing.join(", ")
        );
    }
    let installed = probe.get("installed_sha256") == Some(bundle.sha256.as_str());
    let pytorch = probe
        .get("pytorch")
        .map(|v| v.split('+').next().unwrap_or(v));
    let mut needed = 0u64;
    if !installed {
        // The archive, its unpacked copy and room to spare.
        needed += bundle.bytes * 4;
        if pytorch != Some("2.11.0") {
            needed += PYTORCH_INSTALL_BYTES;
        }
    }
    let free = probe
        .get("disk_free_kb")
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024;
    if free < needed {
        bail!(
            "the install needs {:.1} GiB on the machine and {} has {:.1} GiB free: free some space, or pass --remote-dir on a larger disk",
            needed as f64 / GIB,
            probe.get("dir").unwrap_or("the Easel folder"),
            free as f64 / GIB
        );
    }
    let gpus = probe.all("gpu");
    let gpu_text = if gpus.is_empty() {
        format!(
            "no GPU ({}): the worker will train on CPU",
            probe.get("gpu_error").unwrap_or("none found")
        )
    } else {
        gpus.iter()
            .map(|gpu| gpu.split(',').map(str::trim).collect::<Vec<_>>())
            .map(|parts| match parts.as_slice() {
                [name, driver, memory] => format!("{name} (driver {driver}, {memory})"),
                _ => parts.join(" "),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let memory_gib = probe
        .get("memory_kb")
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
        * 1024.0
        / GIB;
    let pytorch_text = match pytorch {
        Some("2.11.0") => "PyTorch 2.11.0 there (reused)".to_owned(),
        Some(other) => format!("PyTorch {other} there (2.11.0 goes into the install)"),
        None => "no PyTorch (2.11.0 goes into the install)".to_owned(),
    };
    Ok(format!(
        "{}, {} CPUs, {memory_gib:.1} GiB memory, {:.1} GiB free; {gpu_text}; {pytorch_text}",
        probe.get("distro").unwrap_or("Linux x86_64"),
        probe.get("cpus").unwrap_or("?"),
        free as f64 / GIB,
    ))
}

/// Copies and installs the bundle unless the machine has exactly this one.
fn install(ssh: &Ssh, probe: &Answer, bundle: &Bundle, dir: &str) -> anyhow::Result<((), String)> {
    let folder = format!("{dir}/easel-worker-{}", bundle.version);
    if probe.get("installed_sha256") == Some(bundle.sha256.as_str()) {
        return Ok((
            (),
            format!(
                "easel-worker {} already installed in {folder}: reusing it",
                bundle.version
            ),
        ));
    }
    if probe.get("running").is_some() {
        // A worker running from the folder about to be replaced stops first (at a checkpoint).
        ssh.run("stop", &[dir], true)?;
    }
    let remote = format!("{dir}/.incoming/{}", bundle::file_name());
    let bar = indicatif::ProgressBar::new(bundle.bytes);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "copying {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    ssh.upload(&bundle.path, &remote, |sent| bar.set_position(sent))?;
    bar.finish_and_clear();
    let copied = started.elapsed();
    let installed = ssh
        .run("install", &[dir, &bundle.version, &bundle.sha256], true)
        .context("installing the bundle failed (install.sh's messages are above)")?;
    let folder = installed.get("installed").unwrap_or(&folder).to_owned();
    Ok((
        (),
        format!(
            "copied {} ({:.1} MB in {:.1} s) and installed it in {folder}",
            bundle::file_name(),
            bundle.bytes as f64 / 1e6,
            copied.as_secs_f64()
        ),
    ))
}

/// Says hello over the real channel (TLS, pinned fingerprint, token) until it answers.
fn wait_for_health(
    ssh: &Ssh,
    dir: &str,
    address: &str,
    token: &str,
    fingerprint: Option<&str>,
) -> anyhow::Result<String> {
    let worker = crate::remote::WorkerArgs {
        worker: Some(address.to_owned()),
        token: Some(token.to_owned()),
        fingerprint: fingerprint.map(str::to_owned),
        // No fingerprint: the worker serves plaintext, which beyond loopback it does only when
        // its worker.toml says `tls.allow_plaintext = true`, set by whoever runs `client up`.
        allow_plaintext: fingerprint.is_none(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let last_error = loop {
        match crate::remote::hello(&worker, Duration::from_secs(10)) {
            Ok(hello) => {
                let devices = if hello.devices.is_empty() {
                    "auto".to_owned()
                } else {
                    hello.devices.join(", ")
                };
                return Ok(format!(
                    "worker {} answers at {address} (devices {devices}; libtorch {}, CUDA {})",
                    hello.worker_version,
                    hello.libtorch_version,
                    if hello.cuda_available { "yes" } else { "no" }
                ));
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(500)),
            Err(error) => break error,
        }
    };
    let status = ssh.run("status", &[dir], false)?;
    if status.get("running").is_none() {
        let log = status.all("log").join("\n  ");
        return Err(anyhow!(
            "the worker stopped on the machine; the end of its log ({dir}/data/worker.log):\n  {log}"
        ));
    }
    let port = address.rsplit(':').next().unwrap_or("50051");
    Err(last_error.context(format!(
        "the worker runs on {} but {address} does not answer from here: open TCP port {port} to this machine in its firewall or the provider's security group, or pass --address HOST if the machine is reached by another name",
        ssh.shown
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names_come_from_the_host() {
        assert_eq!(default_name("ubuntu@gpu-1:2222"), "gpu-1");
        assert_eq!(default_name("203.0.113.7"), "203.0.113.7");
        assert_eq!(default_name("root@[::1]:22"), "--1");
        assert!(check_name("gpu-1").is_ok());
        assert!(check_name("a b").is_err());
        assert!(check_name("").is_err());
    }
}
