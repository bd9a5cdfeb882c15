//! A job's training process, as the worker binary starts it (`worker train-job`, this package's
//! own `worker` executable), kept from the worker's secrets: it inherits none of the worker's
//! credentials from the environment, and even a job that names the worker's token, named
//! tokens, TLS key or config file as its weights (a path the worker lets specs name) cannot
//! read them; an ordinary job still trains to the end.

mod common;

use std::path::{Path, PathBuf};

use common::{Client, POLL_INTERVAL, job_state, upload_dataset, with_hang_guard, written_token};
use easel_proto::protocol::Credentials;
use easel_proto::v1 as pb;
use easel_proto::v1::worker_client::WorkerClient;
use easel_spec::worker::WorkerConfig;
use easel_worker::Training;
use easel_worker::training::sandbox;

const ENV_TEST: &str = "a_training_process_inherits_none_of_the_workers_credentials";
/// Set in the copy of this test binary that runs the worker with credentials in its environment.
const WITH_CREDENTIALS: &str = "EASEL_TEST_WORKER_WITH_CREDENTIALS";

/// A worker training in child processes of the real worker binary, serving plaintext on loopback
/// from `dir/data` with `worker.toml` beside it; `access.local_paths` lets specs name `dir`.
struct ChildTrainingWorker {
    address: String,
    token: String,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl ChildTrainingWorker {
    async fn start(dir: &Path) -> ChildTrainingWorker {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let mut config = WorkerConfig {
            data_dir: dir.join("data"),
            devices: vec!["cpu".into()],
            ..WorkerConfig::default()
        };
        config.tls.enabled = false;
        config.store.url = format!("file://{}", dir.join("artifacts").display());
        config.access.local_paths = vec![dir.to_owned()];
        let config_file = dir.join("worker.toml");
        std::fs::write(&config_file, "# store credentials may be written here\n").unwrap();
        let training = Training::ChildProcess {
            executable: env!("CARGO_BIN_EXE_worker").into(),
            hidden: sandbox::hidden_paths(&config, Some(&config_file)),
        };
        let token_path = config.data_dir.join("token");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(easel_worker::run_with_training(
            listener,
            config,
            training,
            async move {
                let _ = stopped.await;
            },
        ));
        let token = written_token(&token_path).await;
        ChildTrainingWorker {
            address,
            token,
            stop,
            served,
        }
    }

    async fn client(&self) -> Client {
        let channel = tonic::transport::Endpoint::from_shared(self.address.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        WorkerClient::with_interceptor(channel, Credentials::new(Some(&self.token)).unwrap())
    }

    async fn stop(self) {
        drop(self.stop);
        with_hang_guard("the worker stops", self.served)
            .await
            .unwrap()
            .unwrap();
    }
}

async fn submit(
    client: &mut Client,
    manifest: &str,
    epochs: u32,
    pretrained: Option<&Path>,
) -> String {
    let mut spec = String::from(
        "name = \"sandboxed\"\n[data]\npath = \"/laptop/data\"\nimage_size = 32\n\
         [model]\narchitecture = \"small_cnn\"\n",
    );
    if let Some(path) = pretrained {
        spec.push_str(&format!("pretrained = \"{}\"\n", path.display()));
    }
    spec.push_str(&format!("[train]\nepochs = {epochs}\nbatch_size = 4\n"));
    common::submit_spec(client, manifest, spec).await.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_naming_the_workers_secrets_as_its_weights_cannot_read_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("data");
    easel_worker::access::named_tokens::add_token(
        &easel_worker::access::named_tokens::tokens_path(&data),
        "alice",
        false,
    )
    .unwrap();
    std::fs::create_dir_all(data.join("tls")).unwrap();
    std::fs::write(data.join("tls/key.pem"), "-----BEGIN PRIVATE KEY-----\n").unwrap();
    let worker = ChildTrainingWorker::start(dir).await;
    let mut client = worker.client().await;
    let manifest = upload_dataset(&mut client, 4).await;

    let secrets: [PathBuf; 4] = [
        data.join("token"),
        data.join("tokens.json"),
        data.join("tls/key.pem"),
        dir.join("worker.toml"),
    ];
    for secret in &secrets {
        let id = submit(&mut client, &manifest, 1, Some(secret)).await;
        let job = common::finished_job(&mut client, &id).await;
        assert_eq!(job.state, pb::JobState::Failed as i32, "{job:?}");
        assert!(
            job.reason.contains(&secret.display().to_string())
                && job.reason.contains("Permission denied"),
            "the training process read {}: {}",
            secret.display(),
            job.reason
        );
    }

    // Confined as those were, an ordinary job reads its images and writes its run to the end.
    let id = submit(&mut client, &manifest, 1, None).await;
    let job = common::finished_job(&mut client, &id).await;
    assert_eq!(job.state, pb::JobState::Succeeded as i32, "{job:?}");
    worker.stop().await;
}

#[test]
fn a_training_process_inherits_none_of_the_workers_credentials() {
    if std::env::var_os(WITH_CREDENTIALS).is_some() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        return runtime.block_on(print_training_environment());
    }
    // The worker runs in a copy of this test binary whose environment holds credentials.
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", ENV_TEST, "--nocapture", "--test-threads=1"])
        .env(WITH_CREDENTIALS, "1")
        .env("AWS_SECRET_ACCESS_KEY", "aws-secret")
        .env("AWS_ACCESS_KEY_ID", "aws-id")
        .env("GOOGLE_APPLICATION_CREDENTIALS", "/etc/gcp.json")
        .env("EASEL_TOKEN", "client-token")
        .env("EASEL_LOG", "info")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let said = format!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{said}");
    let names: Vec<&str> = stdout
        .lines()
        // The harness prints its own words before the first line.
        .filter_map(|line| line.split_once("training variable ").map(|(_, name)| name))
        .collect();
    assert!(
        names.contains(&"PATH") && names.contains(&"EASEL_LOG"),
        "{said}"
    );
    for secret in [
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "EASEL_TOKEN",
        WITH_CREDENTIALS,
    ] {
        assert!(
            !names.contains(&secret),
            "{secret} reached the training process:\n{said}"
        );
    }
}

/// In the copy: runs a long job, prints the names in its training process's environment (read
/// from /proc while it runs), then cancels it.
async fn print_training_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let worker = ChildTrainingWorker::start(tmp.path()).await;
    let mut client = worker.client().await;
    let manifest = upload_dataset(&mut client, 4).await;
    let id = submit(&mut client, &manifest, 10_000, None).await;
    let environment = with_hang_guard("a training process starts", async {
        loop {
            if let Some(environment) = child_environments().into_iter().next() {
                return environment;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    })
    .await;
    for entry in environment.split(|b| *b == 0).filter(|e| !e.is_empty()) {
        let entry = String::from_utf8_lossy(entry);
        let name = entry.split_once('=').map_or(&*entry, |(name, _)| name);
        println!("training variable {name}");
    }
    client
        .cancel(pb::CancelRequest { job_id: id.clone() })
        .await
        .unwrap();
    with_hang_guard("the cancelled job stops", async {
        while job_state(&mut client, &id).await == pb::JobState::Running {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    })
    .await;
    worker.stop().await;
}

/// The environments of this process's children that run the worker binary.
fn child_environments() -> Vec<Vec<u8>> {
    let me = std::process::id().to_string();
    let worker = std::fs::canonicalize(env!("CARGO_BIN_EXE_worker")).unwrap();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // `pid (name) state ppid …`: the name may hold spaces, so read after its `)`.
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        if after_name.split_whitespace().nth(1) != Some(me.as_str()) {
            continue;
        }
        if std::fs::read_link(entry.path().join("exe")).ok() != Some(worker.clone()) {
            continue;
        }
        if let Ok(environment) = std::fs::read(entry.path().join("environ")) {
            found.push(environment);
        }
    }
    found
}
