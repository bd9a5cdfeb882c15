//! The training process's sandbox, applied for real: a process confined the way a job's
//! training process confines itself cannot read the worker's token, named tokens, TLS key or
//! config file, another job's folder or the environment of the process that started it, nor
//! open a TCP connection; it still reads its manifest, the blobs and the system, moves a damaged
//! blob aside, and writes its run folder, the cache, its temporary folder and the devices.
//!
//! A confinement lasts for the rest of a process's life, so the confined part runs in a fresh
//! copy of this test binary (started with `--exact` and a variable naming the folder), which
//! prints one line per attempt for the test to check.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;

use easel_worker::training::sandbox::{self, Confinement, JobFolders, SandboxStatus};

const TEST_NAME: &str =
    "a_confined_training_process_reads_its_inputs_and_none_of_the_workers_secrets";
/// Set in the copy that confines itself: the folder the test laid out.
const PROBE_DIR: &str = "EASEL_SANDBOX_PROBE_DIR";
/// A port on loopback the test listens on, which the confined copy must not reach.
const PROBE_PORT: &str = "EASEL_SANDBOX_PROBE_PORT";

/// A worker's data directory with one job of ours and one of someone else's, and a config file
/// beside it.
struct Layout {
    root: PathBuf,
}

impl Layout {
    fn data(&self) -> PathBuf {
        self.root.join("data")
    }
    fn config(&self) -> PathBuf {
        self.root.join("worker.toml")
    }
    fn job(&self) -> PathBuf {
        self.data().join("jobs/mine")
    }
    fn blobs(&self) -> PathBuf {
        self.data().join("blobs")
    }
    fn blob(&self, content: &[u8]) -> PathBuf {
        easel_dataset::blob_path(&self.blobs(), &easel_digest::digest_bytes(content)).unwrap()
    }
    fn scratch(&self) -> PathBuf {
        self.root.join("scratch")
    }

    fn create(root: &Path) -> Layout {
        let layout = Layout {
            root: root.to_owned(),
        };
        let data = layout.data();
        write(&data.join("token"), b"admin-token\n");
        write(&data.join("tokens.json"), b"[]\n");
        write(&data.join("tls/key.pem"), b"-----BEGIN PRIVATE KEY-----\n");
        write(&data.join("jobs/theirs/manifest.json"), b"{}");
        write(&layout.job().join("manifest.json"), b"{}");
        std::fs::create_dir_all(layout.job().join("run")).unwrap();
        std::fs::create_dir_all(data.join("cache")).unwrap();
        write(&layout.blob(b"an image"), b"an image");
        write(&layout.blob(b"a torn image"), b"a torn image");
        write(&layout.config(), b"[store]\nurl = \"s3://bucket\"\n");
        write(&root.join("notes.txt"), b"beside the data directory");
        std::fs::create_dir_all(layout.scratch()).unwrap();
        layout
    }

