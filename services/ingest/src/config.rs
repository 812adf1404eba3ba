//! Ingest configuration (`framewire-ingest --config ingest.toml`); reference in `docs/config.md`.

use std::collections::HashSet;

use framewire_kit::config::{AdminConfig, ConfigError, Validate, check_range};
use framewire_kit::kafka::{KafkaConfig, TopicsConfig};
use framewire_kit::kafka_access::{KafkaAccess, KafkaNeeds, PatternType};
use framewire_wire::CameraSpec;

use crate::credentials::CredentialPolicy;
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
    /// Consumer group of the ingest replicas on the lease topic (`topics.leases`): the
    /// group's partition assignment decides which replica runs which camera.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Partitions of the lease topic when ingest creates it: one lease slot each, the most
    /// replicas that can share the cameras. An existing topic's partition count wins.
    #[serde(default = "default_lease_slots")]
    pub lease_slots: i32,
    /// The group's `session.timeout.ms`: how long a replica that stops answering (killed,
    /// cut off from Kafka) keeps its cameras before they move to the others.
    #[serde(default = "default_lease_timeout_ms")]
    pub lease_timeout_ms: u64,
    /// The group's `group.instance.id` (static membership): a replica restarted with the
    /// same id gets its slots back at once. The chart sets it to the pod name.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Read cameras from the control topic (and let the admin API write to it).
    #[serde(default = "default_true")]
    pub control_topic: bool,
    /// Camera password variables (`credentials.password_env`) must start with this: a
    /// spec can never name another setting's secret.
    #[serde(default = "default_credentials_env_prefix")]
    pub credentials_env_prefix: String,
    /// Camera password files (`credentials.password_file`) must lie inside this directory
    /// (a name inside it, or an absolute path under it; symlinks may not leave it).
    #[serde(default = "default_credentials_dir")]
    pub credentials_dir: String,
    /// Removed: `ingest.admin_token` moved to `admin.token` (one rule on every service);
    /// kept only to refuse it clearly.
    #[serde(default, skip_serializing)]
    pub admin_token: Option<serde_json::Value>,
    /// Removed: `ingest.shards` (replaced by leases); kept only to refuse it clearly.
    #[serde(default, skip_serializing)]
    pub shards: Option<serde_json::Value>,
    /// Removed: `ingest.shard` (replaced by leases); kept only to refuse it clearly.
    #[serde(default, skip_serializing)]
    pub shard: Option<serde_json::Value>,
    /// Removed: `ingest.shard_from_hostname` (replaced by leases); kept only to refuse it
    /// clearly.
    #[serde(default, skip_serializing)]
    pub shard_from_hostname: Option<serde_json::Value>,
}

/// Default of `ingest.credentials_env_prefix`.
pub const DEFAULT_CREDENTIALS_ENV_PREFIX: &str = "FRAMEWIRE_CAMERA_";
/// Default of `ingest.credentials_dir` (where the Helm chart mounts camera passwords).
pub const DEFAULT_CREDENTIALS_DIR: &str = "/etc/framewire/camera-credentials";

fn default_credentials_env_prefix() -> String {
    DEFAULT_CREDENTIALS_ENV_PREFIX.to_owned()
}
fn default_credentials_dir() -> String {
    DEFAULT_CREDENTIALS_DIR.to_owned()
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
fn default_group_id() -> String {
    "framewire-ingest".to_owned()
}
fn default_lease_slots() -> i32 {
    60
}
fn default_lease_timeout_ms() -> u64 {
    10_000
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
            group_id: default_group_id(),
            lease_slots: default_lease_slots(),
            lease_timeout_ms: default_lease_timeout_ms(),
            instance_id: None,
            control_topic: true,
            credentials_env_prefix: default_credentials_env_prefix(),
            credentials_dir: default_credentials_dir(),
            admin_token: None,
            shards: None,
            shard: None,
            shard_from_hostname: None,
        }
    }
}

