//! End-to-end test support: the real `worker` and `client` binaries, started on loopback with
//! temporary data directories and a small copy of the sample dataset.

pub mod s3;
pub mod sshd;

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

pub use easel_test_support::{HANG_GUARD, eventually, eventually_within};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_owned()
}

/// `target/debug` (or wherever this test binary was built).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_owned()
}

static BUILD: Once = Once::new();

/// Between two looks that each start the client (a process start).
pub const CLIENT_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Path of a workspace binary, built once per test process so the tests never run stale ones
/// (`EASEL_E2E_PREBUILT=1` skips the build when a script has just built them).
pub fn binary(name: &str) -> PathBuf {
    BUILD.call_once(|| {
        if std::env::var_os("EASEL_E2E_PREBUILT").is_some() {
            return;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = Command::new(cargo);
        command
            .args([
                "build",
                "--quiet",
                "-p",
                "easel-worker",
                "-p",
                "easel-client",
            ])
            .current_dir(repo_root());
        if target_dir().file_name().is_some_and(|n| n == "release") {
            command.arg("--release");
        }
        let status = command.status().expect("cargo build runs");
        assert!(status.success(), "building the worker and client failed");
    });
    let path = target_dir().join(name);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// A copy of `per_class` images of each class of the sample dataset (built by
/// deploy/sample-data.sh), so tests train in seconds.
pub fn sample_subset(dest: &Path, per_class: usize) -> PathBuf {
    let source = easel_test_support::sample_dataset();
    let root = dest.join("mnist-subset");
    let mut classes: Vec<PathBuf> = std::fs::read_dir(&source)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    classes.retain(|p| p.is_dir());
    classes.sort();
    for class in classes {
        let target = root.join(class.file_name().unwrap());
        std::fs::create_dir_all(&target).unwrap();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&class)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files.into_iter().take(per_class) {
            std::fs::copy(&file, target.join(file.file_name().unwrap())).unwrap();
        }
    }
    root
}

/// Splits a sample subset into explicit train/validation/test folders (per class: the first
/// `train`, the next `validation`, the next `test` images), so a reported test accuracy can be
/// checked by evaluating the test folder alone.
pub fn sample_splits(dest: &Path, train: usize, validation: usize, test: usize) -> [PathBuf; 3] {
    let all = sample_subset(dest, train + validation + test);
    let roots = [
        dest.join("train"),
        dest.join("validation"),
        dest.join("test"),
    ];
    for class in std::fs::read_dir(&all).unwrap().map(|e| e.unwrap().path()) {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&class)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let counts = [train, validation, test];
        let mut files = files.into_iter();
        for (root, count) in roots.iter().zip(counts) {
            let target = root.join(class.file_name().unwrap());
            std::fs::create_dir_all(&target).unwrap();
            for file in files.by_ref().take(count) {
                std::fs::copy(&file, target.join(file.file_name().unwrap())).unwrap();
            }
        }
    }
    roots
}

/// A small CPU spec with explicit train/validation/test roots.
pub fn write_split_spec(dir: &Path, name: &str, roots: &[PathBuf; 3], epochs: u32) -> PathBuf {
    let path = write_spec(dir, name, &roots[0], epochs);
    let text = std::fs::read_to_string(&path).unwrap();
    let data = format!(
        "[data]\ntrain = \"{}\"\nvalidation = \"{}\"\ntest = \"{}\"\nimage_size = 28\n",
        roots[0].display(),
        roots[1].display(),
        roots[2].display()
    );
    let start = text.find("[data]").unwrap();
    let end = text.find("[model]").unwrap();
    std::fs::write(&path, format!("{}{data}\n{}", &text[..start], &text[end..])).unwrap();
    path
}

