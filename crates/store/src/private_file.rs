//! Local files that must survive a crash whole: written beside their place, flushed to disk and
//! renamed over it (the folder flushed too, so the rename itself survives a power loss): a crash
//! leaves the old file or the new one and never half of either. `write_private` makes them
//! readable by their owner only from the moment they exist (a TLS key, a token, a client config
//! with tokens).

use std::io::Write;
use std::path::Path;

pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_durably(path, bytes, 0o600)
}

/// Like `write_private` for a file others on the machine may read (mode 0644 less the umask).
pub fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_durably(path, bytes, 0o644)
}

fn write_durably(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&partial)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&partial, path)?;
    sync_folder_of(path)
}

/// Flushes the folder holding `path`, so a rename into it survives a power loss.
pub fn sync_folder_of(path: &Path) -> std::io::Result<()> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    #[cfg(unix)]
    std::fs::File::open(folder)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = folder;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_replaced_whole_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.toml");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(!dir.path().join("secret.toml.partial").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
