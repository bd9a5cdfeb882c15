//! `worker.toml`: how a worker daemon runs (listen address, data dir, store, devices, queue).
//!
//! Layers, later ones winning: built-in defaults < the file < `EASEL_*` environment variables <
//! command-line flags (the worker binary applies the flags through [`WorkerOverrides`]). After
//! layering, [`WorkerConfig::validate`] reports every problem at once with its key path.

use crate::error::{Problem, SpecError, SpecErrors};
use crate::load::{Validate, read_toml};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// gRPC listen address, `host:port`.
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// Jobs, dataset blobs, the decoded-dataset cache and the access token live here.
    #[serde(default = "defaults::data_dir")]
    pub data_dir: PathBuf,
    /// Training devices: `"auto"` (CUDA 0 if present, else CPU; every GPU on a machine with
    /// several), `"all"` (every GPU, one training slot each), `"cpu"`, `"cuda:N"`.
    #[serde(default = "defaults::devices")]
    pub devices: Vec<String>,
    /// Jobs that train at once; 0 means one per device.
    #[serde(default)]
    pub max_concurrent_jobs: u32,
    /// What this machine costs an hour (in any currency), for the cost on each run's report
    /// page; unset, the page shows none.
    #[serde(default)]
    pub price_per_hour: Option<f64>,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub queue: QueueConfig,
    #[serde(default)]
    pub upload: UploadConfig,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub access: AccessConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    /// Where jobs train: on this machine, or on a Slurm cluster (`executor.rs`).
    #[serde(default)]
    pub executor: crate::executor::ExecutorConfig,
}

/// Caps on what a submitted spec may ask of the worker, whatever the spec says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// The largest `data.max_image_pixels` a spec may set: decoding an image takes 3 bytes a
    /// pixel on each decoding thread, so a spec cannot have the worker decode pixel bombs.
    #[serde(default = "defaults::max_image_pixels")]
    pub max_image_pixels: u64,
    /// Connections served at once; one past it is closed as it arrives. Each holds a socket and
    /// buffers, so a flood of them would otherwise exhaust the worker's file descriptors.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: u32,
    /// Connections served at once from one IP address, so one machine cannot take every slot.
    /// A client needs one (its streams share it).
    #[serde(default = "defaults::max_connections_per_address")]
    pub max_connections_per_address: u32,
    /// A connection that has sent no request this many seconds after it was accepted (its TLS
    /// handshake included) is closed: HTTP/2 keepalive starts only after a client's first bytes,
    /// so a peer that connects and says nothing would otherwise keep its slot for good.
    #[serde(default = "defaults::first_request_timeout_seconds")]
    pub first_request_timeout_seconds: u64,
    /// A connection that has made no request with a valid token this many seconds after it was
    /// accepted is closed, even while it sends requests that need none (health checks), so
    /// peers without a token cannot hold the slots. A connection that presented a valid token
    /// once is a client's and is never closed for this.
    #[serde(default = "defaults::authentication_timeout_seconds")]
    pub authentication_timeout_seconds: u64,
    /// Trials one submitted sweep may expand into; a sweep with more is refused whole, before
    /// any trial is queued (a typo such as a list of 1,000 learning rates would flood the queue).
    #[serde(default = "defaults::max_trials_per_sweep")]
    pub max_trials_per_sweep: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_image_pixels: defaults::max_image_pixels(),
            max_connections: defaults::max_connections(),
            max_connections_per_address: defaults::max_connections_per_address(),
            first_request_timeout_seconds: defaults::first_request_timeout_seconds(),
            authentication_timeout_seconds: defaults::authentication_timeout_seconds(),
            max_trials_per_sweep: defaults::max_trials_per_sweep(),
        }
    }
}

