//! What the worker keeps on disk for every job: uploaded blobs by digest, the room uploads may
//! take, and the rebuildable caches (decoded datasets, copies of bucket datasets).

pub mod blobs;
pub mod caches;
pub mod space;
