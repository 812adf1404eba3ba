//! The Framewire sink as a library: what `framewire-sink` runs, and what its tests reach.
//!
//! Per-frame statistics arrive on `framewire.stats` and decode errors on `framewire.dlq`
//! ([`frame`]). Each frame is assigned to its camera's tumbling window or dropped as late
//! ([`window`]), feeds the camera's incident intervals ([`incidents`], [`cameras`]) and is
//! merged, at the next flush, into the window's durable state ([`state`]) in the database
//! ([`store`]); Kafka offsets are stored only after that ([`consume`]). A second consumer
//! keeps a thumbnail of every camera's latest keyframe ([`preview`]). The JSON API
//! ([`api`], through a read pool of its own and an optional per-client [`ratelimit`])
//! and the web page ([`web`]) serve it all on the HTTP port. Configuration is
//! [`config`], metrics are [`metrics`], old rows go by [`retention`].

pub mod api;
pub mod cameras;
pub mod config;
pub mod consume;
pub mod frame;
pub mod incidents;
pub mod metrics;
pub mod preview;
pub mod priority;
pub mod ratelimit;
pub mod retention;
pub mod state;
pub mod store;
pub mod web;
pub mod window;
