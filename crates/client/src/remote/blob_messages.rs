//! Turning the blobs an upload needs into UploadBlobs messages: small files side by side, many
//! to a message (a message per file costs more than the file), large files read and sent piece
//! by piece (never held whole). Every blob is hashed as it is read, and one that changed since
//! the scan is refused before its last piece leaves, so the worker never gets the wrong bytes.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use easel_dataset::LocalSource;
use easel_proto::protocol::{MAX_CHUNKS_PER_MESSAGE, chunk_checksum};
use easel_proto::v1 as pb;

/// A blob that travels beside the dataset's images: pretrained weights (a file) or the
/// manifest itself (bytes made here).
#[derive(Debug, Clone)]
pub enum ExtraBlob {
    File(PathBuf),
    Bytes(Arc<Vec<u8>>),
}

/// Extra blobs by digest.
pub type ExtraBlobs = std::collections::HashMap<String, ExtraBlob>;

/// One blob to send: its digest, whole size and the bytes the worker already holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingBlob {
    pub digest: String,
    pub size: u64,
    pub committed: u64,
}

/// Where the bytes of an upload's blobs are read from.
#[derive(Clone)]
pub struct BlobReader {
    pub source: LocalSource,
    pub extra: ExtraBlobs,
}

struct SharedBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl BlobReader {
    fn open(&self, digest: &str) -> anyhow::Result<Box<dyn Read + Send>> {
        match self.extra.get(digest) {
            Some(ExtraBlob::File(path)) => {
                Ok(Box::new(std::fs::File::open(path).with_context(|| {
                    format!("failed to read {}", path.display())
                })?))
            }
            Some(ExtraBlob::Bytes(bytes)) => {
                Ok(Box::new(std::io::Cursor::new(SharedBytes(bytes.clone()))))
            }
            None => self
                .source
                .open_digest(digest)
                .with_context(|| format!("failed to read blob {digest}")),
        }
    }

    fn name(&self, digest: &str) -> String {
        match self.extra.get(digest) {
            Some(ExtraBlob::File(path)) => path.display().to_string(),
            Some(ExtraBlob::Bytes(_)) => format!("blob {digest}"),
            None => self
                .source
                .display_path(digest)
                .unwrap_or(digest)
                .to_owned(),
        }
    }
}

/// Fills messages of at most `chunk_bytes` of data and [`MAX_CHUNKS_PER_MESSAGE`] chunks, and
/// hands each full one to `send` (false: the call ended, stop).
pub struct MessagePacker<'a> {
    reader: &'a BlobReader,
    chunk_bytes: usize,
    pending: Vec<pb::BlobChunk>,
    pending_bytes: usize,
}

/// What packing sent, in blob bytes (not counting what the worker already held).
pub enum Packed {
    Sent(u64),
    /// The receiving end went away: the call's status says why.
    Stopped,
}

impl<'a> MessagePacker<'a> {
    pub fn new(reader: &'a BlobReader, chunk_bytes: usize) -> Self {
        MessagePacker {
            reader,
            chunk_bytes: chunk_bytes.max(1),
            pending: Vec::new(),
            pending_bytes: 0,
        }
    }

    /// Adds one blob's missing bytes, sending messages as they fill; `on_bytes` hears of each
    /// piece handed over.
    pub fn add(
        &mut self,
        blob: &MissingBlob,
        send: &mut dyn FnMut(pb::BlobChunks) -> bool,
        on_bytes: &dyn Fn(u64),
    ) -> anyhow::Result<Packed> {
        let mut reader = self.reader.open(&blob.digest)?;
        let mut digester = easel_digest::Digester::default();
        let changed = || {
            format!(
                "{}: changed since the scan; scan again (submit again) to upload it",
                self.reader.name(&blob.digest)
            )
        };
        // The bytes the worker holds are read only to check the whole blob at the end.
        digester
            .update_reader((&mut reader).take(blob.committed))
            .with_context(changed)?;
        if digester.len() < blob.committed {
            bail!(changed());
        }
        let mut offset = blob.committed;
        let mut sent = 0u64;
        loop {
            let take = (blob.size - offset).min(self.chunk_bytes as u64) as usize;
            // Read into fresh capacity: zero-filling a buffer about to be overwritten cost as
            // much as hashing it.
            let mut data = Vec::with_capacity(take);
            (&mut reader)
                .take(take as u64)
                .read_to_end(&mut data)
                .with_context(|| format!("failed to read {}", self.reader.name(&blob.digest)))?;
            if data.len() < take {
                bail!(changed());
            }
            digester.update(&data);
            if offset + take as u64 == blob.size && digester.finish() != blob.digest {
                bail!(changed());
            }
            let chunk = pb::BlobChunk {
                digest: blob.digest.clone(),
                total_size: blob.size,
                offset,
                crc32c: chunk_checksum(&data),
                data,
            };
            if !self.push(chunk, send) {
                return Ok(Packed::Stopped);
            }
            on_bytes(take as u64);
            sent += take as u64;
            offset += take as u64;
            if offset >= blob.size {
                return Ok(Packed::Sent(sent));
            }
        }
    }

