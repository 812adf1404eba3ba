//! Trace context travels in Kafka headers: one frame's spans, exported over OTLP by
//! ingest, worker and sink, share one trace id.

use std::time::Duration;

use framewire_e2e::{
    OtlpCollector, RTSP, Service, Topics, camera_toml, headers_of, hex_bytes, read_topic,
    require_stack, start_worker, trace_id, unique,
};

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread")]
async fn one_frame_one_trace_across_the_fleet() {
    require_stack();
    let collector = OtlpCollector::start().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "500"),
    ];
    let topics = Topics::unique("tracing");
    let camera = unique("traced");
    let mut worker = start_worker(&topics, &env);
    let db = tempfile::tempdir().expect("temp dir");
    let mut sink = Service::start(
        "framewire-sink",
        &format!(
            "{}\n[sink]\ngroup_id = \"{}\"\nsqlite_path = \"{}\"\n",
            topics.toml(),
            unique("s"),
            db.path().join("s.sqlite").display()
        ),
        &env,
    );
    worker.wait_ready(Duration::from_secs(60)).await;
    sink.wait_ready(Duration::from_secs(60)).await;
    let mut ingest = Service::start(
        "framewire-ingest",
        &format!(
            "{}\n{}",
            topics.toml(),
            camera_toml(&camera, &format!("{RTSP}/moving"), "")
        ),
        &env,
    );
    ingest.wait_ready(Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    for s in [&mut ingest, &mut worker, &mut sink] {
        // Stop upstream first so every frame is seen downstream; exit flushes the exporter.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            s.terminate(Duration::from_secs(30)).code(),
            Some(0),
            "{}",
            s.log()
        );
    }

    let frames =
        tokio::task::spawn_blocking(move || read_topic(&topics.frames, Duration::from_secs(2)))
            .await
            .expect("read");
    let first = frames.first().expect("frames were published");
    let traceparent = headers_of(first)
        .remove("traceparent")
        .expect("traceparent on the frame");
    let id = hex_bytes(trace_id(&traceparent).expect("trace id")).expect("hex trace id");
    let bodies = collector.bodies();
    let services: Vec<&str> = ["framewire-ingest", "framewire-worker", "framewire-sink"]
        .into_iter()
        .filter(|svc| {
            bodies
                .iter()
                .any(|b| contains(b, svc.as_bytes()) && contains(b, &id))
        })
        .collect();
    assert_eq!(
        services,
        ["framewire-ingest", "framewire-worker", "framewire-sink"],
        "services that exported spans of trace {traceparent} ({} export requests received)",
        bodies.len()
    );
}