impl IngestConfig {
    /// Prefix of the control topic readers' groups: each replica reads the whole registry
    /// in a group of its own, `<group_id>-control-<random>`, that never commits.
    pub fn control_group_prefix(&self) -> String {
        format!("{}-control-", self.group_id)
    }

    /// Where camera passwords may come from.
    pub fn credential_policy(&self) -> CredentialPolicy {
        CredentialPolicy::new(&self.credentials_env_prefix, &self.credentials_dir)
    }
}

impl Config {
    /// Where camera passwords may come from (`ingest.credentials_*`).
    pub fn credential_policy(&self) -> CredentialPolicy {
        self.ingest.credential_policy()
    }
}

impl KafkaNeeds for Config {
    fn kafka_access(&self) -> KafkaAccess {
        let (t, i) = (&self.topics, &self.ingest);
        let mut a = KafkaAccess::default();
        a.produces(&t.frames, "the cameras' access units")
            .consumes(&t.leases, "lease slots (never written)")
            .group(PatternType::Literal, &i.group_id, "the lease group");
        let mut created = vec![t.frames.as_str(), t.leases.as_str()];
        if i.control_topic {
            a.consumes(&t.control, "the camera registry")
                .produces(&t.control, "camera API writes")
                .group(
                    PatternType::Prefixed,
                    &i.control_group_prefix(),
                    "each replica's registry reader",
                );
        }
        // Ingest creates the control topic whether or not it follows it.
        created.push(t.control.as_str());
        a.creates(t, &created);
        a
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.admin.validate()?;
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
        for (setting, set) in [
            ("ingest.shards", i.shards.is_some()),
            ("ingest.shard", i.shard.is_some()),
            (
                "ingest.shard_from_hostname",
                i.shard_from_hostname.is_some(),
            ),
        ] {
            if set {
                return Err(ConfigError::invalid(
                    setting,
                    "static sharding was replaced by Kafka leases: remove it (replicas share the cameras through ingest.group_id; see docs/ingest.md)",
                ));
            }
        }
        check_name("ingest.group_id", &i.group_id)?;
        if let Some(id) = &i.instance_id {
            check_name("ingest.instance_id", id)?;
        }
        check_range("ingest.lease_slots", i.lease_slots, 1, 10_000)?;
        if !(6_000..=1_800_000).contains(&i.lease_timeout_ms) {
            return Err(ConfigError::invalid(
                "ingest.lease_timeout_ms",
                format!(
                    "{} is out of range; expected 6000 to 1800000 (brokers refuse a session timeout below their group.min.session.timeout.ms, 6000 by default)",
                    i.lease_timeout_ms
                ),
            ));
        }
        if i.admin_token.is_some() {
            return Err(ConfigError::invalid(
                "ingest.admin_token",
                "moved to admin.token (the same token rule on every service): rename it",
            ));
        }
        if i.credentials_env_prefix.len() < 2
            || !i
                .credentials_env_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(ConfigError::invalid(
                "ingest.credentials_env_prefix",
                format!(
                    "{:?} is not a variable name prefix; expected at least 2 characters of A-Z 0-9 _",
                    i.credentials_env_prefix
                ),
            ));
        }
        if !std::path::Path::new(&i.credentials_dir).is_absolute() {
            return Err(ConfigError::invalid(
                "ingest.credentials_dir",
                format!("{:?} is not an absolute path", i.credentials_dir),
            ));
        }
        let policy = self.credential_policy();
        if let Some((var, path)) = policy.exposed_setting_file(std::env::vars()) {
            return Err(ConfigError::invalid(
                "ingest.credentials_dir",
                format!(
                    "{var}={path} is inside it, so a camera spec could name that secret: keep setting secrets out of the camera credentials directory"
                ),
            ));
        }
        let mut seen = HashSet::new();
        for (n, cam) in self.cameras.iter().enumerate() {
            cam.validate()
                .map_err(|m| ConfigError::invalid(format!("cameras[{n}]"), m))?;
            policy
                .check(cam)
                .map_err(|m| ConfigError::invalid(format!("cameras[{n}].credentials"), m))?;
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

/// A group or instance id: 1-249 characters of `A-Z a-z 0-9 . _ -` (what Kafka's tools and
/// ACLs handle without quoting).
fn check_name(setting: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            setting,
            format!("{name:?} must be 1-249 characters of A-Z a-z 0-9 . _ -"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names of the resources granted `op`, as `type:pattern:name`.
    fn granted(c: &Config, op: framewire_kit::kafka_access::Operation) -> Vec<String> {
        c.kafka_access()
            .grants()
            .iter()
            .filter(|g| g.operations.contains(&op))
            .map(|g| format!("{:?}:{:?}:{}", g.resource_type, g.pattern_type, g.name))
            .collect()
    }

    #[test]
    fn kafka_needs_follow_the_settings() {
        use framewire_kit::kafka_access::Operation::{Create, Read, Write};
        let mut c = Config::default();
        c.ingest.group_id = "cams".into();
        c.topics.frames = "f".into();
        c.topics.control = "ctl".into();
        c.topics.create = false;
        assert!(granted(&c, Read).contains(&"Group:Prefixed:cams-control-".to_owned()));
        assert_eq!(granted(&c, Write), ["Topic:Literal:f", "Topic:Literal:ctl"]);
        assert!(granted(&c, Create).is_empty());
        c.ingest.control_topic = false;
        assert!(
            !granted(&c, Read)
                .iter()
                .any(|n| n.contains("ctl") || n.contains("control"))
        );
        c.topics.create = true;
        assert!(granted(&c, Create).contains(&"Topic:Literal:ctl".to_owned()));
    }

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
    fn lease_settings() {
        let mut c = Config::default();
        assert!(c.validate().is_ok());
        c.ingest.lease_timeout_ms = 3_000;
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("`ingest.lease_timeout_ms`") && e.contains("6000"),
            "{e}"
        );
        c.ingest.lease_timeout_ms = 6_000;
        c.ingest.instance_id = Some("framewire-ingest-0".into());
        assert!(c.validate().is_ok());
        c.ingest.instance_id = Some("pod 0".into());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("ingest.instance_id")
        );
        c.ingest.instance_id = None;
        c.ingest.lease_slots = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("ingest.lease_slots")
        );
        c.ingest.lease_slots = 60;
        c.admin.token = Some("short".into());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("admin.token")
        );
        c.admin.token = Some("0123456789abcdef".into());
        assert!(c.validate().is_ok());
        c.ingest.admin_token = Some(serde_json::json!("0123456789abcdef"));
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("ingest.admin_token") && e.contains("admin.token"),
            "{e}"
        );
        c.ingest.admin_token = None;
        c.ingest.credentials_dir = "relative/dir".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("ingest.credentials_dir")
        );
        c.ingest.credentials_dir = "/etc/creds".into();
        c.ingest.credentials_env_prefix = "".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("ingest.credentials_env_prefix")
        );
    }

    #[test]
    fn a_config_camera_with_a_password_outside_the_allowlist_fails_the_start() {
        let c: Config = serde_json::from_str(
            r#"{"cameras": [{"id": "gate-1", "url": "rtsp://cam/s",
                "credentials": {"username": "v", "password_file": "/etc/framewire/secrets/kafka-sasl-password"}}]}"#,
        )
        .unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("cameras[0].credentials") && e.contains("camera gate-1"),
            "{e}"
        );
        assert!(e.contains("ingest.credentials_dir"), "{e}");
    }

    #[test]
    fn shard_settings_are_refused_with_a_pointer_to_leases() {
        for (key, value) in [
            ("shards", "2"),
            ("shard", "1"),
            ("shard_from_hostname", "true"),
        ] {
            let c: Config =
                serde_json::from_str(&format!(r#"{{"ingest": {{"{key}": {value}}}}}"#)).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(
                e.contains(&format!("`ingest.{key}`")) && e.contains("leases"),
                "{e}"
            );
        }
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
