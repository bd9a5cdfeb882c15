//! `~/.config/easel/client.toml`: how the client finds its workers. A top-level `worker`
//! (an address, or the name of a profile) with its `token` and `fingerprint`, and named profiles
//! under `[workers.NAME]`, which `client up` writes and `client down` / `client workers` read.
//! A top-level `allow_plaintext = true` lets the token travel unencrypted beyond loopback.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, anyhow};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// An address, or the name of a profile in `workers`.
    pub worker: Option<String>,
    pub token: Option<String>,
    pub fingerprint: Option<String>,
    /// Send the token over plaintext to workers beyond loopback (`--allow-plaintext`): anyone
    /// on the way can then read it. Off: such a connection is refused before anything is sent.
    #[serde(default)]
    pub allow_plaintext: bool,
    #[serde(default)]
    pub workers: BTreeMap<String, Profile>,
}

/// One worker the client knows by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// e.g. `https://203.0.113.7:50051`.
    pub address: String,
    pub token: Option<String>,
    pub fingerprint: Option<String>,
    /// The SSH destination `client up` reached the machine by (`[user@]host[:port]`).
    pub ssh: Option<String>,
    /// The ssh program and options it used (EASEL_SSH), when not plain `ssh`.
    pub ssh_command: Option<String>,
    /// The Easel folder on the machine: the install, worker.toml and the data dir.
    pub remote_dir: Option<String>,
    /// Reach the worker through an SSH port forward to `address` as the machine sees it (a
    /// worker listening on loopback), opened by the client for each connection.
    #[serde(default)]
    pub tunnel: bool,
}

/// Where a verb should connect, after flags, environment and the config file are weighed.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub address: String,
    pub token: Option<String>,
    pub fingerprint: Option<String>,
    /// The config file's `allow_plaintext`.
    pub allow_plaintext: bool,
    /// The SSH destination (and ssh command) to reach `address` through, for a profile saved
    /// with a tunnel.
    pub tunnel: Option<(String, Option<String>)>,
}

pub fn config_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("EASEL_CLIENT_CONFIG") {
        return Some(PathBuf::from(path));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("easel").join("client.toml"))
}

/// The display form of the config path, for messages.
pub fn config_path_text() -> String {
    config_path()
        .map(|path| path.display().to_string())
        .unwrap_or_else(|| "~/.config/easel/client.toml".to_owned())
}

pub fn read_config() -> anyhow::Result<ClientConfig> {
    let Some(path) = config_path() else {
        return Ok(ClientConfig::default());
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            toml::from_str(&text).with_context(|| format!("failed to read {}", path.display()))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(ClientConfig::default()),
        Err(error) => Err(error).with_context(|| format!("failed to read {}", path.display())),
    }
}

impl ClientConfig {
    /// `named` is `--worker`/EASEL_WORKER: a profile name or an address. Explicit token and
    /// fingerprint (flags or environment) win over what the config holds.
    pub fn target(
        &self,
        named: Option<&str>,
        token: Option<String>,
        fingerprint: Option<String>,
    ) -> anyhow::Result<Target> {
        let chosen = named.or(self.worker.as_deref());
        let profile = match chosen {
            Some(name) => self.workers.get(name),
            None if self.workers.len() == 1 => self.workers.values().next(),
            None => None,
        };
        if let Some(profile) = profile {
            return Ok(Target {
                address: profile.address.clone(),
                token: token.or_else(|| profile.token.clone()),
                fingerprint: fingerprint.or_else(|| profile.fingerprint.clone()),
                allow_plaintext: self.allow_plaintext,
                tunnel: profile
                    .ssh
                    .clone()
                    .filter(|_| profile.tunnel)
                    .map(|ssh| (ssh, profile.ssh_command.clone())),
            });
        }
        let Some(address) = chosen else {
            let names: Vec<&str> = self.workers.keys().map(String::as_str).collect();
            if names.is_empty() {
                return Err(anyhow!(
                    "no worker: run `client up [user@]host` to start one on a GPU machine, or pass --worker https://HOST:PORT, set EASEL_WORKER, or put `worker = \"…\"` in {}",
                    config_path_text()
                ));
            }
            return Err(anyhow!(
                "several workers are configured ({}): pass --worker NAME or set `worker = \"NAME\"` in {}",
                names.join(", "),
                config_path_text()
            ));
        };
        if !address.contains(':') && !address.contains('/') {
            // A bare word is a profile name, never a host without a port.
            return Err(anyhow!(
                "no worker profile named `{address}` in {} (`client workers` lists them)",
                config_path_text()
            ));
        }
        Ok(Target {
            address: address.to_owned(),
            token: token.or_else(|| self.token.clone()),
            fingerprint: fingerprint.or_else(|| self.fingerprint.clone()),
            allow_plaintext: self.allow_plaintext,
            tunnel: None,
        })
    }
}