    /// What the worker's runner gives a job's training process.
    fn confinement(&self) -> Confinement {
        let hidden = [self.data(), self.config()];
        let folders = JobFolders {
            job: &self.job(),
            run: &self.job().join("run"),
            cache: &self.data().join("cache"),
            blobs: &self.blobs(),
            dataset: None,
        };
        Confinement::for_job(&hidden, &folders, &self.scratch())
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_confined_training_process_reads_its_inputs_and_none_of_the_workers_secrets() {
    if let Some(dir) = std::env::var_os(PROBE_DIR) {
        return confined_attempts(&Layout {
            root: PathBuf::from(dir),
        });
    }
    let tmp = tempfile::tempdir().unwrap();
    Layout::create(tmp.path());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(PROBE_DIR, tmp.path())
        .env(
            PROBE_PORT,
            listener.local_addr().unwrap().port().to_string(),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let said = format!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the confined copy failed:\n{said}");
    let results: BTreeMap<&str, &str> = stdout
        .lines()
        // The harness prints its own words before the first line.
        .filter_map(|line| line.split_once("attempt ").map(|(_, rest)| rest))
        .filter_map(|line| line.split_once(" => "))
        .collect();
    assert!(
        stdout.contains("sandbox enforced"),
        "landlock is not in force on this kernel:\n{said}"
    );
    let expected = [
        ("read the admin token", "denied"),
        ("read the named tokens", "denied"),
        ("read the tls key", "denied"),
        ("read the worker's config", "denied"),
        ("list the data directory", "denied"),
        ("read another job's manifest", "denied"),
        ("write into its job folder", "denied"),
        ("read the parent's environment", "denied"),
        ("read the parent's open files", "denied"),
        ("connect over tcp", "denied"),
        ("read its manifest", "ok"),
        ("read a blob", "ok"),
        ("move a damaged blob aside", "ok"),
        ("write its run folder", "ok"),
        ("write the cache", "ok"),
        ("write its temporary folder", "ok"),
        ("read beside the data directory", "ok"),
        ("read the system", "ok"),
        ("write a device", "ok"),
    ];
    for (attempt, outcome) in expected {
        assert_eq!(
            results.get(attempt).copied(),
            Some(outcome),
            "{attempt}:\n{said}"
        );
    }
}

/// Runs in the copy: confines itself as a training process does, then tries each access.
fn confined_attempts(layout: &Layout) {
    let port: u16 = std::env::var(PROBE_PORT).unwrap().parse().unwrap();
    let status = sandbox::confine(&layout.confinement()).unwrap();
    let mut out = std::io::stdout().lock();
    let shown = match status {
        SandboxStatus::Enforced { .. } => "enforced",
        SandboxStatus::Partial { .. } => "partial",
        SandboxStatus::NotEnforced => "not enforced",
    };
    writeln!(out, "sandbox {shown}").unwrap();
    let data = layout.data();
    let parent = std::os::unix::process::parent_id();
    let torn = easel_digest::digest_bytes(b"a torn image");
    let attempts: Vec<(&str, std::io::Result<()>)> = vec![
        ("read the admin token", read(&data.join("token"))),
        ("read the named tokens", read(&data.join("tokens.json"))),
        ("read the tls key", read(&data.join("tls/key.pem"))),
        ("read the worker's config", read(&layout.config())),
        (
            "list the data directory",
            std::fs::read_dir(&data).map(drop),
        ),
        (
            "read another job's manifest",
            read(&data.join("jobs/theirs/manifest.json")),
        ),
        (
            "write into its job folder",
            std::fs::write(layout.job().join("spec.toml"), b"x"),
        ),
        (
            "read the parent's environment",
            read(Path::new(&format!("/proc/{parent}/environ"))),
        ),
        (
            "read the parent's open files",
            std::fs::read_dir(format!("/proc/{parent}/fd")).map(drop),
        ),
        (
            "connect over tcp",
            TcpStream::connect(("127.0.0.1", port)).map(drop),
        ),
        (
            "read its manifest",
            read(&layout.job().join("manifest.json")),
        ),
        ("read a blob", read(&layout.blob(b"an image"))),
        (
            "move a damaged blob aside",
            easel_dataset::quarantine_blob(&layout.blobs(), &torn)
                .map(drop)
                .map_err(std::io::Error::other),
        ),
        (
            "write its run folder",
            std::fs::write(layout.job().join("run/checkpoint.bin"), b"x"),
        ),
        (
            "write the cache",
            std::fs::write(data.join("cache/decoded.bin"), b"x"),
        ),
        (
            "write its temporary folder",
            std::fs::write(layout.scratch().join("scratch.bin"), b"x"),
        ),
        (
            "read beside the data directory",
            read(&layout.root.join("notes.txt")),
        ),
        ("read the system", read(Path::new("/proc/self/status"))),
        (
            "write a device",
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .map(drop),
        ),
    ];
    for (attempt, result) in attempts {
        let outcome = match result {
            Ok(()) => "ok".to_owned(),
            Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                "denied".to_owned()
            }
            Err(error) => format!("failed: {error}"),
        };
        writeln!(out, "attempt {attempt} => {outcome}").unwrap();
    }
}

fn read(path: &Path) -> std::io::Result<()> {
    std::fs::read(path).map(drop)
}
