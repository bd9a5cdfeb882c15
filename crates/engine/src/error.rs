//! The engine's one error type. Messages name the file, tensor or setting at fault.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An image that cannot be read or decoded; `name` is its dataset path or file path.
    #[error("image {name}: {message}")]
    Image { name: String, message: String },

    /// Decompression-bomb guard: checked from the header, before any pixel is decoded.
    #[error(
        "image {name} is {width}x{height} = {pixels} pixels, above the limit of {limit} pixels \
         (data.max_image_pixels)"
    )]
    ImageTooLarge {
        name: String,
        width: u32,
        height: u32,
        pixels: u64,
        limit: u64,
    },

    /// The model's backbone would shrink the image to nothing (e.g. VGG needs >= 32 px).
    #[error(
        "image size {height}x{width} is too small for {model}: it needs at least \
         {minimum}x{minimum} pixels ({detail})"
    )]
    ImageTooSmall {
        model: String,
        height: i64,
        width: i64,
        minimum: i64,
        detail: String,
    },

    /// Pretrained weights that do not fit the model: every missing or mismatched tensor listed.
    #[error("weights {path}: {problems}", problems = problems.join("; "))]
    Weights {
        path: PathBuf,
        problems: Vec<String>,
    },

    /// The experiment or the data cannot be trained as given (empty split, bad number...).
    #[error("{0}")]
    Invalid(String),

    /// The run needs more memory than where it would train has (see `fits.rs`).
    #[error("{0}")]
    TooLarge(String),

    /// A run directory or checkpoint that is missing pieces or was made for something else.
    #[error("{path}: {message}")]
    Artifact { path: PathBuf, message: String },

    #[error("{context}: {source}")]
    Json {
        context: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn artifact(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Artifact {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn json(context: impl Into<String>, source: serde_json::Error) -> Self {
        Error::Json {
            context: context.into(),
            source,
        }
    }
}
