//! Kafka clients from the shared `[kafka]` and `[topics]` sections.
//!
//! Every service builds its producers and consumers here, so that one set of settings
//! (brokers, security, any librdkafka option passed through `[kafka.options]`) applies
//! to all of them. Services create the topics they use when missing, with partition
//! counts, retention and a message size limit large enough for keyframes, and warn when
//! an existing topic's limit is too small.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::types::RDKafkaErrorCode;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::{ConfigError, Validate, check_range};

/// `[kafka]`: how to reach the brokers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated `host:port`.
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// Client id prefix shown in broker logs and metrics (default: the service name).
    #[serde(default)]
    pub client_id: Option<String>,
    /// Any librdkafka property, passed through and applied last (wins over Framewire's
    /// defaults), e.g. `"security.protocol" = "SASL_SSL"`. From the environment, write
    /// dots as underscores: `FRAMEWIRE_KAFKA__OPTIONS__SASL_PASSWORD`; keys are stored
    /// with dots (librdkafka's names have none), so `/config` shows what the client gets.
    #[serde(default, deserialize_with = "dotted_keys")]
    pub options: BTreeMap<String, String>,
}

/// librdkafka property names from either spelling: `sasl_password` (an environment
/// variable's) becomes `sasl.password`. Given both ways, the underscored one (the
/// environment's, which sorts after the dotted one) wins, as the environment does
/// everywhere.
fn dotted_keys<'de, D>(d: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let raw = BTreeMap::<String, String>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| (k.replace('_', "."), v))
        .collect())
}

fn default_brokers() -> String {
    "127.0.0.1:9092".to_owned()
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: default_brokers(),
            client_id: None,
            options: BTreeMap::new(),
        }
    }
}

impl Validate for KafkaConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.brokers.split(',').any(|b| {
            b.trim()
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        }) {
            return Err(ConfigError::invalid(
                "kafka.brokers",
                format!(
                    "{:?} is not a comma-separated list of host:port",
                    self.brokers
                ),
            ));
        }
        Ok(())
    }
}

impl KafkaConfig {
    /// A librdkafka config: brokers, client id, Framewire's reconnect backoff, then
    /// `defaults`, then the user's options.
    pub fn client_config(&self, client_id: &str, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        c.set("client.id", self.client_id.as_deref().unwrap_or(client_id));
        // librdkafka backs off up to 10 s between reconnects to a broker that was down; a
        // camera fleet wants frames flowing again within a couple of seconds of the brokers'
        // return (the backoff keeps its jitter, so clients do not reconnect in step).
        c.set("reconnect.backoff.max.ms", "2000");
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.options {
            c.set(k, v);
        }
        c
    }
}

impl KafkaConfig {
    /// The producer every service publishes with: idempotent, `acks=all`, lz4, a record
    /// size limit of `max_message_bytes`, the given `linger.ms`, and `delivery_timeout_ms`
    /// of retrying before a record counts as failed.
    pub fn producer(
        &self,
        client_id: &str,
        linger_ms: u32,
        max_message_bytes: i32,
        delivery_timeout_ms: u64,
    ) -> Result<rdkafka::producer::FutureProducer, KafkaSetupError> {
        self.producer_config(client_id, linger_ms, max_message_bytes, delivery_timeout_ms)
            .create()
            .map_err(|source| KafkaSetupError::Client {
                what: "producer",
                source,
            })
    }

    /// The settings of [`KafkaConfig::producer`], for a client of another kind (a
    /// `ThreadedProducer` with its own delivery callback) that must publish the same way.
    pub fn producer_config(
        &self,
        client_id: &str,
        linger_ms: u32,
        max_message_bytes: i32,
        delivery_timeout_ms: u64,
    ) -> ClientConfig {
        let linger = linger_ms.to_string();
        let max = max_message_bytes.to_string();
        let timeout = delivery_timeout_ms.to_string();
        self.client_config(
            client_id,
            &[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("linger.ms", &linger),
                ("compression.type", "lz4"),
                ("message.max.bytes", &max),
                ("message.timeout.ms", &timeout),
            ],
        )
    }
}