/// What a submitted spec may reach on the worker itself.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// Worker folders a spec may read: `data.path = "file:///…"` datasets and `model.pretrained`
    /// paths that are not uploaded blobs. Empty (the default): none, so a client can never
    /// have the worker copy its own files (its data folder, its token) into a job.
    #[serde(default)]
    pub local_paths: Vec<PathBuf>,
    /// Object-store URL prefixes a `data.path` bucket dataset may lie under, e.g.
    /// `"s3://team-data/"` or `"gs://photos/datasets/"`, matched by whole path segments
    /// (`s3://team` does not cover `s3://team-private`). Empty (the default): no bucket
    /// datasets, so a token cannot have the worker read whatever its own credentials reach,
    /// such as the artifact store's other jobs. `file://` datasets are `local_paths`' concern.
    #[serde(default)]
    pub dataset_prefixes: Vec<String>,
}

/// The URL schemes `access.dataset_prefixes` may name: the object stores a dataset is read from.
const DATASET_PREFIX_SCHEMES: [&str; 7] = ["s3", "s3a", "gs", "az", "azure", "abfs", "abfss"];

/// Why `prefix` cannot be an `access.dataset_prefixes` entry; `None` when it can.
fn dataset_prefix_problem(prefix: &str) -> Option<String> {
    let Some((scheme, rest)) = prefix.split_once("://") else {
        return Some(format!(
            "`{prefix}` is not a bucket URL such as s3://bucket/ or gs://bucket/prefix/"
        ));
    };
    if scheme.eq_ignore_ascii_case("file") {
        return Some(format!(
            "`{prefix}` names worker folders: list them in access.local_paths instead"
        ));
    }
    if !DATASET_PREFIX_SCHEMES
        .iter()
        .any(|known| scheme.eq_ignore_ascii_case(known))
    {
        return Some(format!(
            "`{prefix}`: the scheme `{scheme}` is not one of {}",
            DATASET_PREFIX_SCHEMES.join(", ")
        ));
    }
    let bucket = rest.split('/').next().unwrap_or_default();
    if bucket.is_empty() {
        return Some(format!("`{prefix}` names no bucket (s3://bucket/…)"));
    }
    if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!(
            "`{}` holds whitespace or a control character",
            prefix.escape_debug()
        ));
    }
    if rest.contains(['?', '#']) {
        return Some(format!("`{prefix}`: a prefix has no query or fragment"));
    }
    None
}

/// The worker's rebuildable caches: decoded datasets and copies of object-store datasets.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// The most bytes the caches keep (0: no limit of their own). Past it, or when the disk has
    /// less than `upload.min_free_bytes` free, the least recently used are removed first.
    #[serde(default)]
    pub max_bytes: u64,
}

/// The channel's encryption. On by default: the worker makes a self-signed certificate at its
/// first start and clients pin its SHA-256 fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default = "defaults::tls_enabled")]
    pub enabled: bool,
    /// PEM certificate chain and private key to serve instead of the self-signed pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Serve plaintext on an address other than loopback (the token then travels in the clear).
    #[serde(default)]
    pub allow_plaintext: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            enabled: defaults::tls_enabled(),
            cert: None,
            key: None,
            allow_plaintext: false,
        }
    }
}

