//! `worker.toml`: how a worker daemon runs (listen address, data dir, store, devices, queue).
