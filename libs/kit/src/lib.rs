//! What every Framewire service needs, written once.
//!
//! A service's `main` is five steps: parse the command line ([`cli`]), start
//! [`telemetry`], load and validate its [`config`], then [`run`](runtime::run) its
//! pipeline on a Tokio runtime with an [`admin`] server beside it until
//! [`shutdown`]. The [`kafka`] module builds clients from the shared `[kafka]` section,
//! creates missing topics and carries trace context in record headers; [`kafka_access`]
//! says which ACLs a configuration needs; [`auth`] guards mutations and live views with
//! the admin token.

pub mod admin;
pub mod auth;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod kafka;
pub mod kafka_access;
pub mod metrics;
pub mod redact;
pub mod runtime;
pub mod shutdown;
pub mod telemetry;
