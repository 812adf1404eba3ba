//! Ingest configuration (`framewire-ingest --config ingest.toml`); reference in `docs/config.md`.

use std::collections::HashSet;

use framewire_kit::config::{AdminConfig, ConfigError, Validate, check_range};
use framewire_kit::kafka::{KafkaConfig, TopicsConfig};
use framewire_wire::CameraSpec;
use serde::{Deserialize, Serialize};

/// Default admin port of ingest.
pub const ADMIN_PORT: u16 = 9091;

/// The whole ingest configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Admin server.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Brokers and librdkafka options.
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// Topic names and creation settings.
    #[serde(default)]
    pub topics: TopicsConfig,
    /// Session and delivery behaviour.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// Cameras to stream (`[[cameras]]` tables).
    #[serde(default)]
    pub cameras: Vec<CameraSpec>,
}

/// `[ingest]`: how sessions are run and frames delivered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Time allowed for DESCRIBE, SETUP and PLAY together.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// A session that delivers no frame for this long is torn down and reconnected
    /// (a server that ends its stream leaves the RTSP client waiting forever otherwise).
    #[serde(default = "default_stall_timeout_ms")]
    pub stall_timeout_ms: u64,
    /// First reconnect delay; doubles per failure, with ±20% jitter.
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// Longest reconnect delay.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// Producer `linger.ms`: how long a record may wait for others to batch with.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u32,
    /// Time allowed on SIGTERM to tear sessions down and flush the producer.
    #[serde(default = "default_shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
    /// Bytes of access units a camera may queue while Kafka is slow or down; beyond it
    /// whole GOPs are dropped, oldest first.
    #[serde(default = "default_queue_max_bytes")]
    pub queue_max_bytes: usize,
    /// Records of one camera handed to the producer and not yet acknowledged.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// How long the producer keeps retrying a record before it counts as a delivery error.
    #[serde(default = "default_delivery_timeout_ms")]
    pub delivery_timeout_ms: u64,
    /// Number of ingest replicas sharing the registry.
    #[serde(default = "default_shards")]
    pub shards: u32,
    /// This replica's index, `0..shards` (ignored with `shard_from_hostname`).
    #[serde(default)]
    pub shard: u32,
    /// Take the index from the StatefulSet ordinal at the end of `HOSTNAME`
    /// (`framewire-ingest-2` → 2).
    #[serde(default)]
    pub shard_from_hostname: bool,
    /// Read cameras from the control topic (and let the admin API write to it).
    #[serde(default = "default_true")]
    pub control_topic: bool,
    /// Bearer token that `PUT`/`DELETE /cameras/{id}` must carry; unset = writes refused.
    #[serde(default)]
    pub admin_token: Option<String>,
}