/// Writes `profile` as `[workers.NAME]` and makes it the default worker, keeping the rest of the
/// file (comments included). A top-level worker address that was the default before becomes a
/// profile of its own, so nothing the user had configured is lost. Returns that profile's name.
pub fn save_profile(name: &str, profile: &Profile) -> anyhow::Result<Option<String>> {
    let path = config_path().ok_or_else(|| anyhow!("HOME is not set: no place for client.toml"))?;
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => {
            return Err(error).with_context(|| format!("failed to read {}", path.display()));
        }
    };
    let (text, kept) = with_profile(&text, name, profile)
        .with_context(|| format!("failed to update {}", path.display()))?;
    write_private(&path, &text)?;
    Ok(kept)
}

/// Removes `[workers.NAME]` (and the default, if it named it).
pub fn forget_profile(name: &str) -> anyhow::Result<()> {
    let path = config_path().ok_or_else(|| anyhow!("HOME is not set: no client.toml"))?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    let mut document: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("failed to read {}", path.display()))?;
    if let Some(workers) = document
        .get_mut("workers")
        .and_then(|w| w.as_table_like_mut())
    {
        workers.remove(name);
    }
    if document.get("worker").and_then(|w| w.as_str()) == Some(name) {
        document.remove("worker");
    }
    write_private(&path, &document.to_string())
}

fn with_profile(
    text: &str,
    name: &str,
    profile: &Profile,
) -> anyhow::Result<(String, Option<String>)> {
    let mut document: toml_edit::DocumentMut = text.parse()?;
    let existing: ClientConfig = toml::from_str(text)?;
    let mut kept = None;
    if let Some(address) = existing.worker.as_deref()
        && !existing.workers.contains_key(address)
    {
        let earlier = Profile {
            address: address.to_owned(),
            token: existing.token.clone(),
            fingerprint: existing.fingerprint.clone(),
            ..Profile::default()
        };
        let mut earlier_name = host_of(address).to_owned();
        while earlier_name == name || existing.workers.contains_key(&earlier_name) {
            earlier_name.push_str("-earlier");
        }
        insert_profile(&mut document, &earlier_name, &earlier);
        document.remove("token");
        document.remove("fingerprint");
        kept = Some(earlier_name);
    }
    insert_profile(&mut document, name, profile);
    // Root values are written before every table, so this stays a top-level key.
    document["worker"] = toml_edit::value(name);
    Ok((document.to_string(), kept))
}

fn insert_profile(document: &mut toml_edit::DocumentMut, name: &str, profile: &Profile) {
    if !document.contains_table("workers") {
        let mut workers = toml_edit::Table::new();
        workers.set_implicit(true);
        document["workers"] = toml_edit::Item::Table(workers);
    }
    let mut table = toml_edit::Table::new();
    table["address"] = toml_edit::value(&profile.address);
    let optional = [
        ("token", &profile.token),
        ("fingerprint", &profile.fingerprint),
        ("ssh", &profile.ssh),
        ("ssh_command", &profile.ssh_command),
        ("remote_dir", &profile.remote_dir),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            table[key] = toml_edit::value(value);
        }
    }
    if profile.tunnel {
        table["tunnel"] = toml_edit::value(true);
    }
    document["workers"][name] = toml_edit::Item::Table(table);
}

/// The host of an address such as `https://gpu-box:50051`.
fn host_of(address: &str) -> &str {
    let rest = address.split_once("://").map_or(address, |(_, rest)| rest);
    let rest = rest.split('/').next().unwrap_or(rest);
    match rest.rsplit_once(':') {
        Some((host, _)) if !host.is_empty() => host.trim_start_matches('[').trim_end_matches(']'),
        _ => rest,
    }
}