/// Where artifacts go. Credentials come from the environment the usual way (AWS_*, GOOGLE_*,
/// AZURE_*), never from this file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `file:///dir`, `s3://bucket/prefix`, `gs://…`, `az://…`; empty = `<data_dir>/artifacts`.
    #[serde(default)]
    pub url: String,
    /// S3-compatible endpoint (e.g. a loopback test server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Allow plain HTTP to the endpoint (loopback only).
    #[serde(default)]
    pub allow_http: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Jobs waiting to run; a submit beyond this is refused.
    #[serde(default = "defaults::max_queued_jobs")]
    pub max_queued_jobs: u32,
    /// Times a job running when the worker died (crash, kill, power loss) is resumed at the next
    /// start; a job that keeps taking the worker down then fails instead of looping forever.
    #[serde(default = "defaults::max_restarts")]
    pub max_restarts: u32,
    /// Seconds a job resumed after the worker died under it waits before it runs again, doubled
    /// at each further restart (at most 64 times this): a job that is what takes the worker down
    /// then does not crash it as fast as a supervisor restarts it.
    #[serde(default = "defaults::restart_pause_seconds")]
    pub restart_pause_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadConfig {
    /// Largest chunk a client may send in one message.
    #[serde(default = "defaults::max_chunk_bytes")]
    pub max_chunk_bytes: u64,
    /// Largest single file accepted (dataset images and pretrained weights).
    #[serde(default = "defaults::max_blob_bytes")]
    pub max_blob_bytes: u64,
    /// Upload quota: the most bytes of dataset blobs the worker keeps (0: its disk is the
    /// limit). A submit needing more is refused before any byte moves.
    #[serde(default)]
    pub max_stored_bytes: u64,
    /// Disk space uploads always leave free, for checkpoints, decoded caches and logs.
    #[serde(default = "defaults::min_free_bytes")]
    pub min_free_bytes: u64,
    /// An upload stream that sends nothing for this long is closed (what it sent is kept, and a
    /// new upload resumes from there), so a stalled client holds no stream and no disk room.
    #[serde(default = "defaults::idle_upload_seconds")]
    pub idle_timeout_seconds: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            listen: defaults::listen(),
            data_dir: defaults::data_dir(),
            devices: defaults::devices(),
            max_concurrent_jobs: 0,
            price_per_hour: None,
            store: StoreConfig::default(),
            queue: QueueConfig::default(),
            upload: UploadConfig::default(),
            cache: CacheConfig::default(),
            access: AccessConfig::default(),
            limits: LimitsConfig::default(),
            tls: TlsConfig::default(),
            executor: crate::executor::ExecutorConfig::default(),
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_queued_jobs: defaults::max_queued_jobs(),
            max_restarts: defaults::max_restarts(),
            restart_pause_seconds: defaults::restart_pause_seconds(),
        }
    }
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            max_chunk_bytes: defaults::max_chunk_bytes(),
            max_blob_bytes: defaults::max_blob_bytes(),
            max_stored_bytes: 0,
            min_free_bytes: defaults::min_free_bytes(),
            idle_timeout_seconds: defaults::idle_upload_seconds(),
        }
    }
}

mod defaults {
    use std::path::PathBuf;
    pub fn listen() -> String {
        "127.0.0.1:50051".into()
    }
    pub fn data_dir() -> PathBuf {
        PathBuf::from("easel-worker-data")
    }
    pub fn devices() -> Vec<String> {
        vec!["auto".into()]
    }
    pub fn max_queued_jobs() -> u32 {
        100
    }
    pub fn max_restarts() -> u32 {
        3
    }
    pub fn max_image_pixels() -> u64 {
        40_000_000
    }
    pub fn max_trials_per_sweep() -> u32 {
        crate::sweep::DEFAULT_MAX_TRIALS as u32
    }
    pub fn max_connections() -> u32 {
        512
    }
    pub fn max_connections_per_address() -> u32 {
        64
    }
    pub fn first_request_timeout_seconds() -> u64 {
        10
    }
    pub fn authentication_timeout_seconds() -> u64 {
        30
    }
    pub fn restart_pause_seconds() -> u64 {
        2
    }
    pub fn idle_upload_seconds() -> u64 {
        120
    }
    pub fn tls_enabled() -> bool {
        true
    }
    pub fn max_chunk_bytes() -> u64 {
        4 << 20
    }
    pub fn min_free_bytes() -> u64 {
        512 << 20
    }
    pub fn max_blob_bytes() -> u64 {
        // Pretrained weights (VGG16: ~530 MB) travel as blobs too.
        2 << 30
    }
}

/// A training device named in `devices`. It travels (to a training process, say) as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceName {
    Auto,
    Cpu,
    Cuda(usize),
}

impl DeviceName {
    /// The one reading of a device name, for the worker's `devices` and the client's `--device`:
    /// `auto`, `cpu`, `cuda` (= `cuda:0`, also `gpu`) or `cuda:N`, in any case.
    pub fn parse(text: &str) -> Option<DeviceName> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Some(DeviceName::Auto),
            "cpu" => Some(DeviceName::Cpu),
            "cuda" | "gpu" => Some(DeviceName::Cuda(0)),
            other => other
                .strip_prefix("cuda:")?
                .parse()
                .ok()
                .map(DeviceName::Cuda),
        }
    }
}

impl TryFrom<String> for DeviceName {
    type Error = String;