/// A small CPU spec over `data`.
pub fn write_spec(dir: &Path, name: &str, data: &Path, epochs: u32) -> PathBuf {
    let text = format!(
        r#"name = "{name}"

[data]
path = "{}"
validation_split = 0.2
test_split = 0.2
image_size = 28

[model]
architecture = "small_cnn"

[train]
epochs = {epochs}
batch_size = 32
optimizer = "adam"
learning_rate = 0.002
precision = "fp32"

[augment]
flip = false

[local]
steps = 4
image_size = 28
max_images = 40
batch_size = 8
"#,
        data.display()
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

pub struct Worker {
    child: Option<Child>,
    pub address: String,
    pub token: String,
    /// The pinned TLS certificate fingerprint when the worker serves TLS (`EASEL_TLS=on`).
    pub fingerprint: Option<String>,
    pub data_dir: PathBuf,
    /// Everything the worker printed, for failure messages.
    pub log: PathBuf,
}

impl Worker {
    /// Starts the real worker on 127.0.0.1:0 with `data_dir` and a local artifact store.
    pub fn start(data_dir: &Path) -> Worker {
        Self::start_with(data_dir, &[])
    }

    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Worker {
        Self::start_with_env(data_dir, extra, &[])
    }

    /// Like `start_with`, with extra environment variables (object store credentials, ...).
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Worker {
        Self::start_program(&binary("worker"), data_dir, extra, env)
    }

    /// Like `start_with_env`, running `program` (e.g. an installed bundle's launcher).
    pub fn start_program(
        program: &Path,
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Worker {
        std::fs::create_dir_all(data_dir).unwrap();
        let log = data_dir.with_extension("log");
        let mut child = Command::new(program)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("EASEL_LOG", "info")
            .env("EASEL_DEVICES", "cpu")
            // Plaintext on loopback unless a test asks for TLS (tests/tests/tls.rs does).
            .env("EASEL_TLS", "off")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("worker starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log_path = log.clone();
        std::thread::spawn(move || {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log_path)
                .unwrap();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                if let Some(address) = line.strip_prefix("worker: listening on ") {
                    let _ = tx.send(address.trim().to_owned());
                }
            }
        });
        let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
        // The channel also ends when the worker exits before listening: no need to wait longer.
        let address = rx
            .recv_timeout(HANG_GUARD)
            .unwrap_or_else(|_| panic!("the worker did not start; its log:\n{}", log_text()));
        // The token file appears right after the listening line; wait for it to be complete.
        let complete_line = |path: &Path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            text.ends_with('\n').then(|| text.trim().to_owned())
        };
        let token = eventually(
            || complete_line(&data_dir.join("token")),
            || format!("no token file; worker log:\n{}", log_text()),
        );
        let tls = env
            .iter()
            .any(|(key, value)| *key == "EASEL_TLS" && *value == "on");
        // The fingerprint file follows the token file.
        let fingerprint = tls.then(|| {
            eventually(
                || complete_line(&data_dir.join("tls/fingerprint")),
                || format!("no TLS fingerprint; worker log:\n{}", log_text()),
            )
        });
        let scheme = if tls { "https" } else { "http" };
        Worker {
            child: Some(child),
            address: format!("{scheme}://{address}"),
            token,
            fingerprint,
            data_dir: data_dir.to_owned(),
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The worker's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The processes the worker started that still run (its jobs' training processes).
    pub fn children(&self) -> Vec<u32> {
        let Some(pid) = self.pid() else {
            return Vec::new();
        };
        let mut children = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            // `pid (name) state ppid …`: the name may hold spaces, so read after its `)`.
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let parent = after_name.split_whitespace().nth(1);
            if parent == Some(pid.to_string().as_str())
                && let Ok(child) = entry.file_name().to_string_lossy().parse()
            {
                children.push(child);
            }
        }
        children
    }

    /// SIGKILL: a crash, with no chance to checkpoint or save state.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(&mut self) {
        let Some(child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let stopping = Instant::now();
        let child = RefCell::new(child);
        let status = eventually(
            || child.borrow_mut().try_wait().unwrap(),
            || {
                // Killed before the panic, so a worker that ignores SIGTERM does not outlive
                // the test.
                let _ = child.borrow_mut().kill();
                format!(
                    "the worker never stopped after SIGTERM; log:\n{}",
                    self.log_text()
                )
            },
        );
        eprintln!(
            "the worker stopped {:.1} s after SIGTERM",
            stopping.elapsed().as_secs_f64()
        );
        assert!(
            status.success(),
            "worker exited with {status}; log:\n{}",
            self.log_text()
        );
    }

    /// Runs the real client against this worker, with a private HOME (config and watch cursors).
    pub fn client(&self, home: &Path, args: &[&str]) -> Output {
        let mut env = vec![
            ("EASEL_WORKER", self.address.as_str()),
            ("EASEL_TOKEN", self.token.as_str()),
        ];
        if let Some(fingerprint) = &self.fingerprint {
            env.push(("EASEL_FINGERPRINT", fingerprint));
        }
        client_with(home, args, &env)
    }

    /// Like `client`, asserting success and returning stdout.
    pub fn client_ok(&self, home: &Path, args: &[&str]) -> String {
        let output = self.client(home, args);
        assert!(
            output.status.success(),
            "client {args:?} failed: {}\nstdout: {}\nworker log:\n{}",
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout),
            self.log_text()
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// `client submit SPEC --detach --json --no-poc EXTRA...`, asserting success; returns the
    /// submit summary (its first JSON line).
    pub fn submit_detached(&self, home: &Path, spec: &Path, extra: &[&str]) -> serde_json::Value {
        let mut args = vec![
            "submit",
            spec.to_str().unwrap(),
            "--detach",
            "--json",
            "--no-poc",
        ];
        args.extend_from_slice(extra);
        json_lines(&self.client_ok(home, &args)).swap_remove(0)
    }

    /// The accuracy `client evaluate RUN_DIR DATA --json` measures.
    pub fn evaluated_accuracy(&self, home: &Path, run_dir: &Path, data: &Path) -> f64 {
        let evaluation = self.client_ok(
            home,
            &[
                "evaluate",
                run_dir.to_str().unwrap(),
                data.to_str().unwrap(),
                "--json",
            ],
        );
        let evaluation: serde_json::Value = serde_json::from_str(evaluation.trim()).unwrap();
        evaluation["accuracy"].as_f64().unwrap()
    }

    /// Job state (`status --json`) now.
    pub fn status(&self, home: &Path, job: &str) -> serde_json::Value {
        serde_json::from_str(&self.client_ok(home, &["status", job, "--json"])).unwrap()
    }

    /// Job state (`status --json`) once the job has ended, whichever way. `hang_guard` only ends
    /// a test that would otherwise wait for ever: far past the job's run on a loaded machine.
    pub fn wait_until_finished(
        &self,
        home: &Path,
        job: &str,
        hang_guard: Duration,
    ) -> serde_json::Value {
        self.wait_for(home, job, hang_guard, |s| {
            matches!(state(s), "succeeded" | "failed" | "cancelled")
        })
    }

    /// Job state (`status --json`) once `done` says so. `hang_guard` only ends a test that would
    /// otherwise wait for ever: [`HANG_GUARD`], or longer for a long run.
    pub fn wait_for(
        &self,
        home: &Path,
        job: &str,
        hang_guard: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let last = RefCell::new(serde_json::Value::Null);
        eventually_within(
            hang_guard,
            CLIENT_POLL_INTERVAL,
            || {
                let status = self.status(home, job);
                let reached = done(&status);
                *last.borrow_mut() = status.clone();
                reached.then_some(status)
            },
            || {
                format!(
                    "job {job} never got there: {}\nworker log:\n{}",
                    last.borrow(),
                    self.log_text()
                )
            },
        )
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the client binary with the given environment (nothing inherited that could point it at
/// another worker or config).
pub fn client_with(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(binary("client"));
    command
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("EASEL_WORKER")
        .env_remove("EASEL_TOKEN")
        .env_remove("EASEL_FINGERPRINT")
        .env_remove("EASEL_CLIENT_CONFIG")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("client runs")
}

/// `client submit SPEC --detach --json --no-poc` with only `env` (e.g. a saved worker profile
/// in `home` and nothing else), asserting success; returns the submit summary.
pub fn submit_detached_with(home: &Path, spec: &Path, env: &[(&str, &str)]) -> serde_json::Value {
    let args = [
        "submit",
        spec.to_str().unwrap(),
        "--detach",
        "--json",
        "--no-poc",
    ];
    let output = client_with(home, &args, env);
    assert!(
        output.status.success(),
        "client submit failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    json_lines(&String::from_utf8_lossy(&output.stdout)).swap_remove(0)
}

pub use easel_test_support::{noise_dataset, noise_dataset_named};

pub fn state(status: &serde_json::Value) -> &str {
    status["state"].as_str().unwrap_or("")
}

/// Parses one JSON value per line.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The PyTorch install the build uses (deploy/setup-libtorch.sh), standing in for the GPU
/// machine's own in the bundle and `client up` tests.
pub fn machine_pytorch() -> PathBuf {
    repo_root()
        .join(".libtorch/..")
        .canonicalize()
        .expect("deploy/setup-libtorch.sh made .libtorch")
}

/// The worker bundle as `deploy/bundle.sh` packs it from the worker these tests built, in
/// `dir/dist`; returns the archive (its .sha256 lies beside it).
pub fn pack_bundle(dir: &Path) -> PathBuf {
    let out = dir.join("dist");
    let packed = Command::new("bash")
        .arg(repo_root().join("deploy/bundle.sh"))
        .arg("--binary")
        .arg(binary("worker"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        packed.status.success(),
        "deploy/bundle.sh failed: {}",
        String::from_utf8_lossy(&packed.stderr)
    );
    out.join(format!(
        "easel-worker-{}-linux-x86_64.tar.gz",
        env!("CARGO_PKG_VERSION")
    ))
}
