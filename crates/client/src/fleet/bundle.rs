//! Finding the worker bundle (`deploy/bundle.sh` makes it) of this client's own version, and
//! its SHA-256, which tells `client up` whether the machine already has exactly this install.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};

pub struct Bundle {
    pub path: PathBuf,
    pub version: String,
    pub sha256: String,
    pub bytes: u64,
}

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn file_name() -> String {
    format!("easel-worker-{VERSION}-linux-x86_64.tar.gz")
}

/// `explicit` (--bundle / EASEL_BUNDLE), else `dist/` here, else beside the client binary or in
/// the `dist/` of the checkout it was built in.
pub fn locate(explicit: Option<&Path>) -> anyhow::Result<Bundle> {
    let name = file_name();
    let path = match explicit {
        Some(path) => path.to_owned(),
        None => candidates(&name)
            .into_iter()
            .find(|path| path.is_file())
            .ok_or_else(|| {
                anyhow!(
                    "no worker bundle {name} found (looked in ./dist and beside the client): build it with `bash deploy/bundle.sh` in the Easel checkout (on Linux x86_64), or pass --bundle FILE"
                )
            })?,
    };
    let version = version_of(&path)?;
    if version != VERSION {
        bail!(
            "{} is a worker bundle of version {version}, and this client is {VERSION}: use the bundle of the same release (`bash deploy/bundle.sh`)",
            path.display()
        );
    }
    let (sha256, bytes) =
        sha256_of(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let listed = path.with_file_name(format!(
        "{}.sha256",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    if let Ok(text) = std::fs::read_to_string(&listed) {
        let expected = text.split_whitespace().next().unwrap_or_default();
        if expected != sha256 {
            bail!(
                "{} does not match its checksum file {} (sha256 {sha256}, listed {expected}): the bundle is damaged; build or download it again",
                path.display(),
                listed.display()
            );
        }
    }
    Ok(Bundle {
        path,
        version,
        sha256,
        bytes,
    })
}

fn candidates(name: &str) -> Vec<PathBuf> {
    let mut found = vec![PathBuf::from("dist").join(name)];
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        found.push(dir.join(name));
        // target/<profile>/client → the checkout's dist/.
        if let Some(checkout) = dir.parent().and_then(Path::parent) {
            found.push(checkout.join("dist").join(name));
        }
    }
    found
}

fn version_of(path: &Path) -> anyhow::Result<String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.strip_prefix("easel-worker-")
        .and_then(|rest| rest.strip_suffix("-linux-x86_64.tar.gz"))
        .map(str::to_owned)
        .ok_or_else(|| {
            anyhow!(
                "{} is not a worker bundle (easel-worker-VERSION-linux-x86_64.tar.gz, made by deploy/bundle.sh)",
                path.display()
            )
        })
}

fn sha256_of(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        context.update(&buffer[..n]);
        bytes += n as u64;
    }
    let digest = context.finish();
    let hex = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    Ok((hex, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_is_checked_by_name_version_and_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join(file_name());
        std::fs::write(&bundle, b"abc").unwrap();
        let found = locate(Some(&bundle)).unwrap();
        // sha256("abc")
        assert_eq!(
            found.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(found.bytes, 3);

        std::fs::write(
            dir.path().join(format!("{}.sha256", file_name())),
            format!("{}  {}\n", "0".repeat(64), file_name()),
        )
        .unwrap();
        let error = locate(Some(&bundle)).err().unwrap().to_string();
        assert!(
            error.contains("does not match its checksum file"),
            "{error}"
        );

        let other = dir.path().join("easel-worker-0.0.1-linux-x86_64.tar.gz");
        std::fs::write(&other, b"abc").unwrap();
        let error = locate(Some(&other)).err().unwrap().to_string();
        assert!(error.contains("version 0.0.1"), "{error}");
        let error = locate(Some(&dir.path().join("x.tar")))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("is not a worker bundle"), "{error}");
    }
}