    fn try_from(text: String) -> Result<DeviceName, String> {
        DeviceName::parse(&text)
            .ok_or_else(|| format!("`{text}` is not a device; use {DEVICE_NAMES}"))
    }
}

impl From<DeviceName> for String {
    fn from(device: DeviceName) -> String {
        device.to_string()
    }
}

/// `devices = ["all"]`: every GPU of the machine, one training slot each.
pub const ALL_GPUS: &str = "all";

/// What [`DeviceName::parse`] accepts, for error messages.
pub const DEVICE_NAMES: &str = "\"auto\", \"cpu\", \"cuda\" or \"cuda:N\"";

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceName::Auto => f.write_str("auto"),
            DeviceName::Cpu => f.write_str("cpu"),
            DeviceName::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

/// Command-line values that override the file and environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerOverrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub store: Option<String>,
}

impl WorkerConfig {
    /// Parses `worker.toml` text; `origin` names it in errors. Every unknown key and wrong type
    /// is reported with its line and key path (validation of values happens in [`load`]).
    ///
    /// [`load`]: WorkerConfig::load
    pub fn from_toml(text: &str, origin: &str) -> Result<WorkerConfig, SpecErrors> {
        read_toml::<WorkerConfig>(text, origin).finish()
    }

    /// Reads the file (if given), applies `EASEL_*` variables from `env` and the flags, then
    /// validates, reporting every problem at once. `env` is a lookup so tests need not touch
    /// the process environment.
    pub fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &WorkerOverrides,
    ) -> Result<WorkerConfig, SpecErrors> {
        let mut config = match file {
            Some(path) => {
                let origin = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|e| {
                    SpecErrors::whole_file(&origin, format!("cannot read the file: {e}"))
                })?;
                WorkerConfig::from_toml(&text, &origin)?
            }
            None => WorkerConfig::default(),
        };
        let env_problems = config.apply_env(env);
        config.apply_overrides(overrides);
        let origin = "worker configuration (file, EASEL_* variables and flags)";
        let errors: Vec<SpecError> = env_problems
            .into_iter()
            .chain(config.validate())
            .map(|problem| SpecError {
                origin: origin.into(),
                path: problem.path,
                position: None,
                message: problem.message,
            })
            .collect();
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(SpecErrors { errors })
        }
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut number = |name: &str, target: &mut u64| {
            if let Some(value) = env(name) {
                match value.trim().parse() {
                    Ok(parsed) => *target = parsed,
                    Err(_) => problems.push(Problem::new(
                        name,
                        format!("`{value}` is not a whole number"),
                    )),
                }
            }
        };
        let mut concurrent = u64::from(self.max_concurrent_jobs);
        number("EASEL_MAX_CONCURRENT_JOBS", &mut concurrent);
        self.max_concurrent_jobs = u32::try_from(concurrent).unwrap_or(u32::MAX);
        let mut queued = u64::from(self.queue.max_queued_jobs);
        number("EASEL_MAX_QUEUED_JOBS", &mut queued);
        self.queue.max_queued_jobs = u32::try_from(queued).unwrap_or(u32::MAX);
        let mut restarts = u64::from(self.queue.max_restarts);
        number("EASEL_MAX_RESTARTS", &mut restarts);
        self.queue.max_restarts = u32::try_from(restarts).unwrap_or(u32::MAX);
        number(
            "EASEL_RESTART_PAUSE_SECONDS",
            &mut self.queue.restart_pause_seconds,
        );
        number("EASEL_MAX_CHUNK_BYTES", &mut self.upload.max_chunk_bytes);
        number("EASEL_MAX_STORED_BYTES", &mut self.upload.max_stored_bytes);
        number("EASEL_MIN_FREE_BYTES", &mut self.upload.min_free_bytes);
        number("EASEL_CACHE_MAX_BYTES", &mut self.cache.max_bytes);
        number("EASEL_MAX_IMAGE_PIXELS", &mut self.limits.max_image_pixels);
        let mut connections = u64::from(self.limits.max_connections);
        number("EASEL_MAX_CONNECTIONS", &mut connections);
        self.limits.max_connections = u32::try_from(connections).unwrap_or(u32::MAX);
        if let Some(listen) = env("EASEL_LISTEN") {
            self.listen = listen;
        }
        if let Some(dir) = env("EASEL_DATA_DIR") {
            self.data_dir = PathBuf::from(dir);
        }
        if let Some(url) = env("EASEL_STORE") {
            self.store.url = url;
        }
        if let Some(paths) = env("EASEL_LOCAL_PATHS") {
            self.access.local_paths = paths
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect();
        }
        if let Some(prefixes) = env("EASEL_DATASET_PREFIXES") {
            self.access.dataset_prefixes = prefixes
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(devices) = env("EASEL_DEVICES") {
            self.devices = devices.split(',').map(|d| d.trim().to_owned()).collect();
        }
        if let Some(kind) = env("EASEL_EXECUTOR") {
            match kind.trim() {
                "local" => self.executor.kind = crate::executor::ExecutorKind::Local,
                "slurm" => self.executor.kind = crate::executor::ExecutorKind::Slurm,
                other => problems.push(Problem::new(
                    "EASEL_EXECUTOR",
                    format!("`{other}` is neither local nor slurm"),
                )),
            }
        }
        if let Some(partition) = env("EASEL_SLURM_PARTITION") {
            self.executor.slurm.partition = partition.trim().to_owned();
        }
        if let Some(tls) = env("EASEL_TLS") {
            match tls.trim() {
                "on" | "true" | "1" => self.tls.enabled = true,
                "off" | "false" | "0" => self.tls.enabled = false,
                other => problems.push(Problem::new(
                    "EASEL_TLS",
                    format!("`{other}` is neither on nor off"),
                )),
            }
        }
        problems
    }

    fn apply_overrides(&mut self, overrides: &WorkerOverrides) {
        if let Some(listen) = &overrides.listen {
            self.listen = listen.clone();
        }
        if let Some(dir) = &overrides.data_dir {
            self.data_dir = dir.clone();
        }
        if let Some(url) = &overrides.store {
            self.store.url = url.clone();
        }
    }

    /// The parsed devices; an entry that names no device is an error naming it (validation
    /// reports it too, with its key), never left out.
    pub fn device_names(&self) -> Result<Vec<DeviceName>, String> {
        self.devices
            .iter()
            .enumerate()
            .map(|(index, name)| {
                DeviceName::try_from(name.clone()).map_err(|why| format!("devices[{index}]: {why}"))
            })
            .collect()
    }

    /// Whether `devices` asks for every GPU of the machine (`["all"]`).
    pub fn every_gpu(&self) -> bool {
        matches!(self.devices.as_slice(), [only] if only.trim().eq_ignore_ascii_case(ALL_GPUS))
    }

    /// The devices training runs on, on a machine with `gpus` CUDA devices: `["all"]` is each
    /// of them (the CPU when there is none), and so is `["auto"]` when there are several.
    pub fn training_devices(&self, gpus: usize) -> Result<Vec<DeviceName>, String> {
        let every = |gpus: usize| match gpus {
            0 => vec![DeviceName::Cpu],
            n => (0..n).map(DeviceName::Cuda).collect(),
        };
        if self.every_gpu() {
            return Ok(every(gpus));
        }
        let named = self.device_names()?;
        if named == [DeviceName::Auto] && gpus > 1 {
            return Ok(every(gpus));
        }
        Ok(named)
    }

    /// Training slots over `devices`: `max_concurrent_jobs` of them taken in turn, or one per
    /// device when 0.
    pub fn training_slots(&self, devices: &[DeviceName]) -> Vec<DeviceName> {
        let count = match self.max_concurrent_jobs {
            0 => devices.len().max(1),
            n => n as usize,
        };
        (0..count)
            .map(|index| {
                devices
                    .get(index % devices.len().max(1))
                    .copied()
                    .unwrap_or(DeviceName::Auto)
            })
            .collect()
    }

    /// Training slots: `max_concurrent_jobs`, or one per device when 0.
    pub fn concurrent_jobs(&self) -> usize {
        match self.max_concurrent_jobs {
            0 => self.devices.len().max(1),
            n => n as usize,
        }
    }

    /// The artifact store URL, defaulting to `file://<data_dir>/artifacts`.
    pub fn store_url(&self) -> String {
        if self.store.url.is_empty() {
            let dir = self.data_dir.join("artifacts");
            let dir = std::path::absolute(&dir).unwrap_or(dir);
            format!("file://{}", dir.display())
        } else {
            self.store.url.clone()
        }
    }
}