    /// Sends what is pending; false when the receiving end went away.
    pub fn flush(&mut self, send: &mut dyn FnMut(pb::BlobChunks) -> bool) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        self.pending_bytes = 0;
        send(pb::BlobChunks {
            chunks: std::mem::take(&mut self.pending),
        })
    }

    fn push(&mut self, chunk: pb::BlobChunk, send: &mut dyn FnMut(pb::BlobChunks) -> bool) -> bool {
        let full = self.pending.len() >= MAX_CHUNKS_PER_MESSAGE
            || self.pending_bytes + chunk.data.len() > self.chunk_bytes;
        if full && !self.flush(send) {
            return false;
        }
        self.pending_bytes += chunk.data.len();
        self.pending.push(chunk);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader_of(blobs: &[Vec<u8>]) -> (BlobReader, Vec<MissingBlob>) {
        let mut extra = ExtraBlobs::new();
        let mut missing = Vec::new();
        for bytes in blobs {
            let digest = easel_digest::digest_bytes(bytes);
            extra.insert(digest.clone(), ExtraBlob::Bytes(Arc::new(bytes.clone())));
            missing.push(MissingBlob {
                digest,
                size: bytes.len() as u64,
                committed: 0,
            });
        }
        let reader = BlobReader {
            source: LocalSource::default(),
            extra,
        };
        (reader, missing)
    }

    fn pack(
        reader: &BlobReader,
        missing: &[MissingBlob],
        chunk_bytes: usize,
    ) -> Vec<pb::BlobChunks> {
        let mut messages = Vec::new();
        let mut send = |m: pb::BlobChunks| {
            messages.push(m);
            true
        };
        let mut packer = MessagePacker::new(reader, chunk_bytes);
        for blob in missing {
            packer.add(blob, &mut send, &|_| {}).unwrap();
        }
        packer.flush(&mut send);
        messages
    }

    #[test]
    fn small_blobs_share_messages_and_large_ones_are_split() {
        let small: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 100]).collect();
        let (reader, missing) = reader_of(&small);
        let messages = pack(&reader, &missing, 450);
        // Four 100-byte blobs fit in 450 bytes: 4 + 4 + 2.
        let counts: Vec<usize> = messages.iter().map(|m| m.chunks.len()).collect();
        assert_eq!(counts, [4, 4, 2]);

        let large = vec![(0..1000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>()];
        let (reader, missing) = reader_of(&large);
        let messages = pack(&reader, &missing, 450);
        let pieces: Vec<(u64, usize)> = messages
            .iter()
            .flat_map(|m| m.chunks.iter().map(|c| (c.offset, c.data.len())))
            .collect();
        assert_eq!(pieces, [(0, 450), (450, 450), (900, 100)]);
        let rebuilt: Vec<u8> = messages
            .iter()
            .flat_map(|m| m.chunks.iter().flat_map(|c| c.data.clone()))
            .collect();
        assert_eq!(rebuilt, large[0]);
    }

    #[test]
    fn no_message_carries_more_chunks_than_the_protocol_allows() {
        let tiny: Vec<Vec<u8>> = (0..1200u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let (reader, missing) = reader_of(&tiny);
        let messages = pack(&reader, &missing, 1 << 20);
        assert!(
            messages
                .iter()
                .all(|m| m.chunks.len() <= MAX_CHUNKS_PER_MESSAGE)
        );
        assert_eq!(messages.iter().map(|m| m.chunks.len()).sum::<usize>(), 1200);
    }

    #[test]
    fn a_resumed_blob_sends_only_what_the_worker_lacks() {
        let content: Vec<u8> = (0..1000u32).map(|i| (i % 7) as u8).collect();
        let (reader, mut missing) = reader_of(std::slice::from_ref(&content));
        missing[0].committed = 600;
        let messages = pack(&reader, &missing, 256);
        let pieces: Vec<(u64, usize)> = messages
            .iter()
            .flat_map(|m| m.chunks.iter().map(|c| (c.offset, c.data.len())))
            .collect();
        assert_eq!(pieces, [(600, 256), (856, 144)]);
    }

    #[test]
    fn a_blob_that_changed_since_the_scan_is_refused_before_its_last_piece() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weights.bin");
        std::fs::write(&path, vec![1u8; 1000]).unwrap();
        let digest = easel_digest::digest_bytes(&[1u8; 1000]);
        std::fs::write(&path, vec![2u8; 1000]).unwrap();
        let reader = BlobReader {
            source: LocalSource::default(),
            extra: ExtraBlobs::from([(digest.clone(), ExtraBlob::File(path))]),
        };
        let missing = MissingBlob {
            digest,
            size: 1000,
            committed: 0,
        };
        let mut offsets = Vec::new();
        let mut send = |m: pb::BlobChunks| {
            offsets.extend(m.chunks.iter().map(|c| c.offset));
            true
        };
        let mut packer = MessagePacker::new(&reader, 400);
        let error = match packer.add(&missing, &mut send, &|_| {}) {
            Err(error) => error.to_string(),
            Ok(_) => panic!("a changed file was sent"),
        };
        assert!(error.contains("changed since the scan"), "{error}");
        packer.flush(&mut send);
        assert!(!offsets.contains(&800), "{offsets:?}");
    }
}
