//! Reading one candidate file: content digest, and a header check that reads the image's
//! dimensions without decoding its pixels.

use crate::digest::digest_bytes;
use crate::filetype::{Sniffed, has_image_extension, sniff};
use crate::roots::{Candidate, Location};
use std::io::{Cursor, Read};

pub(crate) enum Inspected {
    Image {
        digest: String,
        size: u64,
        width: u32,
        height: u32,
    },
    NotAnImage,
    Unreadable {
        reason: String,
    },
    Oversized {
        width: u32,
        height: u32,
    },
}

pub(crate) fn inspect(
    candidate: &Candidate,
    max_image_pixels: u64,
    max_file_bytes: u64,
) -> Inspected {
    let name = candidate.rel_path.rsplit('/').next().unwrap_or_default();
    if !has_image_extension(name) {
        match read_head(&candidate.location, max_file_bytes) {
            Ok(head) => match sniff(&head) {
                Sniffed::NotAnImage => return Inspected::NotAnImage,
                Sniffed::UnsupportedImage(format) => return unsupported(format),
                Sniffed::Image(_) => {}
            },
            Err(error) => {
                return Inspected::Unreadable {
                    reason: error.to_string(),
                };
            }
        }
    }
    let bytes = match read_all(&candidate.location, max_file_bytes) {
        Ok(bytes) => bytes,
        Err(error) => {
            return Inspected::Unreadable {
                reason: error.to_string(),
            };
        }
    };
    let digest = digest_bytes(&bytes);
    match sniff(&bytes) {
        Sniffed::Image(_) => {}
        Sniffed::UnsupportedImage(format) => return unsupported(format),
        Sniffed::NotAnImage => {
            return Inspected::Unreadable {
                reason: "content is not a JPEG, PNG, WebP, GIF or BMP image".to_owned(),
            };
        }
    }
    let reader = match image::ImageReader::new(Cursor::new(&bytes)).with_guessed_format() {
        Ok(reader) => reader,
        Err(error) => {
            return Inspected::Unreadable {
                reason: error.to_string(),
            };
        }
    };
    match reader.into_dimensions() {
        Ok((width, height)) if u64::from(width) * u64::from(height) > max_image_pixels => {
            Inspected::Oversized { width, height }
        }
        Ok((width, height)) => Inspected::Image {
            digest,
            size: bytes.len() as u64,
            width,
            height,
        },
        Err(error) => Inspected::Unreadable {
            reason: format!("bad image header: {error}"),
        },
    }
}

fn unsupported(format: image::ImageFormat) -> Inspected {
    Inspected::Unreadable {
        reason: format!("{format:?} images are not supported"),
    }
}

const SNIFF_BYTES: usize = 32;

fn read_head(location: &Location, max_file_bytes: u64) -> std::io::Result<Vec<u8>> {
    match location {
        Location::File(path) => {
            let mut head = Vec::with_capacity(SNIFF_BYTES);
            std::fs::File::open(path)?
                .take(SNIFF_BYTES as u64)
                .read_to_end(&mut head)?;
            Ok(head)
        }
        // Zip entries are compressed as a whole; non-images in archives are few.
        Location::ZipEntry { .. } => {
            let mut bytes = read_all(location, max_file_bytes)?;
            bytes.truncate(SNIFF_BYTES);
            Ok(bytes)
        }
    }
}

pub(crate) fn read_all(location: &Location, max_file_bytes: u64) -> std::io::Result<Vec<u8>> {
    match location {
        Location::File(path) => {
            let file = std::fs::File::open(path)?;
            let size = file.metadata()?.len();
            if size > max_file_bytes {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("file has {size} bytes, more than the limit of {max_file_bytes}"),
                ));
            }
            let mut bytes = Vec::with_capacity(size as usize);
            file.take(max_file_bytes).read_to_end(&mut bytes)?;
            Ok(bytes)
        }
        Location::ZipEntry { archive, index } => archive.read(*index, max_file_bytes),
    }
}