impl Validate for WorkerConfig {
    /// Every problem with the resolved values, each with its key path.
    fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: String| problems.push(Problem::new(key, message));
        for (index, path) in self.access.local_paths.iter().enumerate() {
            if !path.is_absolute() {
                problem(
                    &format!("access.local_paths[{index}]"),
                    format!("`{}` is not an absolute path", path.display()),
                );
            }
        }
        for (index, prefix) in self.access.dataset_prefixes.iter().enumerate() {
            if let Some(message) = dataset_prefix_problem(prefix) {
                problem(&format!("access.dataset_prefixes[{index}]"), message);
            }
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            problem(
                "listen",
                format!("`{}` is not an address like 127.0.0.1:50051", self.listen),
            );
        }
        if self.data_dir.as_os_str().is_empty() {
            problem("data_dir", "must not be empty".into());
        }
        if self.devices.is_empty() {
            problem(
                "devices",
                "name at least one device (\"auto\", \"cpu\", \"cuda:0\")".into(),
            );
        }
        for (index, device) in self.devices.iter().enumerate() {
            if device.trim().eq_ignore_ascii_case(ALL_GPUS) {
                if self.devices.len() > 1 {
                    problem(
                        &format!("devices[{index}]"),
                        "\"all\" (every GPU) stands alone: devices = [\"all\"]".into(),
                    );
                }
            } else if DeviceName::parse(device).is_none() {
                problem(
                    &format!("devices[{index}]"),
                    format!("`{device}` is not a device; use {DEVICE_NAMES}"),
                );
            }
        }
        if self.queue.max_queued_jobs == 0 {
            problem("queue.max_queued_jobs", "must be > 0".into());
        }
        if let Some(price) = self.price_per_hour
            && !(price.is_finite() && price >= 0.0)
        {
            problem(
                "price_per_hour",
                format!("{price} is not a price: give what the machine costs an hour, >= 0"),
            );
        }
        for found in self.executor.problems() {
            problem(&found.path, found.message);
        }
        if self.limits.max_trials_per_sweep == 0 {
            problem("limits.max_trials_per_sweep", "must be > 0".into());
        }
        if self.upload.max_chunk_bytes < 1024 || self.upload.max_chunk_bytes > 64 << 20 {
            problem(
                "upload.max_chunk_bytes",
                "must be between 1 KiB and 64 MiB".into(),
            );
        }
        if self.upload.idle_timeout_seconds == 0 {
            problem("upload.idle_timeout_seconds", "must be > 0".into());
        }
        if self.limits.max_connections == 0 {
            problem("limits.max_connections", "must be > 0".into());
        }
        if self.limits.max_connections_per_address == 0 {
            problem("limits.max_connections_per_address", "must be > 0".into());
        }
        // Zero would close every connection at once; a day is far past any client's first
        // request, and a larger value would let idle peers hold the slots again.
        for (key, seconds) in [
            (
                "limits.first_request_timeout_seconds",
                self.limits.first_request_timeout_seconds,
            ),
            (
                "limits.authentication_timeout_seconds",
                self.limits.authentication_timeout_seconds,
            ),
        ] {
            if !(1..=86_400).contains(&seconds) {
                problem(key, format!("{seconds} is not between 1 and 86400 seconds"));
            }
        }
        if self.upload.max_blob_bytes == 0 {
            problem("upload.max_blob_bytes", "must be > 0".into());
        }
        if let Ok(address) = self.listen.parse::<std::net::SocketAddr>()
            && !self.tls.enabled
            && !self.tls.allow_plaintext
            && !address.ip().is_loopback()
        {
            problem(
                "tls.enabled",
                format!(
                    "listening on {address} without TLS would send the access token in the clear: \
                     keep TLS on, listen on 127.0.0.1 behind a tunnel, or set tls.allow_plaintext = true"
                ),
            );
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            problem(
                "tls.cert",
                "give tls.cert and tls.key together (or neither, for the self-signed pair)".into(),
            );
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_are_valid() {
        let config = WorkerConfig::default();
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        assert_eq!(config.concurrent_jobs(), 1);
    }

    #[test]
    fn a_price_an_hour_is_a_finite_amount_of_zero_or_more() {
        for (price, valid) in [(2.49, true), (0.0, true), (-1.0, false), (f64::NAN, false)] {
            let config = WorkerConfig {
                price_per_hour: Some(price),
                ..Default::default()
            };
            let problems = config.validate();
            assert_eq!(problems.is_empty(), valid, "{price}: {problems:?}");
            assert!(problems.iter().all(|p| p.path == "price_per_hour"));
        }
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let text = "listen = \"127.0.0.1:1\"\n[upload]\nmax_chunk_bytez = 5\n";
        let error = WorkerConfig::from_toml(text, "w.toml").unwrap_err();
        let problem = &error.errors[0];
        assert_eq!(problem.position.map(|p| p.line), Some(3), "{error}");
        assert_eq!(problem.path, "upload.max_chunk_bytez", "{error}");
        assert!(error.to_string().starts_with("w.toml:3:"), "{error}");
    }

    #[test]
    fn flags_beat_env_beat_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("worker.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:1\"\ndata_dir = \"/from/file\"\n",
        )
        .unwrap();
        let env = |name: &str| match name {
            "EASEL_LISTEN" => Some("127.0.0.1:2".to_owned()),
            "EASEL_DATA_DIR" => Some("/from/env".to_owned()),
            _ => None,
        };
        let overrides = WorkerOverrides {
            data_dir: Some("/from/flag".into()),
            ..Default::default()
        };
        let config = WorkerConfig::load(Some(&file), &env, &overrides).unwrap();
        assert_eq!(config.listen, "127.0.0.1:2");
        assert_eq!(config.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(config.store_url(), "file:///from/flag/artifacts");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let overrides = WorkerOverrides {
            listen: Some("nowhere".into()),
            ..Default::default()
        };
        let env = |name: &str| match name {
            "EASEL_DEVICES" => Some("cuda:0,gpu7".to_owned()),
            "EASEL_MAX_QUEUED_JOBS" => Some("many".to_owned()),
            _ => None,
        };
        let error = WorkerConfig::load(None, &env, &overrides).unwrap_err();
        let keys: Vec<&str> = error.errors.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            keys,
            ["EASEL_MAX_QUEUED_JOBS", "listen", "devices[1]"],
            "{error}"
        );
        let _ = no_env("");
    }

