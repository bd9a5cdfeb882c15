//! The Easel worker: a gRPC daemon that receives datasets and specs, trains on its devices with
//! the engine (one supervised child process per running job), streams events and stores artifacts.
//!
//! Library-first: [`run`] serves on a listener until `shutdown` resolves, so tests start the real
//! server on `127.0.0.1:0`.

pub mod access;
pub mod error;
pub mod jobs;
pub mod network;
pub mod storage;
pub mod training;

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use easel_proto::v1 as pb;
use easel_spec::worker::{DeviceName, WorkerConfig};
use easel_store::{ArtifactStore, RetryPolicy, StoreOptions};
use tokio::net::TcpListener;

pub use error::{Error, Result};
use jobs::manager::ManagerSettings;
use network::tls::TlsIdentity;
use storage::blobs::BlobLimits;
pub use training::Training;

/// Serves until `shutdown` resolves, then stops accepting connections, lets running jobs stop at
/// a checkpoint (they are queued again for the next start) and returns. Jobs train on threads
/// of this process; the worker binary uses [`run_with_training`] to train each in a child.
pub async fn run(
    listener: TcpListener,
    config: WorkerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with_training(listener, config, Training::Thread, shutdown).await
}

/// [`run`], training where `training` says.
pub async fn run_with_training(
    listener: TcpListener,
    config: WorkerConfig,
    training: Training,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let data_dir = &config.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("failed to create {}", data_dir.display()))?;
    let address = listener.local_addr()?;
    let (token, tls) = credentials(&config, address)?;
    let (store, options, store_url) = open_store(&config)?;
    let slots = training_slots(&config)?;
    let manager =
        jobs::JobManager::open(manager_settings(&config, store, options, training, &slots)?)
            .context("failed to open the worker's data directory")?;
    tokio::spawn(manager.clone().schedule());

    let guard = access::Guard::start(&token.value, access::named_tokens::tokens_path(data_dir));
    let service = network::grpc::WorkerService {
        manager: manager.clone(),
        guard,
        hello: hello(&config, &store_url, &slots),
        upload_idle: Duration::from_secs(config.upload.idle_timeout_seconds),
    };
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("easel.v1.Worker", tonic_health::ServingStatus::Serving)
        .await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = network::server::serve(
        listener,
        &config,
        tls.as_ref(),
        service,
        health_service,
        async move {
            let _ = stop_rx.await;
        },
    )?;
    let mut serving = tokio::spawn(server);
    // `client up` waits for this line in the log before it reads the token and fingerprint.
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!("worker: ready: serving {scheme}://{address}");
    tracing::info!(%address, store = %store_url, devices = ?hello_devices(&slots), slots = slots.len(), "worker listening");

    tokio::select! {
        () = shutdown => {}
        result = &mut serving => {
            result.context("server task failed")?.context("server failed")?;
            return Ok(());
        }
    }
    tracing::info!("shutting down: refusing new jobs, stopping running jobs at a checkpoint");
    health
        .set_service_status("easel.v1.Worker", tonic_health::ServingStatus::NotServing)
        .await;
    let _ = stop_tx.send(());
    manager.shutdown().await;
    serving
        .await
        .context("server task failed")?
        .context("server failed")?;
    tracing::info!("worker stopped");
    Ok(())
}

/// The worker's admin token and, when TLS is on, its certificate (each made at first start),
/// with a hint printed for a token made now.
fn credentials(
    config: &WorkerConfig,
    address: std::net::SocketAddr,
) -> anyhow::Result<(access::admin_token::Token, Option<TlsIdentity>)> {
    let data_dir = &config.data_dir;
    let token = access::admin_token::load_or_create_token(data_dir)
        .context("failed to set up the access token")?;
    let tls = if config.tls.enabled {
        // Other dependencies bring a second rustls crypto back end; say which one serves.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls =
            network::tls::load_or_create(data_dir, &config.tls).context("failed to set up TLS")?;
        eprintln!(
            "worker: TLS certificate fingerprint {} (stored in {})",
            tls.fingerprint,
            tls.fingerprint_path.display()
        );
        Some(tls)
    } else {
        None
    };
    if token.created {
        print_token_hint(&token.path, tls.as_ref(), address);
    }
    Ok((token, tls))
}

