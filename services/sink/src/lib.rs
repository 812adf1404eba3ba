//! The Framewire sink as a library: what `framewire-sink` runs, and what its tests reach.
//!
//! Per-frame statistics arrive on `framewire.stats`; the sink folds them into per-camera
//! tumbling windows ([`window`]), writes the windows that changed to SQLite or PostgreSQL
//! ([`store`]) and stores Kafka offsets only after the write ([`consume`]).
//! Configuration is [`config`], metrics are [`metrics`].

pub mod config;
pub mod consume;
pub mod metrics;
pub mod store;
pub mod window;
