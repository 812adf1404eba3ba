//! `framewire-sink`: per-frame statistics in, per-camera window summaries, incidents, a
//! JSON API and a live web page out.
//!
//! Consumes `framewire.stats`, `framewire.dlq` and `framewire.detections`, keeps tumbling
//! windows per camera (frames, and objects per class from the detections) and
//! merges them into PostgreSQL (when `sink.database_url` is set) or an embedded SQLite
//! file, storing Kafka offsets only after the merge committed; a preview consumer on
//! `framewire.frames` keeps each camera's latest keyframe as a thumbnail; the API and the
//! page are served on `sink.http_listen`, the admin endpoints on `admin.listen`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use framewire_kit::admin::{AdminServer, AdminState, Readiness};
use framewire_kit::auth::AdminToken;
use framewire_kit::shutdown::{Shutdown, drain_within};
use framewire_kit::{kafka, runtime};
use framewire_sink::api::{self, ApiState, Limits};
use framewire_sink::cameras::{CameraRow, Cameras};
use framewire_sink::config::{ADMIN_PORT, Config, SinkConfig};
use framewire_sink::consume::{self, Pipeline, Settings, WriteHealth};
use framewire_sink::metrics::Metrics;
use framewire_sink::preview::{self, PreviewSettings, Thumbnails};
use framewire_sink::priority;
use framewire_sink::ratelimit::RateLimiter;
use framewire_sink::store::{Store, StoreError};
use framewire_sink::window::Windows;
use framewire_sink::{retention, web};
use rdkafka::consumer::Consumer;

const SERVICE: &str = "framewire-sink";

/// Threads of the HTTP server's runtime.
const API_THREADS: usize = 2;

fn main() -> ExitCode {
    runtime::main(
        SERVICE,
        "Folds per-frame statistics into per-camera summaries and incidents in SQLite or PostgreSQL, and shows them on a web page.",
        run,
    )
}

async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let registry = framewire_kit::metrics::registry();
    let metrics = Metrics::new(&registry);
    let readiness = Readiness::new();
    readiness.set_not_ready("kafka", "starting");
    readiness.set_not_ready("database", "connecting");
    let sink = &config.sink;

    let listen = config.admin.listen_or(ADMIN_PORT);
    let token = AdminToken::new(config.admin.token.as_deref(), &registry);
    let state = AdminState::new(registry, &config, &readiness);
    let admin = AdminServer::start(listen, state, axum::Router::new())
        .await
        .with_context(|| format!("cannot listen on admin.listen {listen}"))?;

    let Some((store, stored_cameras)) = connect_store(sink, &readiness, &shutdown).await? else {
        admin.stop().await;
        return Ok(());
    };
    let health = WriteHealth::default();
    {
        let store = store.clone();
        let health = health.clone();
        let handle = tokio::runtime::Handle::current();
        readiness.spawn_probe(
            "database",
            Duration::from_secs(5),
            shutdown.clone(),
            move || {
                if let Some(e) = health.last_error() {
                    return Err(e);
                }
                handle.block_on(store.ping()).map_err(|e| e.to_string())
            },
        );
    }

    if config.topics.create {
        let mut specs = vec![config.topics.stats_spec(), config.topics.dlq_spec()];
        if sink.detections.enabled {
            specs.push(config.topics.detections_spec());
        }
        if sink.preview {
            specs.push(config.topics.frames_spec());
        }
        if !kafka::ensure_topics_with_retry(&config.kafka, SERVICE, &specs, &readiness, &shutdown)
            .await
        {
            store.close().await;
            admin.stop().await;
            return Ok(());
        }
    }
    let mut topics = vec![config.topics.stats.as_str(), config.topics.dlq.as_str()];
    if sink.detections.enabled {
        topics.push(config.topics.detections.as_str());
    }
    let consumer = Arc::new(consume::consumer(&config.kafka, &sink.group_id, &topics)?);
    {
        let consumer = consumer.clone();
        let topic = config.topics.stats.clone();
        readiness.spawn_probe(
            "kafka",
            Duration::from_secs(5),
            shutdown.clone(),
            move || kafka::metadata_check(consumer.client(), &topic),
        );
    }

    let thumbnails = Thumbnails::default();
    let preview_task = if sink.preview {
        let consumer = preview::consumer(
            &config.kafka,
            &sink.preview_group_id,
            &config.topics.frames,
            config.topics.max_message_bytes,
        )?;
        let settings = PreviewSettings {
            interval: Duration::from_millis(sink.preview_interval_ms),
            width: sink.thumbnail_width,
        };
        Some(tokio::spawn(preview::run(
            consumer,
            thumbnails.clone(),
            metrics.clone(),
            settings,
            shutdown.clone(),
        )))
    } else {
        None
    };

    let http = Http::start(sink, thumbnails, metrics.clone(), token).await?;

    let retention_task = tokio::spawn(retention::run(
        store.clone(),
        sink.retention_days,
        metrics.clone(),
        shutdown.clone(),
    ));

    let mut windows = Windows::new(sink.window_ms, sink.allowed_lateness_ms);
    let mut cameras = Cameras::new(sink.incident_rules());
    for c in &stored_cameras {
        windows.advance(&c.id, c.last_capture_ms);
    }
    cameras.load(stored_cameras);
    tracing::info!(
        topics = ?topics,
        group = %sink.group_id,
        backend = %store.backend(),
        window_ms = sink.window_ms,
        allowed_lateness_ms = sink.allowed_lateness_ms,
        cameras = cameras.rows().count(),
        detections_min_score = sink.detections.min_score,
        "consuming stats, dead letters and detections"
    );
    let settings = Settings {
        stats_topic: config.topics.stats.clone(),
        dlq_topic: config.topics.dlq.clone(),
        detections_topic: sink
            .detections
            .enabled
            .then(|| config.topics.detections.clone()),
        min_score: sink.detections.min_score,
        flush_interval: Duration::from_millis(sink.flush_interval_ms),
        retry_max: Duration::from_millis(sink.retry_max_ms),
        max_pending_frames: sink.max_pending_frames,
        retention: (sink.retention_days > 0)
            .then(|| Duration::from_secs(u64::from(sink.retention_days) * 86_400)),
    };
    let mut pipeline = Pipeline::new(
        consumer,
        settings,
        windows,
        cameras,
        store,
        metrics,
        readiness.clone(),
        health,
    );
    pipeline.run(&shutdown).await;

    readiness.set_not_ready("shutdown", "draining");
    let grace = Duration::from_millis(sink.shutdown_grace_ms);
    drain_within(grace, async {
        pipeline.finish().await;
        if let Some(task) = preview_task {
            let _ = task.await;
        }
        let _ = retention_task.await;
    })
    .await;
    http.stop().await;
    admin.stop().await;
    Ok(())
}