/// The file holds tokens: written whole (no torn config after a crash) and readable only by
/// its owner.
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("failed to create {}", parent.display()))?;
    }
    easel_store::private_file::write_private(path, text.as_bytes())
        .with_context(|| format!("failed to write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(address: &str) -> Profile {
        Profile {
            address: address.to_owned(),
            token: Some("t".to_owned()),
            fingerprint: Some("sha256:ab".to_owned()),
            ssh: Some("ubuntu@gpu".to_owned()),
            ..Profile::default()
        }
    }

    #[test]
    fn a_saved_profile_becomes_the_default_and_keeps_comments() {
        let (text, kept) = with_profile("# mine\n", "gpu", &profile("https://gpu:50051")).unwrap();
        assert_eq!(kept, None);
        assert!(text.contains("# mine\n"), "{text}");
        let config: ClientConfig = toml::from_str(&text).unwrap();
        assert_eq!(config.worker.as_deref(), Some("gpu"));
        assert_eq!(config.workers["gpu"], profile("https://gpu:50051"));
        let target = config.target(None, None, None).unwrap();
        assert_eq!(target.address, "https://gpu:50051");
        assert_eq!(target.token.as_deref(), Some("t"));
    }

    #[test]
    fn an_earlier_default_address_is_kept_as_a_profile() {
        let before = "worker = \"http://old-box:50051\"\ntoken = \"old\"\n";
        let (text, kept) = with_profile(before, "gpu", &profile("https://gpu:50051")).unwrap();
        assert_eq!(kept.as_deref(), Some("old-box"));
        let config: ClientConfig = toml::from_str(&text).unwrap();
        assert_eq!(config.token, None);
        assert_eq!(config.workers["old-box"].token.as_deref(), Some("old"));
        let old = config.target(Some("old-box"), None, None).unwrap();
        assert_eq!(old.address, "http://old-box:50051");
        // A second profile later keeps both, and the latest is the default.
        let (text, kept) = with_profile(&text, "gpu2", &profile("https://gpu2:50051")).unwrap();
        assert_eq!(kept, None);
        let config: ClientConfig = toml::from_str(&text).unwrap();
        assert_eq!(config.workers.len(), 3);
        assert_eq!(
            config.target(None, None, None).unwrap().address,
            "https://gpu2:50051"
        );
    }

    #[test]
    fn explicit_credentials_win_and_unknown_names_say_where_to_look() {
        let (text, _) = with_profile("", "gpu", &profile("https://gpu:50051")).unwrap();
        let config: ClientConfig = toml::from_str(&text).unwrap();
        let target = config
            .target(Some("gpu"), Some("flag".to_owned()), None)
            .unwrap();
        assert_eq!(target.token.as_deref(), Some("flag"));
        assert_eq!(target.fingerprint.as_deref(), Some("sha256:ab"));
        let address = config.target(Some("other:50051"), None, None).unwrap();
        assert_eq!(address.address, "other:50051");
        let error = config.target(Some("nope"), None, None).unwrap_err();
        assert!(
            error.to_string().contains("no worker profile named `nope`"),
            "{error}"
        );
    }

    #[test]
    fn with_no_default_one_profile_is_used_and_several_must_be_named() {
        let mut config = ClientConfig::default();
        assert!(
            config
                .target(None, None, None)
                .unwrap_err()
                .to_string()
                .contains("client up")
        );
        config.workers.insert("a".into(), profile("https://a:1"));
        assert_eq!(
            config.target(None, None, None).unwrap().address,
            "https://a:1"
        );
        config.workers.insert("b".into(), profile("https://b:1"));
        let error = config.target(None, None, None).unwrap_err().to_string();
        assert!(
            error.contains("several workers are configured (a, b)"),
            "{error}"
        );
    }

    #[test]
    fn plaintext_is_allowed_only_when_the_file_says_so() {
        let config: ClientConfig = toml::from_str("worker = \"http://10.0.0.2:50051\"\n").unwrap();
        assert!(!config.target(None, None, None).unwrap().allow_plaintext);
        let (text, _) = with_profile(
            "allow_plaintext = true\n",
            "lab",
            &profile("http://10.0.0.2:50051"),
        )
        .unwrap();
        let config: ClientConfig = toml::from_str(&text).unwrap();
        assert!(
            config
                .target(Some("lab"), None, None)
                .unwrap()
                .allow_plaintext
        );
        assert!(
            config
                .target(Some("10.0.0.3:1"), None, None)
                .unwrap()
                .allow_plaintext
        );
    }

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("https://gpu-box:50051"), "gpu-box");
        assert_eq!(host_of("10.0.0.2:50051"), "10.0.0.2");
        assert_eq!(host_of("http://[::1]:50051"), "::1");
    }
}