/// `[topics]`: topic names and how missing topics are created.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    /// Access units from ingest.
    #[serde(default = "default_frames")]
    pub frames: String,
    /// Per-frame statistics from the workers.
    #[serde(default = "default_stats")]
    pub stats: String,
    /// Object detections from the workers (one record per analysed picture).
    #[serde(default = "default_detections")]
    pub detections: String,
    /// Compacted camera registry.
    #[serde(default = "default_control")]
    pub control: String,
    /// Dead letters.
    #[serde(default = "default_dlq")]
    pub dlq: String,
    /// Ingest's camera leases: one partition per slot, never written to; ingest replicas
    /// share its partitions through their consumer group (`ingest.group_id`).
    #[serde(default = "default_leases")]
    pub leases: String,
    /// Create missing topics at start (needs the CreateTopics ACL).
    #[serde(default = "default_true")]
    pub create: bool,
    /// Partitions of new frames and stats topics: the most workers that can share the load.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of new topics; -1 uses the broker's `default.replication.factor`.
    #[serde(default = "default_replication")]
    pub replication_factor: i32,
    /// Retention of the frames topic (raw video is large: keep it short).
    #[serde(default = "default_frames_retention")]
    pub frames_retention_ms: i64,
    /// Retention of the stats and dead-letter topics.
    #[serde(default = "default_stats_retention")]
    pub stats_retention_ms: i64,
    /// `max.message.bytes` of new topics, and the producers' and consumers' record size
    /// limit: the largest keyframe that can travel.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: i32,
}

fn default_frames() -> String {
    framewire_wire::topics::FRAMES.to_owned()
}
fn default_detections() -> String {
    framewire_wire::topics::DETECTIONS.to_owned()
}
fn default_stats() -> String {
    framewire_wire::topics::STATS.to_owned()
}
fn default_control() -> String {
    framewire_wire::topics::CONTROL.to_owned()
}
fn default_dlq() -> String {
    framewire_wire::topics::DLQ.to_owned()
}
fn default_leases() -> String {
    "framewire.ingest.leases".to_owned()
}
fn default_true() -> bool {
    true
}
fn default_partitions() -> i32 {
    12
}
fn default_replication() -> i32 {
    -1
}
fn default_frames_retention() -> i64 {
    3_600_000
}
fn default_stats_retention() -> i64 {
    7 * 24 * 3_600_000
}
fn default_max_message_bytes() -> i32 {
    8 * 1024 * 1024
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            frames: default_frames(),
            stats: default_stats(),
            detections: default_detections(),
            control: default_control(),
            dlq: default_dlq(),
            leases: default_leases(),
            create: true,
            partitions: default_partitions(),
            replication_factor: default_replication(),
            frames_retention_ms: default_frames_retention(),
            stats_retention_ms: default_stats_retention(),
            max_message_bytes: default_max_message_bytes(),
        }
    }
}

impl Validate for TopicsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (setting, name) in [
            ("topics.frames", &self.frames),
            ("topics.stats", &self.stats),
            ("topics.control", &self.control),
            ("topics.dlq", &self.dlq),
            ("topics.leases", &self.leases),
        ] {
            let ok = !name.is_empty()
                && name.len() <= 249
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !ok {
                return Err(ConfigError::invalid(
                    setting,
                    format!("{name:?} is not a valid Kafka topic name"),
                ));
            }
        }
        check_range("topics.partitions", self.partitions, 1, 10_000)?;
        if self.replication_factor == 0 || self.replication_factor < -1 {
            return Err(ConfigError::invalid(
                "topics.replication_factor",
                "must be -1 (broker default) or at least 1",
            ));
        }
        check_range(
            "topics.frames_retention_ms",
            self.frames_retention_ms,
            60_000,
            i64::MAX,
        )?;
        check_range(
            "topics.stats_retention_ms",
            self.stats_retention_ms,
            60_000,
            i64::MAX,
        )?;
        check_range(
            "topics.max_message_bytes",
            self.max_message_bytes,
            1_048_576,
            1_000_000_000,
        )
    }
}

/// A topic a service needs, with the settings used if it has to be created.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Partitions when created.
    pub partitions: i32,
    /// Replication factor when created (-1: broker default).
    pub replication_factor: i32,
    /// Topic configs when created, e.g. `retention.ms`.
    pub configs: Vec<(&'static str, String)>,
    /// `max.message.bytes` the topic must allow.
    pub max_message_bytes: i32,
}