    #[test]
    fn dataset_prefixes_must_be_bucket_urls() {
        let text = "[access]\ndataset_prefixes = [\"s3://team-data/\", \"gs://photos/sets\"]\n";
        let config = WorkerConfig::from_toml(text, "w.toml").unwrap();
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        assert_eq!(
            config.access.dataset_prefixes,
            ["s3://team-data/", "gs://photos/sets"]
        );

        let env = |name: &str| {
            (name == "EASEL_DATASET_PREFIXES").then(|| {
                "s3://ok/, file:///srv/data, http://x/, s3:///nobucket, team-data, s3://a/b?c"
                    .to_owned()
            })
        };
        let error = WorkerConfig::load(None, &env, &WorkerOverrides::default()).unwrap_err();
        let problems: Vec<(&str, &str)> = error
            .errors
            .iter()
            .map(|p| (p.path.as_str(), p.message.as_str()))
            .collect();
        let keys: Vec<&str> = problems.iter().map(|(key, _)| *key).collect();
        assert_eq!(
            keys,
            [
                "access.dataset_prefixes[1]",
                "access.dataset_prefixes[2]",
                "access.dataset_prefixes[3]",
                "access.dataset_prefixes[4]",
                "access.dataset_prefixes[5]",
            ],
            "{error}"
        );
        assert!(problems[0].1.contains("access.local_paths"), "{error}");
        assert!(problems[1].1.contains("the scheme `http`"), "{error}");
        assert!(problems[2].1.contains("names no bucket"), "{error}");
        assert!(problems[3].1.contains("is not a bucket URL"), "{error}");
    }

