//! The run directory: files written atomically and announced with `TrainEvent::ArtifactWritten`
//! (so the worker can copy each finished file to object storage).

pub use easel_report::plots;

use crate::events::TrainEvent;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

pub use easel_spec::outputs::{
    BEST_WEIGHTS, CHECKPOINT, CLASSES, CONFUSION_PLOT, CURVES_PLOT, LAST_WEIGHTS, MANIFEST,
    METRICS, MISTAKES, REPORT, REPORT_PAGE, SPEC,
};

/// Writes `bytes` to a temporary file beside `path`, flushes it and renames it into place.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{file_name}.partial-{}", std::process::id()));
    let result = (|| {
        use std::io::Write;
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        Error::io(path, e)
    })
}

/// A run directory that announces each file it completes.
pub struct RunDir<'a> {
    root: &'a Path,
}

impl<'a> RunDir<'a> {
    pub fn new(root: &'a Path) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
        Ok(RunDir { root })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Writes `name` atomically and announces it.
    pub fn write(
        &self,
        name: &str,
        bytes: &[u8],
        on_event: &mut dyn FnMut(TrainEvent),
    ) -> Result<()> {
        write_atomically(&self.path(name), bytes)?;
        self.announce(name, on_event)
    }

    pub fn write_json<T: serde::Serialize>(
        &self,
        name: &str,
        value: &T,
        on_event: &mut dyn FnMut(TrainEvent),
    ) -> Result<()> {
        let mut text = serde_json::to_vec_pretty(value).map_err(|e| Error::json(name, e))?;
        text.push(b'\n');
        self.write(name, &text, on_event)
    }

    /// Announces a file already complete on disk.
    pub fn announce(&self, name: &str, on_event: &mut dyn FnMut(TrainEvent)) -> Result<()> {
        let path = self.path(name);
        let bytes = std::fs::metadata(&path)
            .map_err(|e| Error::io(&path, e))?
            .len();
        on_event(TrainEvent::ArtifactWritten {
            name: name.to_string(),
            bytes,
        });
        Ok(())
    }

    /// Saves named tensors as safetensors (atomically) and announces the file.
    pub fn write_weights(
        &self,
        name: &str,
        vs: &tch::nn::VarStore,
        on_event: &mut dyn FnMut(TrainEvent),
    ) -> Result<()> {
        let path = self.path(name);
        let dir = path.parent().unwrap_or(self.root);
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let temporary = dir.join(format!(".partial-{}.safetensors", std::process::id()));
        let mut named: Vec<(String, tch::Tensor)> = vs
            .variables()
            .into_iter()
            .map(|(n, t)| (n, t.detach().to_device(tch::Device::Cpu).contiguous()))
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        tch::Tensor::write_safetensors(&named, &temporary)?;
        std::fs::rename(&temporary, &path).map_err(|e| Error::io(&path, e))?;
        self.announce(name, on_event)
    }
}