/// The HTTP port (the JSON API and the web page), on a runtime of its own so that handlers
/// busy with large answers never hold the threads the pipeline's flushes run on, at a lower
/// CPU priority (`sink.api.nice`), reading through the API's own pool of database
/// connections.
struct Http {
    runtime: tokio::runtime::Runtime,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    reader: Store,
    stop: Shutdown,
}

impl Http {
    async fn start(
        sink: &SinkConfig,
        thumbnails: Thumbnails,
        metrics: Metrics,
        token: AdminToken,
    ) -> anyhow::Result<Self> {
        let nice = sink.api.nice;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(API_THREADS)
            .thread_name("sink-api")
            .on_thread_start(move || {
                if nice != 0
                    && let Err(e) = priority::lower_this_thread(nice)
                {
                    tracing::debug!(error = %e, "HTTP thread keeps its CPU priority");
                }
            })
            .enable_all()
            .build()
            .context("cannot start the HTTP server's threads")?;
        let http_addr = sink.http_addr();
        let listener = runtime
            .spawn(tokio::net::TcpListener::bind(http_addr))
            .await?
            .with_context(|| format!("cannot listen on sink.http_listen {http_addr}"))?;
        // The read pool's connections are opened from the API's threads (SQLite runs each on
        // a thread of its own, started from there).
        let reader = runtime
            .spawn(Store::connect_reader(
                sink.database_url.clone(),
                sink.sqlite_path.clone(),
                sink.api.read_connections,
                metrics.api_read_wait.clone(),
            ))
            .await?
            .context("cannot open the API's read connections (sink.api.read_connections)")?;
        let limits = Limits::of(&sink.api);
        let state = ApiState {
            store: reader.clone(),
            thumbnails,
            metrics,
            offline_after_ms: sink.offline_after_ms,
            window_ms: sink.window_ms,
            min_score: sink.detections.min_score,
            limits,
            rate_limit: (sink.api.rate_limit_per_second > 0).then(|| {
                Arc::new(RateLimiter::new(
                    sink.api.rate_limit_per_second,
                    sink.api.rate_limit_burst,
                ))
            }),
            openapi: api::openapi_document(limits).into(),
            thumbnail_token: sink.api.thumbnails_need_token.then_some(token),
        };
        let stop = Shutdown::new();
        // The peer's address reaches the handlers (the per-client rate limit).
        let service = api::router(state)
            .merge(web::router())
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        let task = {
            let stop = stop.clone();
            runtime.spawn(async move {
                axum::serve(listener, service)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await
            })
        };
        tracing::info!(
            listen = %http_addr,
            read_connections = sink.api.read_connections,
            nice,
            max_range_ms = limits.max_range_ms,
            max_limit = limits.max_limit,
            rate_limit_per_second = sink.api.rate_limit_per_second,
            "web page and API listening"
        );
        Ok(Http {
            runtime,
            task,
            reader,
            stop,
        })
    }

    /// Stops serving (requests under way finish), closes the read pool, ends the threads.
    async fn stop(self) {
        self.stop.trigger();
        let _ = self.task.await;
        let reader = self.reader;
        let _ = self
            .runtime
            .spawn(async move { reader.close().await })
            .await;
        self.runtime.shutdown_background();
    }
}

/// Opens the database, applies migrations and reads the stored cameras. An unreachable
/// PostgreSQL is retried every few seconds (the sink stays unready meanwhile); a bad
/// SQLite path or a failed migration is fatal. `None` on shutdown.
async fn connect_store(
    sink: &SinkConfig,
    readiness: &Readiness,
    shutdown: &Shutdown,
) -> anyhow::Result<Option<(Store, Vec<CameraRow>)>> {
    let setting = if sink.database_url.is_some() {
        "sink.database_url"
    } else {
        "sink.sqlite_path"
    };
    loop {
        let attempt = async {
            let store = Store::connect(sink.database_url.as_deref(), &sink.sqlite_path).await?;
            store.migrate().await?;
            let cameras = store.cameras().await?;
            Ok::<_, StoreError>((store, cameras))
        };
        let result = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(None),
            r = attempt => r,
        };
        match result {
            Ok((store, cameras)) => {
                tracing::info!(backend = %store.backend(), cameras = cameras.len(), "database ready");
                return Ok(Some((store, cameras)));
            }
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "database not reachable yet; retrying");
                readiness.set_not_ready("database", e.to_string());
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot open the summaries database ({setting})"));
            }
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(Duration::from_secs(3)) => {}
        }
    }
}
