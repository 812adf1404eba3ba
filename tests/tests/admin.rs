//! The admin surface of every service, against the real stack: health, readiness,
//! metrics, redacted config, and a clean exit on SIGTERM.

use std::time::Duration;

use framewire_e2e::{RTSP, Service, Topics, camera_toml, pg_dsn, require_stack, unique};

async fn check_admin(service: &mut Service, metric: &str, secrets: &[&str]) {
    service.wait_healthy(Duration::from_secs(30)).await;
    assert_eq!(service.get("/healthz").await.1, "ok\n");
    service.wait_ready(Duration::from_secs(60)).await;
    let (code, body) = service.get("/readyz").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"kafka\""), "readiness lists kafka: {body}");

    let (code, metrics) = service.get("/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("process_cpu_seconds_total"),
        "{}: no process metrics",
        service.name
    );
    assert!(
        metrics.lines().any(|l| l.starts_with(metric)),
        "{}: no {metric} in /metrics:\n{metrics}",
        service.name
    );

    let (code, config) = service.get("/config").await;
    assert_eq!(code, 200);
    let json: serde_json::Value = serde_json::from_str(&config).expect("/config is JSON");
    assert!(json["kafka"]["brokers"].is_string(), "{config}");
    for s in secrets {
        assert!(
            !config.contains(s),
            "{}: /config leaks {s}: {config}",
            service.name
        );
    }
    assert!(
        config.contains("[redacted]"),
        "{}: nothing redacted: {config}",
        service.name
    );
    assert_eq!(service.get("/no-such-endpoint").await.0, 404);

    let status = service.terminate(Duration::from_secs(30));
    assert_eq!(
        status.code(),
        Some(0),
        "{} exit on SIGTERM\n{}",
        service.name,
        service.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ingest_admin() {
    require_stack();
    let topics = Topics::unique("admin-ingest");
    let camera = unique("cam");
    let config = format!(
        "{}\n[kafka.options]\n\"sasl.password\" = \"kafka-pass-123\"\n\n{}",
        topics.toml(),
        camera_toml(
            &camera,
            &format!(
                "rtsp://viewer:cam-pass-456@{}/moving",
                RTSP.trim_start_matches("rtsp://")
            ),
            ""
        ),
    );
    let mut s = Service::start("framewire-ingest", &config, &[]);
    check_admin(
        &mut s,
        "framewire_ingest_reconnects_total{camera=",
        &["kafka-pass-123", "cam-pass-456"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn worker_admin() {
    require_stack();
    let topics = Topics::unique("admin-worker");
    let config = format!(
        "{}\n[kafka.options]\n\"sasl.password\" = \"kafka-pass-123\"\n\n[worker]\ngroup_id = \"{}\"\n",
        topics.toml(),
        unique("g")
    );
    let mut s = Service::start("framewire-worker", &config, &[]);
    check_admin(
        &mut s,
        "framewire_worker_assigned_partitions",
        &["kafka-pass-123"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sink_admin() {
    require_stack();
    let topics = Topics::unique("admin-sink");
    let config = format!(
        "{}\n[sink]\ngroup_id = \"{}\"\ndatabase_url = \"{}\"\n",
        topics.toml(),
        unique("g"),
        pg_dsn()
    );
    let mut s = Service::start("framewire-sink", &config, &[]);
    let (_, readyz) = {
        s.wait_ready(Duration::from_secs(60)).await;
        s.get("/readyz").await
    };
    assert!(
        readyz.contains("\"database\""),
        "sink readiness lists the database: {readyz}"
    );
    check_admin(&mut s, "framewire_sink_windows_open", &[":framewire@"]).await;
}