fn default_connect_timeout_ms() -> u64 {
    10_000
}
fn default_stall_timeout_ms() -> u64 {
    10_000
}
fn default_backoff_initial_ms() -> u64 {
    500
}
fn default_backoff_max_ms() -> u64 {
    30_000
}
fn default_linger_ms() -> u32 {
    5
}
fn default_shutdown_grace_ms() -> u64 {
    10_000
}
fn default_queue_max_bytes() -> usize {
    16 * 1024 * 1024
}
fn default_max_in_flight() -> usize {
    100
}
fn default_delivery_timeout_ms() -> u64 {
    300_000
}
fn default_shards() -> u32 {
    1
}
fn default_true() -> bool {
    true
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            connect_timeout_ms: default_connect_timeout_ms(),
            stall_timeout_ms: default_stall_timeout_ms(),
            backoff_initial_ms: default_backoff_initial_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            linger_ms: default_linger_ms(),
            shutdown_grace_ms: default_shutdown_grace_ms(),
            queue_max_bytes: default_queue_max_bytes(),
            max_in_flight: default_max_in_flight(),
            delivery_timeout_ms: default_delivery_timeout_ms(),
            shards: default_shards(),
            shard: 0,
            shard_from_hostname: false,
            control_topic: true,
            admin_token: None,
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.kafka.validate()?;
        self.topics.validate()?;
        let i = &self.ingest;
        check_range(
            "ingest.connect_timeout_ms",
            i.connect_timeout_ms,
            100,
            600_000,
        )?;
        check_range("ingest.stall_timeout_ms", i.stall_timeout_ms, 500, 600_000)?;
        check_range(
            "ingest.backoff_initial_ms",
            i.backoff_initial_ms,
            10,
            600_000,
        )?;
        check_range(
            "ingest.backoff_max_ms",
            i.backoff_max_ms,
            i.backoff_initial_ms,
            3_600_000,
        )?;
        check_range("ingest.linger_ms", i.linger_ms, 0, 1_000)?;
        check_range("ingest.shutdown_grace_ms", i.shutdown_grace_ms, 0, 600_000)?;
        check_range(
            "ingest.queue_max_bytes",
            i.queue_max_bytes,
            1 << 20,
            1 << 34,
        )?;
        check_range("ingest.max_in_flight", i.max_in_flight, 1, 100_000)?;
        check_range(
            "ingest.delivery_timeout_ms",
            i.delivery_timeout_ms,
            1_000,
            86_400_000,
        )?;
        check_range("ingest.shards", i.shards, 1, 10_000)?;
        self.shard()?;
        if i.admin_token.as_deref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError::invalid(
                "ingest.admin_token",
                "must be at least 16 characters",
            ));
        }
        let mut seen = HashSet::new();
        for (n, cam) in self.cameras.iter().enumerate() {
            cam.validate()
                .map_err(|m| ConfigError::invalid(format!("cameras[{n}]"), m))?;
            if !seen.insert(cam.id.as_str()) {
                return Err(ConfigError::invalid(
                    format!("cameras[{n}].id"),
                    format!("camera id {:?} is used twice", cam.id),
                ));
            }
        }
        Ok(())
    }
}

impl Config {
    /// This replica's shard, from `ingest.shard` or the StatefulSet ordinal.
    pub fn shard(&self) -> Result<crate::shard::Shard, ConfigError> {
        let i = &self.ingest;
        let index = if i.shard_from_hostname {
            let host = std::env::var("HOSTNAME").unwrap_or_default();
            crate::shard::ordinal_from_hostname(&host).ok_or_else(|| {
                ConfigError::invalid(
                    "ingest.shard_from_hostname",
                    format!(
                        "HOSTNAME {host:?} does not end in -<ordinal> (a StatefulSet pod name)"
                    ),
                )
            })?
        } else {
            i.shard
        };
        if index >= i.shards {
            return Err(ConfigError::invalid(
                if i.shard_from_hostname {
                    "ingest.shard_from_hostname"
                } else {
                    "ingest.shard"
                },
                format!("shard {index} is not below ingest.shards = {}", i.shards),
            ));
        }
        Ok(crate::shard::Shard {
            index,
            count: i.shards,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam(id: &str, url: &str) -> CameraSpec {
        serde_json::from_value(serde_json::json!({"id": id, "url": url})).unwrap()
    }

    #[test]
    fn cameras_are_validated_by_index() {
        let mut c = Config {
            cameras: vec![cam("a", "rtsp://h/a"), cam("b", "rtsp://h/b")],
            ..Config::default()
        };
        assert!(c.validate().is_ok());
        c.cameras.push(cam("a", "rtsp://h/c"));
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "invalid setting `cameras[2].id`: camera id \"a\" is used twice"
        );
        c.cameras = vec![cam("a", "http://h/a")];
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("invalid setting `cameras[0]`")
        );
    }

    #[test]
    fn shard_settings() {
        let mut c = Config::default();
        c.ingest.shards = 2;
        c.ingest.shard = 1;
        assert_eq!(
            c.shard().unwrap(),
            crate::shard::Shard { index: 1, count: 2 }
        );
        c.ingest.shard = 2;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("`ingest.shard`")
        );
        c.ingest.shard = 0;
        c.ingest.admin_token = Some("short".into());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("ingest.admin_token")
        );
    }

    #[test]
    fn backoff_cap_must_not_be_below_start() {
        let mut c = Config::default();
        c.ingest.backoff_initial_ms = 5_000;
        c.ingest.backoff_max_ms = 1_000;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("ingest.backoff_max_ms")
        );
    }
}