    #[test]
    fn all_and_auto_give_a_slot_per_gpu_and_all_stands_alone() {
        let config = |devices: &str| {
            WorkerConfig::from_toml(&format!("devices = {devices}\n"), "w.toml").unwrap()
        };
        let all = config("[\"all\"]");
        assert!(all.validate().is_empty());
        assert_eq!(
            all.training_devices(3).unwrap(),
            [
                DeviceName::Cuda(0),
                DeviceName::Cuda(1),
                DeviceName::Cuda(2)
            ]
        );
        assert_eq!(all.training_devices(0).unwrap(), [DeviceName::Cpu]);
        let slots = all.training_slots(&all.training_devices(2).unwrap());
        assert_eq!(slots, [DeviceName::Cuda(0), DeviceName::Cuda(1)]);

        let auto = config("[\"auto\"]");
        assert_eq!(auto.training_devices(1).unwrap(), [DeviceName::Auto]);
        assert_eq!(auto.training_devices(2).unwrap().len(), 2);

        let mixed = config("[\"cpu\", \"all\"]");
        let problems = mixed.validate();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "devices[1]");
        assert!(problems[0].message.contains("stands alone"), "{problems:?}");

        let mut two_cpu_slots = config("[\"cpu\"]");
        two_cpu_slots.max_concurrent_jobs = 2;
        assert_eq!(
            two_cpu_slots.training_slots(&[DeviceName::Cpu]),
            [DeviceName::Cpu, DeviceName::Cpu]
        );
    }

    #[test]
    fn connection_deadlines_out_of_range_are_refused_by_key() {
        let text =
            "[limits]\nfirst_request_timeout_seconds = 0\nauthentication_timeout_seconds = 90000\n";
        let config = WorkerConfig::from_toml(text, "w.toml").unwrap();
        let problems = config.validate();
        let keys: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            keys,
            [
                "limits.first_request_timeout_seconds",
                "limits.authentication_timeout_seconds"
            ],
            "{problems:?}"
        );
        assert_eq!(
            WorkerConfig::default().limits.first_request_timeout_seconds,
            10
        );
    }

    #[test]
    fn the_shipped_worker_toml_is_valid() {
        let text = include_str!("../../../configs/worker.toml");
        let config = WorkerConfig::from_toml(text, "configs/worker.toml").unwrap();
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        assert_eq!(config.store_url(), "file:///var/lib/easel/artifacts");
    }

    #[test]
    fn devices_parse() {
        assert_eq!(DeviceName::parse("cuda:3"), Some(DeviceName::Cuda(3)));
        assert_eq!(DeviceName::parse("cpu"), Some(DeviceName::Cpu));
        // The client's `--device` and the worker's `devices` read names the same way.
        assert_eq!(DeviceName::parse("cuda"), Some(DeviceName::Cuda(0)));
        assert_eq!(DeviceName::parse("CPU"), Some(DeviceName::Cpu));
        assert_eq!(DeviceName::parse("cuda:x"), None);
        let config = WorkerConfig {
            devices: vec!["cuda:0".into(), "cuda:1".into()],
            ..Default::default()
        };
        assert_eq!(config.concurrent_jobs(), 2);
        let misspelt = WorkerConfig {
            devices: vec!["cuda:0".into(), "gpu7".into()],
            ..Default::default()
        };
        let error = misspelt.device_names().unwrap_err();
        assert!(
            error.starts_with("devices[1]: `gpu7` is not a device"),
            "{error}"
        );
        let travelled: DeviceName =
            serde_json::from_str(&serde_json::to_string(&DeviceName::Cuda(1)).unwrap()).unwrap();
        assert_eq!(travelled, DeviceName::Cuda(1));
        assert!(WorkerConfig::load(None, &no_env, &WorkerOverrides::default()).is_ok());
    }
}