impl TopicsConfig {
    fn spec(&self, name: &str, partitions: i32, configs: Vec<(&'static str, String)>) -> TopicSpec {
        let mut configs = configs;
        configs.push(("max.message.bytes", self.max_message_bytes.to_string()));
        TopicSpec {
            name: name.to_owned(),
            partitions,
            replication_factor: self.replication_factor,
            configs,
            max_message_bytes: self.max_message_bytes,
        }
    }

    /// The frames topic.
    pub fn frames_spec(&self) -> TopicSpec {
        self.spec(
            &self.frames,
            self.partitions,
            vec![("retention.ms", self.frames_retention_ms.to_string())],
        )
    }

    /// The stats topic.
    pub fn stats_spec(&self) -> TopicSpec {
        self.spec(
            &self.stats,
            self.partitions,
            vec![("retention.ms", self.stats_retention_ms.to_string())],
        )
    }

    /// The detections topic (partitioned like stats, same retention).
    pub fn detections_spec(&self) -> TopicSpec {
        self.spec(
            &self.detections,
            self.partitions,
            vec![("retention.ms", self.stats_retention_ms.to_string())],
        )
    }

    /// The dead-letter topic.
    pub fn dlq_spec(&self) -> TopicSpec {
        self.spec(
            &self.dlq,
            1,
            vec![("retention.ms", self.stats_retention_ms.to_string())],
        )
    }

    /// The compacted control topic.
    pub fn control_spec(&self) -> TopicSpec {
        self.spec(
            &self.control,
            1,
            vec![("cleanup.policy", "compact".to_owned())],
        )
    }

    /// Ingest's lease topic: `slots` partitions, one per lease slot. Nothing is ever
    /// written to it, so its retention is the shortest Kafka allows without tuning.
    pub fn leases_spec(&self, slots: i32) -> TopicSpec {
        self.spec(
            &self.leases,
            slots,
            vec![("retention.ms", "60000".to_owned())],
        )
    }
}

/// Kafka could not be set up for the service.
#[derive(Debug, Error)]
pub enum KafkaSetupError {
    /// A client could not be created (bad option, unreachable library state).
    #[error("cannot create Kafka {what}: {source}")]
    Client {
        /// Which client.
        what: &'static str,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// Creating or inspecting a topic failed.
    #[error("topic {topic}: {reason}")]
    Topic {
        /// Topic name.
        topic: String,
        /// What failed.
        reason: String,
    },
}

/// Creates the topics that are missing; checks `max.message.bytes` of those that exist
/// and logs a clear warning (with the fix) when it is smaller than needed.
pub async fn ensure_topics(
    kafka: &KafkaConfig,
    client_id: &str,
    specs: &[TopicSpec],
) -> Result<(), KafkaSetupError> {
    let admin: AdminClient<DefaultClientContext> = kafka
        .client_config(client_id, &[])
        .create()
        .map_err(|source| KafkaSetupError::Client {
            what: "admin client",
            source,
        })?;
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(30)))
        .request_timeout(Some(Duration::from_secs(30)));
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|s| {
            s.configs.iter().fold(
                NewTopic::new(
                    &s.name,
                    s.partitions,
                    TopicReplication::Fixed(s.replication_factor),
                ),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    let results =
        admin
            .create_topics(&new_topics, &opts)
            .await
            .map_err(|e| KafkaSetupError::Topic {
                topic: names(specs),
                reason: format!("create request failed: {e}"),
            })?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(%topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaSetupError::Topic {
                    topic,
                    reason: format!("cannot create: {code}"),
                });
            }
        }
    }
    let resources: Vec<_> = specs
        .iter()
        .map(|s| ResourceSpecifier::Topic(&s.name))
        .collect();
    let described = admin
        .describe_configs(&resources, &opts)
        .await
        .map_err(|e| KafkaSetupError::Topic {
            topic: names(specs),
            reason: format!("describe configs failed: {e}"),
        })?;
    for (spec, res) in specs.iter().zip(described) {
        let resource = match res {
            Ok(r) => r,
            Err(code) => {
                tracing::warn!(
                    topic = %spec.name,
                    error = %code,
                    "cannot read the topic's max.message.bytes (DescribeConfigs on the topic; see --print-kafka-acls): records larger than the topic allows would be rejected without this warning"
                );
                continue;
            }
        };
        let actual = resource
            .get("max.message.bytes")
            .and_then(|e| e.value.as_deref())
            .and_then(|v| v.parse::<i64>().ok());
        if let Some(actual) = actual
            && actual < i64::from(spec.max_message_bytes)
        {
            tracing::warn!(
                topic = %spec.name,
                max_message_bytes = actual,
                needed = spec.max_message_bytes,
                "topic {} allows records of at most {actual} bytes but Framewire is configured for {} (topics.max_message_bytes): \
                 larger keyframes will be rejected; raise it with: kafka-configs.sh --alter --entity-type topics --entity-name {} --add-config max.message.bytes={}",
                spec.name,
                spec.max_message_bytes,
                spec.name,
                spec.max_message_bytes,
            );
        }
    }
    Ok(())
}

/// What to tell the operator when `e` means this client is not allowed to do something
/// (wrong credentials, or an ACL missing): a broker refusal no retry fixes.
pub fn access_problem(e: &KafkaError) -> Option<String> {
    use RDKafkaErrorCode as C;
    let code = e.rdkafka_error_code()?;
    matches!(
        code,
        C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed
            | C::SaslAuthenticationFailed
            | C::Authentication
    )
    .then(|| {
        crate::redact::redact_text(&format!(
            "{e}: check the credentials and the ACLs (--print-kafka-acls lists what this configuration needs)"
        ))
    })
}