/// What `Hello` answers: versions, devices and limits.
fn hello(config: &WorkerConfig, store_url: &str, slots: &[DeviceName]) -> pb::HelloResponse {
    let runtime = easel_engine::runtime_info();
    let devices = hello_devices(slots);
    pb::HelloResponse {
        protocol_version: easel_proto::PROTOCOL_VERSION,
        worker_version: env!("CARGO_PKG_VERSION").to_owned(),
        devices,
        max_concurrent_jobs: slots.len() as u32,
        store_url: store_url.to_owned(),
        max_chunk_bytes: config.upload.max_chunk_bytes,
        libtorch_version: runtime.libtorch_version,
        cuda_available: runtime.cuda_available,
        max_trials_per_sweep: config.limits.max_trials_per_sweep,
    }
}

/// Where the new admin token is kept and how a client uses it; the token itself stays out of
/// logs.
fn print_token_hint(
    path: &std::path::Path,
    tls: Option<&TlsIdentity>,
    address: std::net::SocketAddr,
) {
    let (scheme, pin) = match tls {
        Some(tls) => ("https", format!(" --fingerprint {}", tls.fingerprint)),
        None => ("http", String::new()),
    };
    eprintln!(
        "worker: created the access token in {} (mode 0600).\n\
         worker: use it from the client with:\n  export EASEL_TOKEN=$(cat {})\n  client list --worker {scheme}://{address}{pin}",
        path.display(),
        path.display(),
    );
}

/// The artifact store the config names, its options (environment < worker.toml) and its URL.
fn open_store(config: &WorkerConfig) -> anyhow::Result<(ArtifactStore, StoreOptions, String)> {
    let mut options = StoreOptions::from_env();
    if config.store.endpoint.is_some() {
        options.endpoint = config.store.endpoint.clone();
    }
    if config.store.region.is_some() {
        options.region = config.store.region.clone();
    }
    options.allow_http |= config.store.allow_http;
    let store_url = config.store_url();
    let store = ArtifactStore::open(&store_url, &options)
        .with_context(|| format!("failed to open the artifact store {store_url}"))?;
    Ok((store, options, store_url))
}

/// One device per training slot: the config's devices (`all`, and `auto` on a machine with
/// several GPUs, are each GPU), taken in turn for `max_concurrent_jobs` slots.
fn training_slots(config: &WorkerConfig) -> anyhow::Result<Vec<DeviceName>> {
    if config.executor.kind == easel_spec::executor::ExecutorKind::Slurm {
        // Slurm places and queues: the worker hands it this many jobs at once.
        let jobs = match config.max_concurrent_jobs {
            0 => SLURM_JOBS_AT_ONCE,
            n => n as usize,
        };
        return Ok(vec![DeviceName::Auto; jobs]);
    }
    let gpus = easel_engine::runtime_info().cuda_device_count;
    let devices = config
        .training_devices(gpus)
        .map_err(|why| anyhow::anyhow!("worker config: {why}"))?;
    Ok(config.training_slots(&devices))
}

/// Each slot's device, once.
fn hello_devices(slots: &[DeviceName]) -> Vec<String> {
    let mut devices: Vec<String> = Vec::new();
    for slot in slots.iter().map(ToString::to_string) {
        if !devices.contains(&slot) {
            devices.push(slot);
        }
    }
    devices
}

/// Jobs a worker with the Slurm executor has submitted at once unless `max_concurrent_jobs`
/// says otherwise: Slurm's own limits decide what runs.
const SLURM_JOBS_AT_ONCE: usize = 64;

/// The job manager's settings from the worker's config.
fn manager_settings(
    config: &WorkerConfig,
    store: ArtifactStore,
    store_options: StoreOptions,
    training: Training,
    slots: &[DeviceName],
) -> anyhow::Result<ManagerSettings> {
    let slots = slots.to_vec();
    Ok(ManagerSettings {
        data_dir: config.data_dir.clone(),
        store,
        store_options,
        devices: slots,
        max_queued: config.queue.max_queued_jobs as usize,
        blob_limits: BlobLimits {
            max_chunk_bytes: config.upload.max_chunk_bytes,
            max_blob_bytes: config.upload.max_blob_bytes,
            max_stored_bytes: config.upload.max_stored_bytes,
            min_free_bytes: config.upload.min_free_bytes,
        },
        cache_max_bytes: config.cache.max_bytes,
        max_restarts: config.queue.max_restarts,
        restart_pause: std::time::Duration::from_secs(config.queue.restart_pause_seconds),
        local_paths: config.access.local_paths.clone(),
        dataset_prefixes: config.access.dataset_prefixes.clone(),
        max_image_pixels: config.limits.max_image_pixels,
        max_trials_per_sweep: config.limits.max_trials_per_sweep as usize,
        retry: RetryPolicy::default(),
        training,
        price_per_hour: config.price_per_hour,
    })
}
