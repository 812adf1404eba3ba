//! Topic set-up at start: missing topics are created with the configured partitions,
//! compaction and size limit; an existing topic whose limit is too small for keyframes is
//! reported with the setting and the fix, and the service still starts.

use std::time::Duration;

use framewire_e2e::{KAFKA, Service, Topics, require_stack, start_worker};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;

fn admin() -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .create()
        .expect("admin client")
}

async fn config_of(topic: &str, key: &str) -> Option<String> {
    let described = admin()
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .expect("describe configs");
    let resource = described.into_iter().next()?.ok()?;
    resource.get(key).and_then(|e| e.value.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_topics_are_created_and_small_limits_reported() {
    require_stack();
    let topics = Topics::unique("topics");
    // The stats topic exists already, with Kafka's default 1 MiB-ish limit.
    let small = NewTopic::new(&topics.stats, 2, TopicReplication::Fixed(1))
        .set("max.message.bytes", "1048588");
    admin()
        .create_topics(&[small], &AdminOptions::new())
        .await
        .expect("create");

    let mut worker = start_worker(&topics, &[]);
    worker.wait_ready(Duration::from_secs(60)).await;

    assert_eq!(
        config_of(&topics.frames, "max.message.bytes")
            .await
            .as_deref(),
        Some("8388608")
    );
    assert_eq!(
        config_of(&topics.frames, "retention.ms").await.as_deref(),
        Some("3600000")
    );
    let md = admin()
        .inner()
        .fetch_metadata(Some(&topics.frames), Duration::from_secs(10))
        .expect("metadata");
    assert_eq!(
        md.topics()[0].partitions().len(),
        4,
        "topics.partitions = 4"
    );
    assert_eq!(
        config_of(&topics.stats, "max.message.bytes")
            .await
            .as_deref(),
        Some("1048588"),
        "existing topic untouched"
    );

    let log = worker.log();
    let warning = log
        .lines()
        .find(|l| l.contains(&topics.stats) && l.contains("max.message.bytes"))
        .unwrap_or_else(|| {
            panic!(
                "no warning about the small limit of {}:\n{log}",
                topics.stats
            )
        });
    assert!(
        warning.contains("1048588") && warning.contains("kafka-configs.sh"),
        "{warning}"
    );
    assert_eq!(worker.terminate(Duration::from_secs(30)).code(), Some(0));

    let ingest = Service::start("framewire-ingest", &topics.toml(), &[]);
    ingest.wait_ready(Duration::from_secs(60)).await;
    assert_eq!(
        config_of(&topics.control, "cleanup.policy")
            .await
            .as_deref(),
        Some("compact")
    );
}