/// [`ensure_topics`], retried every few seconds until it succeeds or shutdown, with the
/// `kafka` readiness component saying what it waits for. Returns false on shutdown.
pub async fn ensure_topics_with_retry(
    kafka: &KafkaConfig,
    client_id: &str,
    specs: &[TopicSpec],
    readiness: &crate::admin::Readiness,
    shutdown: &crate::shutdown::Shutdown,
) -> bool {
    loop {
        match ensure_topics(kafka, client_id, specs).await {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot set up topics yet; retrying");
                readiness.set_not_ready("kafka", format!("setting up topics: {e}"));
            }
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(Duration::from_secs(3)) => {}
        }
    }
}

/// A readiness check: the brokers answer a metadata request for `topic` within 3 s.
pub fn metadata_check<C: rdkafka::client::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
) -> Result<(), String> {
    let md = client
        .fetch_metadata(Some(topic), Duration::from_secs(3))
        .map_err(|e| format!("Kafka metadata request failed: {e}"))?;
    match md.topics().first().and_then(|t| t.error()) {
        Some(e) => Err(format!("topic {topic}: {:?}", RDKafkaErrorCode::from(e))),
        None => Ok(()),
    }
}

fn names(specs: &[TopicSpec]) -> String {
    specs
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Builds record headers from name/value pairs.
pub fn headers<K: AsRef<str>, V: AsRef<str>>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> OwnedHeaders {
    pairs.into_iter().fold(OwnedHeaders::new(), |h, (k, v)| {
        h.insert(Header {
            key: k.as_ref(),
            value: Some(v.as_ref().as_bytes()),
        })
    })
}

/// Looks a header up by name (the last one wins if repeated).
pub fn header<'a, H: Headers>(headers: Option<&'a H>, name: &str) -> Option<&'a [u8]> {
    let h = headers?;
    h.iter()
        .filter(|hd| hd.key == name)
        .last()
        .and_then(|hd| hd.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_problems_are_told_apart_from_transient_errors() {
        use rdkafka::error::KafkaError as E;
        let denied = E::MessageConsumption(RDKafkaErrorCode::GroupAuthorizationFailed);
        let said = access_problem(&denied).unwrap_or_default();
        assert!(said.contains("--print-kafka-acls"), "{said}");
        assert!(
            access_problem(&E::MessageConsumption(
                RDKafkaErrorCode::BrokerTransportFailure
            ))
            .is_none()
        );
        assert!(access_problem(&E::Canceled).is_none());
    }

    #[test]
    fn user_options_win_and_env_underscores_become_dots() {
        let k: KafkaConfig = serde_json::from_value(serde_json::json!({
            "options": {"sasl_mechanism": "SCRAM-SHA-512", "linger.ms": "50"}
        }))
        .unwrap();
        assert_eq!(
            k.options.keys().collect::<Vec<_>>(),
            ["linger.ms", "sasl.mechanism"],
            "stored (and shown on /config) with dots"
        );
        let c = k.client_config("svc", &[("linger.ms", "5"), ("acks", "all")]);
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("linger.ms"), Some("50"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("client.id"), Some("svc"));
    }

    #[test]
    fn broker_lists_are_checked() {
        let mut k = KafkaConfig::default();
        assert!(k.validate().is_ok());
        k.brokers = "a:9092,b:9093".into();
        assert!(k.validate().is_ok());
        for bad in ["", "localhost", "a:b", ":9092"] {
            k.brokers = bad.into();
            assert!(
                k.validate()
                    .unwrap_err()
                    .to_string()
                    .contains("kafka.brokers"),
                "{bad}"
            );
        }
    }

    #[test]
    fn topic_specs() {
        let t = TopicsConfig::default();
        assert!(t.validate().is_ok());
        let c = t.control_spec();
        assert_eq!(c.partitions, 1);
        let l = t.leases_spec(60);
        assert_eq!(
            (l.name.as_str(), l.partitions),
            ("framewire.ingest.leases", 60)
        );
        assert!(c.configs.contains(&("cleanup.policy", "compact".into())));
        assert!(
            t.frames_spec()
                .configs
                .contains(&("max.message.bytes", "8388608".into()))
        );
        let bad = TopicsConfig {
            frames: "a b".into(),
            ..TopicsConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("topics.frames")
        );
    }

    #[test]
    fn header_lookup() {
        let h = headers([("fw-camera", "a"), ("fw-seq", "1")]);
        assert_eq!(header(Some(&h), "fw-seq"), Some(&b"1"[..]));
        assert_eq!(header(Some(&h), "nope"), None);
    }
}
