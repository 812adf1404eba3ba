//! What a service needs from a Kafka cluster that enforces ACLs, derived from its own
//! configuration.
//!
//! Operators of an authorizing cluster (Strimzi's `simple` authorization, Confluent, MSK with
//! IAM mapped to ACLs) must grant exactly what the services use. A copied list in the docs
//! goes stale the first time a topic or group is renamed; this module is the list, computed
//! from the same settings the service runs with. `--print-kafka-acls` prints it, and the
//! Helm chart's rendered `KafkaUser` is checked against it.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::kafka::TopicsConfig;

/// A Kafka resource type an ACL can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceType {
    /// A topic.
    Topic,
    /// A consumer group.
    Group,
}

/// How an ACL's resource name matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PatternType {
    /// The name exactly.
    Literal,
    /// Every name that starts with it (Kafka's `PREFIXED`, Strimzi's `prefix`).
    Prefixed,
}

/// A Kafka ACL operation (the names Kafka, `kafka-acls.sh` and Strimzi use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Operation {
    /// Consume; join and commit in a group.
    Read,
    /// Produce.
    Write,
    /// Metadata, offsets, group offsets.
    Describe,
    /// Create a missing topic (only with `topics.create`).
    Create,
    /// Read a topic's configuration (the `max.message.bytes` check after creating).
    DescribeConfigs,
}

/// One permission a service needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    /// Topic or group.
    pub resource_type: ResourceType,
    /// Literal name or prefix.
    pub pattern_type: PatternType,
    /// The name (or prefix).
    pub name: String,
    /// What the service does with it.
    pub operations: BTreeSet<Operation>,
    /// Why, in a few words.
    pub why: String,
}

/// Everything one service needs, built from its configuration.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KafkaAccess {
    grants: Vec<Grant>,
}

impl KafkaAccess {
    /// The grants, merged per resource.
    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// Adds `operations` on one resource, merged into an earlier grant of the same resource.
    pub fn grant(
        &mut self,
        resource_type: ResourceType,
        pattern_type: PatternType,
        name: &str,
        operations: &[Operation],
        why: &str,
    ) -> &mut Self {
        if let Some(g) = self.grants.iter_mut().find(|g| {
            g.resource_type == resource_type && g.pattern_type == pattern_type && g.name == name
        }) {
            g.operations.extend(operations.iter().copied());
            if !g.why.contains(why) {
                g.why = format!("{}; {why}", g.why);
            }
        } else {
            self.grants.push(Grant {
                resource_type,
                pattern_type,
                name: name.to_owned(),
                operations: operations.iter().copied().collect(),
                why: why.to_owned(),
            });
        }
        self
    }

    /// A topic the service produces to.
    pub fn produces(&mut self, topic: &str, why: &str) -> &mut Self {
        use Operation::*;
        self.grant(
            ResourceType::Topic,
            PatternType::Literal,
            topic,
            &[Write, Describe],
            why,
        )
    }

    /// A topic the service consumes (in a group, or by assignment).
    pub fn consumes(&mut self, topic: &str, why: &str) -> &mut Self {
        use Operation::*;
        self.grant(
            ResourceType::Topic,
            PatternType::Literal,
            topic,
            &[Read, Describe],
            why,
        )
    }

    /// A consumer group the service joins, commits in or reads the offsets of.
    pub fn group(&mut self, pattern_type: PatternType, name: &str, why: &str) -> &mut Self {
        use Operation::*;
        self.grant(
            ResourceType::Group,
            pattern_type,
            name,
            &[Read, Describe],
            why,
        )
    }

    /// The topics the service creates at start when `topics.create` is on (create, then
    /// check their `max.message.bytes`); nothing when it is off.
    pub fn creates(&mut self, topics: &TopicsConfig, names: &[&str]) -> &mut Self {
        use Operation::*;
        if topics.create {
            for name in names {
                self.grant(
                    ResourceType::Topic,
                    PatternType::Literal,
                    name,
                    &[Create, DescribeConfigs, Describe],
                    "created when missing (topics.create)",
                );
            }
        }
        self
    }
}

/// A service configuration that knows what it needs from Kafka.
pub trait KafkaNeeds {
    /// The topics and groups this configuration uses, with the operations on each.
    fn kafka_access(&self) -> KafkaAccess;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_on_one_resource_merge() {
        let mut a = KafkaAccess::default();
        a.produces("t", "out")
            .consumes("t", "in")
            .produces("u", "other");
        assert_eq!(a.grants().len(), 2);
        let t = &a.grants()[0];
        assert_eq!(
            t.operations.iter().copied().collect::<Vec<_>>(),
            vec![Operation::Read, Operation::Write, Operation::Describe]
        );
        assert_eq!(t.why, "out; in");
    }

    #[test]
    fn creation_is_granted_only_when_topics_are_created() {
        let mut topics = TopicsConfig {
            create: false,
            ..TopicsConfig::default()
        };
        let mut a = KafkaAccess::default();
        a.creates(&topics, &["t"]);
        assert!(a.grants().is_empty());
        topics.create = true;
        a.creates(&topics, &["t"]);
        assert!(a.grants()[0].operations.contains(&Operation::Create));
    }
}
