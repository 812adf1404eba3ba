//! The JSON API on the sink's HTTP port (`sink.http_listen`), described by
//! `GET /api/openapi.json`.
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /api/cameras` | every camera: status, last seen, fps, last window, current incidents, objects present, the newest window with detections, thumbnail link |
//! | `GET /api/cameras/{id}/summaries?from=&to=&limit=` | the camera's windows starting in `[from, to)` (ms since the epoch; default the last hour), with objects per class |
//! | `GET /api/cameras/{id}/events?from=&to=&kind=&label=&limit=` | the camera's incidents overlapping `[from, to)` (default the last 24 h) |
//! | `GET /api/cameras/{id}/detections/latest` | the camera's newest analysed picture and its objects (boxes on the page) |
//! | `GET /api/cameras/{id}/thumbnail.jpg` | the latest keyframe as a JPEG |
//! | `GET /api/openapi.json` | OpenAPI 3.1 description of the above |
//!
//! Errors are JSON `{"error": "…"}`: 400 for a bad parameter (the message names it, and
//! the limit when a time range or `limit` is beyond `[sink.api]`'s), 404 for an unknown
//! camera or path, 429 (with `Retry-After`) when the client's rate limit is used up, 503
//! while the database does not answer or (with `Retry-After`) every read connection stays
//! busy; each counted by reason
//! (`framewire_sink_api_rejected_total`). Everything is read from the database through
//! the API's own read pool (what the pipeline has written, at most one flush old) and the
//! preview's thumbnails; the API never waits for the pipeline, nor the pipeline for it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use framewire_wire::validate_camera_id;
use serde::Serialize;
use serde_json::{Value, json};

use framewire_kit::auth::AdminToken;

use crate::cameras::LatestPicture;
use crate::config::ApiConfig;
use crate::consume::now_ms;
use crate::incidents::{Incident, Kind};
use crate::metrics::Metrics;
use crate::preview::Thumbnails;
use crate::ratelimit::RateLimiter;
use crate::state::Summary;
use crate::store::{Store, StoreError};

/// The OpenAPI description, embedded; [`openapi_document`] fills in the configured limits.
pub const OPENAPI: &str = include_str!("web/openapi.json");

/// Rows a request returns when `limit` is not given (or `sink.api.max_limit` if lower).
pub const DEFAULT_LIMIT: i64 = 1_000;
/// The latest time the API takes: 9999-12-31T23:59:59.999Z, in ms since the epoch.
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// What one request may ask for (`[sink.api]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest `[from, to)` of a summaries or events request.
    pub max_range_ms: i64,
    /// Most rows per request.
    pub max_limit: i64,
}

impl Limits {
    /// The limits of `[sink.api]`.
    pub fn of(api: &ApiConfig) -> Self {
        Limits {
            max_range_ms: api.max_range_ms,
            max_limit: api.max_limit,
        }
    }

    fn default_limit(self) -> i64 {
        DEFAULT_LIMIT.min(self.max_limit)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::of(&ApiConfig::default())
    }
}

/// Why the API turned a request down: the `reason` of `framewire_sink_api_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// 400: a parameter that is malformed, unknown, repeated or out of its range.
    BadParameter,
    /// 400: `[from, to)` longer than `sink.api.max_range_ms`.
    RangeTooLong,
    /// 400: `limit` above `sink.api.max_limit`.
    LimitTooLarge,
    /// 429: the client's rate limit is used up.
    RateLimited,
    /// 503: every connection of the API's read pool stayed in use while the request
    /// waited for one (more requests than `sink.api.read_connections` keep up with).
    Busy,
    /// 503: the database did not answer (in time).
    Unavailable,
}

impl Rejection {
    /// Every reason, for exporting each from 0.
    pub const ALL: [Rejection; 6] = [
        Rejection::BadParameter,
        Rejection::RangeTooLong,
        Rejection::LimitTooLarge,
        Rejection::RateLimited,
        Rejection::Busy,
        Rejection::Unavailable,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::BadParameter => "bad_parameter",
            Rejection::RangeTooLong => "range_too_long",
            Rejection::LimitTooLarge => "limit_too_large",
            Rejection::RateLimited => "rate_limited",
            Rejection::Busy => "busy",
            Rejection::Unavailable => "unavailable",
        }
    }
}

/// What the API reads and how it judges a camera.
#[derive(Clone)]
pub struct ApiState {
    /// The database: the API's own read pool ([`Store::connect_reader`]).
    pub store: Store,
    /// The preview's thumbnails.
    pub thumbnails: Thumbnails,
    /// The sink's metrics (requests are counted).
    pub metrics: Metrics,
    /// A camera is offline when its newest frame is older than this.
    pub offline_after_ms: i64,
    /// Window width.
    pub window_ms: i64,
    /// `sink.detections.min_score`, said beside the objects served.
    pub min_score: f32,
    /// What one request may ask for.
    pub limits: Limits,
    /// The per-client rate limit, when on.
    pub rate_limit: Option<Arc<RateLimiter>>,
    /// The OpenAPI document served ([`openapi_document`] of the limits).
    pub openapi: Arc<str>,
    /// The admin token, when thumbnails need it (`sink.api.thumbnails_need_token`).
    pub thumbnail_token: Option<AdminToken>,
}

/// The OpenAPI document with the configured limits filled in: `limit`'s maximum and
/// default, and the longest time range, in the parameters' descriptions and as
/// `x-framewire-max-range-ms` on the operations that take one.
pub fn openapi_document(limits: Limits) -> String {
    let Ok(mut doc) = serde_json::from_str::<Value>(OPENAPI) else {
        return OPENAPI.to_owned();
    };
    let limit = &mut doc["components"]["parameters"]["Limit"];
    limit["schema"]["maximum"] = json!(limits.max_limit);
    limit["schema"]["default"] = json!(limits.default_limit());
    limit["description"] = json!(format!(
        "At most this many rows (default {}; more than {} is a 400: `sink.api.max_limit`)",
        limits.default_limit(),
        limits.max_limit
    ));
    let range = format!(
        "; `to - from` may be at most {} ms (`sink.api.max_range_ms`): a longer range is a 400",
        limits.max_range_ms
    );
    for path in ["/api/cameras/{id}/summaries", "/api/cameras/{id}/events"] {
        let op = &mut doc["paths"][path]["get"];
        op["x-framewire-max-range-ms"] = json!(limits.max_range_ms);
        if let Some(params) = op["parameters"].as_array_mut() {
            for p in params {
                if matches!(p["name"].as_str(), Some("from" | "to"))
                    && let Some(d) = p["description"].as_str()
                {
                    p["description"] = json!(format!("{d}{range}"));
                }
            }
        }
    }
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| OPENAPI.to_owned())
}

/// The `/api` routes. The client's address (for the rate limit) comes from
/// `ConnectInfo<SocketAddr>`: serve with `into_make_service_with_connect_info`.
pub fn router(state: ApiState) -> Router {
    let metrics = state.metrics.clone();
    let limiter = state.rate_limit.clone();
    Router::new()
        .route("/api/cameras", get(cameras))
        .route("/api/cameras/{id}/summaries", get(summaries))
        .route("/api/cameras/{id}/events", get(events))
        .route("/api/cameras/{id}/thumbnail.jpg", get(thumbnail))
        .route(
            "/api/cameras/{id}/detections/latest",
            get(latest_detections),
        )
        .route("/api/openapi.json", get(openapi))
        .route("/api/{*rest}", get(not_found))
        .with_state(state)
        .route_layer(middleware::from_fn_with_state(limiter, rate_limit))
        .route_layer(middleware::from_fn_with_state(metrics, count))
}

/// An API error: status, message and, for the metric, why.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    reason: Option<Rejection>,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self::rejected(Rejection::BadParameter, message)
    }

    fn rejected(reason: Rejection, message: impl Into<String>) -> Self {
        let status = match reason {
            Rejection::BadParameter | Rejection::RangeTooLong | Rejection::LimitTooLarge => {
                StatusCode::BAD_REQUEST
            }
            Rejection::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Rejection::Busy | Rejection::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError {
            status,
            message: message.into(),
            reason: Some(reason),
        }
    }

    fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
            reason: None,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if let StoreError::Query {
            source: sqlx::Error::PoolTimedOut,
            ..
        } = &e
        {
            tracing::debug!(error = %e, "API read found no free read connection");
            return Self::rejected(
                Rejection::Busy,
                "busy: the API's database connections (sink.api.read_connections) all stayed in use while this request waited; retry later",
            );
        }
        tracing::warn!(error = %e, "API read failed");
        Self::rejected(Rejection::Unavailable, format!("database unavailable: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.reason == Some(Rejection::Busy) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(reason) = self.reason {
            response.extensions_mut().insert(reason);
        }
        response
    }
}

/// 429 with `Retry-After` (whole seconds, at least 1) once the client's bucket is empty.
async fn rate_limit(
    State(limiter): State<Option<Arc<RateLimiter>>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(limiter) = limiter else {
        return next.run(req).await;
    };
    let Some(peer) = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
    else {
        return next.run(req).await;
    };
    match limiter.check(peer, std::time::Instant::now()) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            let mut response = ApiError::rejected(
                Rejection::RateLimited,
                format!(
                    "rate limit: {peer} made more than {} requests per second (burst {}; sink.api.rate_limit_per_second); retry after {seconds} s",
                    limiter.per_second(),
                    limiter.burst()
                ),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            response
        }
    }
}

async fn count(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(req).await;
    metrics
        .http_requests
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .inc();
    if let Some(reason) = response.extensions().get::<Rejection>() {
        metrics
            .api_rejected
            .with_label_values(&[reason.as_str()])
            .inc();
    }
    tracing::debug!(%route, status = %response.status(), ms = started.elapsed().as_millis() as u64, "request");
    response
}

/// One camera in `GET /api/cameras`.
#[derive(Debug, Serialize)]
struct CameraView {
    id: String,
    status: &'static str,
    last_seen_ms: i64,
    last_record_ms: i64,
    first_seen_ms: i64,
    fps: Option<f64>,
    width: i64,
    height: i64,
    session: String,
    last_window: Option<Summary>,
    incidents: Vec<Value>,
    objects_present: Vec<Value>,
    detections_window: Option<Summary>,
    last_analysed_ms: Option<i64>,
    thumbnail: Option<String>,
    thumbnail_capture_ms: Option<i64>,
}

async fn cameras(State(s): State<ApiState>) -> Result<Json<CamerasView>, ApiError> {
    let now = now_ms();
    let rows = s.store.cameras().await?;
    let mut latest = s.store.latest_windows(now - HOUR_MS, 2).await?;
    s.store.attach_classes(&mut latest).await?;
    let mut analysed = s.store.latest_analysed_windows(now - HOUR_MS).await?;
    s.store.attach_classes(&mut analysed).await?;
    let pictures = s.store.latest_picture_times().await?;
    let open = s.store.open_incidents().await?;
    let cameras: Vec<CameraView> = rows
        .into_iter()
        .map(|c| {
            let windows: Vec<&Summary> = latest.iter().filter(|w| w.camera == c.id).collect();
            let last_window = last_complete(&windows, c.last_capture_ms).cloned();
            let online = now - c.last_capture_ms <= s.offline_after_ms;
            let objects_present: Vec<Value> = if online {
                open.iter()
                    .filter(|i| i.camera == c.id && i.kind == Kind::Appeared)
                    .map(
                        |i| json!({"label": i.label, "since_ms": i.start_ms, "pictures": i.frames}),
                    )
                    .collect()
            } else {
                Vec::new()
            };
            let incidents = if online {
                open.iter()
                    .filter(|i| i.camera == c.id && !i.kind.is_object())
                    .map(incident_json)
                    .collect()
            } else {
                vec![json!({
                    "kind": "offline",
                    "start_ms": c.last_capture_ms,
                    "end_ms": null,
                    "duration_ms": now - c.last_capture_ms,
                    "ongoing": true,
                })]
            };
            let thumb = s.thumbnails.get(&c.id);
            CameraView {
                status: if online { "online" } else { "offline" },
                last_seen_ms: c.last_capture_ms,
                last_record_ms: c.last_seen_ms,
                first_seen_ms: c.first_seen_ms,
                fps: camera_fps(&windows, c.first_seen_ms, c.last_capture_ms),
                width: c.width,
                height: c.height,
                session: c.session,
                last_window,
                incidents,
                objects_present,
                detections_window: analysed.iter().find(|w| w.camera == c.id).cloned(),
                last_analysed_ms: pictures.get(&c.id).copied(),
                thumbnail: thumb
                    .as_ref()
                    .map(|_| format!("/api/cameras/{}/thumbnail.jpg", c.id)),
                thumbnail_capture_ms: thumb.map(|t| t.capture_ms),
                id: c.id,
            }
        })
        .collect();
    Ok(Json(CamerasView {
        now_ms: now,
        window_ms: s.window_ms,
        cameras,
    }))
}

/// `GET /api/cameras`. Answers are serialized straight from these views (not through a
/// `serde_json::Value` tree): an hour of windows is a large answer, and building it twice
/// costs the API's threads.
#[derive(Serialize)]
struct CamerasView {
    now_ms: i64,
    window_ms: i64,
    cameras: Vec<CameraView>,
}

/// `GET /api/cameras/{id}/summaries`.
#[derive(Serialize)]
struct SummariesView {
    camera: String,
    from_ms: i64,
    to_ms: i64,
    window_ms: i64,
    windows: Vec<Summary>,
}

/// The newest window the camera's clock has passed the end of, else the newest.
fn last_complete<'a>(windows: &[&'a Summary], last_capture_ms: i64) -> Option<&'a Summary> {
    windows
        .iter()
        .rev()
        .find(|w| w.end_ms <= last_capture_ms)
        .or(windows.last())
        .copied()
}

/// Frames per second: of the newest window the camera streamed through from start
/// (it began after the camera was first seen and ended before its newest frame), else
/// over the time the recent windows have run since the camera was first seen (`None`
/// before a second has passed).
pub fn camera_fps(windows: &[&Summary], first_seen_ms: i64, last_capture_ms: i64) -> Option<f64> {
    if let Some(w) = windows
        .iter()
        .rev()
        .find(|w| w.end_ms <= last_capture_ms && w.start_ms >= first_seen_ms)
    {
        return Some(w.fps);
    }
    let first = windows.first()?;
    let span_ms = last_capture_ms - first.start_ms.max(first_seen_ms);
    let frames: i64 = windows.iter().map(|w| w.frames).sum();
    (span_ms >= 1_000).then(|| frames as f64 * 1000.0 / span_ms as f64)
}

fn incident_json(i: &Incident) -> Value {
    json!({
        "kind": i.kind.as_str(),
        "label": i.kind.is_object().then_some(i.label.as_str()),
        "start_ms": i.start_ms,
        "end_ms": i.end_ms,
        "duration_ms": i.duration_ms,
        "frames": i.frames,
        "session": i.session,
        "ongoing": i.end_ms.is_none(),
    })
}

/// The query parameters of a request, or a 400 naming what is wrong.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(
        query: Result<Query<Vec<(String, String)>>, QueryRejection>,
        allowed: &[&str],
    ) -> Result<Self, ApiError> {
        let Query(pairs) =
            query.map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
        for (k, _) in &pairs {
            if !allowed.contains(&k.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {k:?}; expected {}",
                    allowed.join(", ")
                )));
            }
        }
        Ok(Params(pairs))
    }

    fn get(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self
            .0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(ApiError::bad_request(format!(
                "parameter {name} is given twice"
            )));
        }
        Ok(first)
    }

    /// A time in ms since the epoch, from 0 to [`MAX_TIME_MS`].
    fn time(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)?
            .map(|v| {
                v.parse::<i64>()
                    .ok()
                    .filter(|t| (0..=MAX_TIME_MS).contains(t))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "{name}: {v:?} is not a time in ms since the Unix epoch (0 to {MAX_TIME_MS})"
                        ))
                    })
            })
            .transpose()
    }

    fn limit(&self, limits: Limits) -> Result<i64, ApiError> {
        let Some(v) = self.get("limit")? else {
            return Ok(limits.default_limit());
        };
        let max = limits.max_limit;
        match v.parse::<i64>() {
            Ok(n) if n > max => Err(ApiError::rejected(
                Rejection::LimitTooLarge,
                format!(
                    "limit: {n} is more than {max}, the most rows one request returns (sink.api.max_limit); ask for fewer and page with from"
                ),
            )),
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "limit: {v:?} is not a number from 1 to {max}"
            ))),
        }
    }

    /// `[from, to)`. Without `to`: now, or `from` plus the longest range when that is
    /// earlier (but not before `from`); without `from`: `to` minus `default_span_ms` (or
    /// the longest range when shorter), not before 0. `from == to` is an empty range
    /// (nothing is read); `from` after `to` or a range longer than `max_range_ms` is a 400.
    fn range(&self, default_span_ms: i64, limits: Limits) -> Result<(i64, i64), ApiError> {
        let max = limits.max_range_ms;
        let from = self.time("from")?;
        let to = match (self.time("to")?, from) {
            (Some(to), _) => to,
            (None, Some(from)) => (now_ms() + 1).min(from.saturating_add(max)).max(from),
            (None, None) => now_ms() + 1,
        };
        let from = from.unwrap_or_else(|| (to - default_span_ms.min(max)).max(0));
        if from > to {
            return Err(ApiError::bad_request(format!(
                "from ({from}) must not be after to ({to})"
            )));
        }
        if to - from > max {
            return Err(ApiError::rejected(
                Rejection::RangeTooLong,
                format!(
                    "from, to: the range {from}..{to} spans {} ms, more than {max} ms ({}), the longest one request may ask for (sink.api.max_range_ms); ask for a shorter range",
                    to - from,
                    human_ms(max)
                ),
            ));
        }
        Ok((from, to))
    }
}

/// `604800000` as `7 d`, `5400000` as `90 min`, else `N ms`.
fn human_ms(ms: i64) -> String {
    if ms % DAY_MS == 0 {
        format!("{} d", ms / DAY_MS)
    } else if ms % 60_000 == 0 {
        format!("{} min", ms / 60_000)
    } else {
        format!("{ms} ms")
    }
}

/// Checks the id, then that the camera exists (in the database or the preview).
async fn known_camera(s: &ApiState, id: &str) -> Result<(), ApiError> {
    validate_camera_id(id).map_err(ApiError::bad_request)?;
    if s.store.camera(id).await?.is_some() || s.thumbnails.get(id).is_some() {
        return Ok(());
    }
    Err(ApiError::not_found(format!("unknown camera {id:?}")))
}

async fn summaries(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<SummariesView>, ApiError> {
    let p = Params::parse(query, &["from", "to", "limit"])?;
    let (from, to) = p.range(HOUR_MS, s.limits)?;
    let limit = p.limit(s.limits)?;
    known_camera(&s, &id).await?;
    let mut windows = if from == to {
        Vec::new()
    } else {
        s.store.windows(&id, from, to, limit).await?
    };
    s.store.attach_classes(&mut windows).await?;
    Ok(Json(SummariesView {
        camera: id,
        from_ms: from,
        to_ms: to,
        window_ms: s.window_ms,
        windows,
    }))
}

async fn events(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(query, &["from", "to", "kind", "label", "limit"])?;
    let (from, to) = p.range(DAY_MS, s.limits)?;
    let limit = p.limit(s.limits)?;
    let kind = p
        .get("kind")?
        .map(|k| {
            Kind::parse(k).ok_or_else(|| {
                let all: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
                ApiError::bad_request(format!("kind: {k:?} is not one of {}", all.join(", ")))
            })
        })
        .transpose()?;
    let label = p.get("label")?;
    known_camera(&s, &id).await?;
    let stored = if from == to {
        Vec::new()
    } else {
        s.store.events(&id, from, to, limit).await?
    };
    let events: Vec<Value> = stored
        .iter()
        .filter(|i| kind.is_none_or(|k| i.kind == k))
        .filter(|i| label.is_none_or(|l| i.kind.is_object() && i.label == l))
        .map(incident_json)
        .collect();
    Ok(Json(json!({
        "camera": id,
        "from_ms": from,
        "to_ms": to,
        "events": events,
    })))
}

async fn thumbnail(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    request_headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(refusal) = s
        .thumbnail_token
        .as_ref()
        .and_then(|t| t.refusal(&request_headers, "thumbnails"))
    {
        return Ok(refusal);
    }
    validate_camera_id(&id).map_err(ApiError::bad_request)?;
    let Some(t) = s.thumbnails.get(&id) else {
        known_camera(&s, &id).await?;
        return Err(ApiError::not_found(format!(
            "camera {id:?} has no thumbnail yet (no keyframe decoded since the sink started)"
        )));
    };
    let mut response = (StatusCode::OK, t.jpeg.as_ref().clone()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&t.capture_ms.to_string()) {
        headers.insert("x-framewire-capture-ms", v);
    }
    Ok(response)
}

async fn latest_detections(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    validate_camera_id(&id).map_err(ApiError::bad_request)?;
    let Some(p) = s.store.latest_picture(&id).await? else {
        known_camera(&s, &id).await?;
        return Err(ApiError::not_found(format!(
            "camera {id:?} has no analysed picture yet (no detections record received)"
        )));
    };
    Ok(Json(LatestView {
        picture: &p,
        min_score: s.min_score,
    })
    .into_response())
}

/// `GET /api/cameras/{id}/detections/latest`: the picture and the score floor. Serialized
/// straight (not through `json!`), so scores and box edges keep their short f32 form.
#[derive(Serialize)]
struct LatestView<'a> {
    #[serde(flatten)]
    picture: &'a LatestPicture,
    min_score: f32,
}

async fn openapi(State(s): State<ApiState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        s.openapi.to_string(),
    )
        .into_response()
}

async fn not_found(Path(rest): Path<String>) -> ApiError {
    ApiError::not_found(format!(
        "no such API path /api/{rest}; see /api/openapi.json"
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use axum::body::Body;
    use axum::http::Request as HttpRequest;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use crate::frame::FrameKind;
    use crate::frame::tests::{analysed, stats};
    use crate::store::FlushInput;
    use crate::window::Batch;

    fn summary(start_ms: i64, frames: i64) -> Summary {
        let mut s = crate::state::WindowState::new().summary("cam", start_ms, 10_000);
        s.frames = frames;
        s.fps = frames as f64 / 10.0;
        s
    }

    #[test]
    fn fps_comes_from_the_newest_whole_window_or_the_running_ones() {
        let (a, b) = (summary(0, 250), summary(10_000, 100));
        assert_eq!(camera_fps(&[&a, &b], 0, 14_000), Some(25.0));
        assert_eq!(last_complete(&[&a, &b], 14_000), Some(&a));
        let c = summary(20_000, 50);
        assert_eq!(
            camera_fps(&[&b, &c], 0, 20_000),
            Some(10.0),
            "b ended at 20 000"
        );
        // The camera started at 6 s: its first window is partial and does not count;
        // 100 + 100 frames over the 8 s since it started.
        let (p, q) = (summary(0, 100), summary(10_000, 100));
        assert_eq!(camera_fps(&[&p, &q], 6_000, 14_000), Some(25.0));
        assert_eq!(
            camera_fps(&[&p, &q], 6_000, 20_000),
            Some(10.0),
            "q is whole"
        );
        // Only the running window: 50 frames in 2 s.
        assert_eq!(camera_fps(&[&c], 0, 22_000), Some(25.0));
        assert_eq!(camera_fps(&[&c], 0, 20_500), None, "under a second");
        assert_eq!(camera_fps(&[], 0, 0), None);
    }

    /// A SQLite store with one camera `cam` (25 fps for 20 s, black from 12 s) and a
    /// thumbnail for it.
    async fn state() -> (ApiState, tempfile::TempDir, i64) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect_sqlite(&dir.path().join("api.sqlite"))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let now = now_ms();
        let t0 = (now - 30_000).div_euclid(10_000) * 10_000;
        let mut cams = crate::cameras::Cameras::new(crate::incidents::tests::RULES);
        let mut batches: Vec<Batch> = Vec::new();
        for n in 0..500u64 {
            let mut f = stats("cam", "s", n, t0 + n as i64 * 40);
            if let FrameKind::Stats(st) = &mut f.kind {
                st.black = n >= 300;
            }
            // Every 5th frame analysed: two people on 100..200 every 10th, else one; a
            // car from 400 on.
            let mut frames = vec![f];
            if n % 5 == 0 {
                let mut objects: Vec<(&str, f32)> = Vec::new();
                if (100..200).contains(&n) {
                    objects.push(("person", 0.9));
                    if n % 10 == 0 {
                        objects.push(("person", 0.6));
                    }
                }
                if n >= 400 {
                    objects.push(("car", 0.8));
                }
                frames.push(analysed("cam", "s", n, t0 + n as i64 * 40, &objects));
            }
            for f in frames {
                cams.observe(&f, t0);
                let start = f.capture_ms.div_euclid(10_000) * 10_000;
                match batches.iter_mut().find(|b| b.start_ms == start) {
                    Some(b) => b.frames.push(f),
                    None => batches.push(Batch {
                        camera: "cam".into(),
                        start_ms: start,
                        frames: vec![f],
                    }),
                }
            }
        }
        let (rows, incidents) = cams.take_dirty();
        let pictures = cams.take_pictures();
        store
            .flush(FlushInput {
                windows: &batches,
                cameras: &rows,
                incidents: &incidents,
                pictures: &pictures,
                window_ms: 10_000,
                now_ms: now,
            })
            .await
            .unwrap();
        let thumbnails = Thumbnails::default();
        thumbnails.put(
            "cam",
            crate::preview::Thumbnail {
                jpeg: std::sync::Arc::new(vec![0xFF, 0xD8, 0xFF, 0xD9]),
                capture_ms: t0,
                session: "s".into(),
                seq: 0,
                width: 640,
                height: 360,
            },
        );
        // The API reads through read-only connections of its own, as in the sink.
        let metrics = Metrics::new(&framewire_kit::metrics::registry());
        let path = dir.path().join("api.sqlite");
        let reader = Store::connect_reader(
            None,
            path.to_str().unwrap().to_owned(),
            2,
            metrics.api_read_wait.clone(),
        )
        .await
        .unwrap();
        store.close().await;
        let state = ApiState {
            store: reader,
            thumbnails,
            metrics,
            offline_after_ms: 60_000,
            window_ms: 10_000,
            min_score: 0.5,
            limits: Limits::default(),
            rate_limit: None,
            openapi: openapi_document(Limits::default()).into(),
            thumbnail_token: None,
        };
        (state, dir, t0)
    }

    async fn get(app: &Router, uri: &str) -> (StatusCode, String, Option<String>) {
        let res = app
            .clone()
            .oneshot(HttpRequest::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let ctype = res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned(), ctype)
    }

    fn error_of(body: &str) -> String {
        let v: Value = serde_json::from_str(body).unwrap();
        v["error"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn thumbnails_can_require_the_admin_token() {
        let (mut state, _dir, _) = state().await;
        let token = "thumbnail-token-0123456789";
        state.thumbnail_token = Some(AdminToken::new(Some(token), &prometheus::Registry::new()));
        let app = router(state);
        let ask = |auth: Option<String>| {
            let mut req = HttpRequest::get("/api/cameras/cam/thumbnail.jpg");
            if let Some(a) = auth {
                req = req.header(header::AUTHORIZATION, a);
            }
            app.clone().oneshot(req.body(Body::empty()).unwrap())
        };
        let res = ask(None).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(res.headers().contains_key(header::WWW_AUTHENTICATE));
        let res = ask(Some("Bearer wrong-token-0123456789".into()))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        let res = ask(Some(format!("Bearer {token}"))).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        // Everything else stays as open as before.
        let (code, _, _) = get(&app, "/api/cameras").await;
        assert_eq!(code, StatusCode::OK);
    }

    #[tokio::test]
    async fn cameras_summaries_events_and_thumbnails() {
        let (state, _dir, t0) = state().await;
        let app = router(state);

        let (code, body, ctype) = get(&app, "/api/cameras").await;
        assert_eq!(
            (code, ctype.as_deref()),
            (StatusCode::OK, Some("application/json"))
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        let cam = &v["cameras"][0];
        assert_eq!(cam["id"], "cam");
        assert_eq!(cam["status"], "online");
        assert_eq!(cam["last_seen_ms"], t0 + 499 * 40);
        assert_eq!(cam["fps"], 25.0);
        assert_eq!(cam["last_window"]["frames"], 250);
        assert_eq!(cam["thumbnail"], "/api/cameras/cam/thumbnail.jpg");
        assert_eq!(cam["incidents"][0]["kind"], "black");
        assert_eq!(cam["incidents"][0]["start_ms"], t0 + 12_000);
        assert_eq!(cam["incidents"][0]["ongoing"], true);

        let (code, body, _) = get(
            &app,
            &format!("/api/cameras/cam/summaries?from={t0}&to={}", t0 + 20_000),
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["camera"], "cam");
        let w = v["windows"].as_array().unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(
            (w[0]["start_ms"].as_i64(), w[0]["frames"].as_i64()),
            (Some(t0), Some(250))
        );
        assert_eq!(w[1]["black_frames"], 200);
        assert!(w[0].get("camera").is_none(), "the camera is said once");

        let (code, body, _) = get(&app, "/api/cameras/cam/events?kind=black").await;
        assert_eq!(code, StatusCode::OK, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["events"].as_array().unwrap().len(), 1);
        assert_eq!(v["events"][0]["end_ms"], Value::Null);

        let (code, body, ctype) = get(&app, "/api/cameras/cam/thumbnail.jpg").await;
        assert_eq!(
            (code, ctype.as_deref()),
            (StatusCode::OK, Some("image/jpeg"))
        );
        assert!(body.len() >= 2);

        let (code, body, ctype) = get(&app, "/api/openapi.json").await;
        assert_eq!(
            (code, ctype.as_deref()),
            (StatusCode::OK, Some("application/json"))
        );
        let spec: Value = serde_json::from_str(&body).unwrap();
        for path in [
            "/api/cameras",
            "/api/cameras/{id}/summaries",
            "/api/cameras/{id}/events",
            "/api/cameras/{id}/thumbnail.jpg",
            "/api/cameras/{id}/detections/latest",
        ] {
            assert!(spec["paths"].get(path).is_some(), "{path} not described");
        }
    }

    #[tokio::test]
    async fn windows_carry_objects_per_class_and_objects_make_incidents() {
        let (state, _dir, t0) = state().await;
        let app = router(state);
        let (code, body, _) = get(
            &app,
            &format!("/api/cameras/cam/summaries?from={t0}&to={}", t0 + 20_000),
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let w = &v["windows"];
        // Window 0: frames 0..250, every 5th analysed; people on 100..200.
        assert_eq!(w[0]["pictures_analysed"], 50);
        assert_eq!(
            w[0]["classes"],
            json!({"person": {"objects": 30, "max_per_picture": 2, "pictures": 20}})
        );
        assert_eq!(w[1]["pictures_analysed"], 50);
        assert_eq!(
            w[1]["classes"],
            json!({"car": {"objects": 20, "max_per_picture": 1, "pictures": 20}})
        );

        let (_, body, _) = get(&app, "/api/cameras").await;
        let v: Value = serde_json::from_str(&body).unwrap();
        let cam = &v["cameras"][0];
        assert_eq!(
            cam["incidents"].as_array().unwrap().len(),
            1,
            "objects are not problems: {cam}"
        );
        assert_eq!(
            cam["objects_present"],
            json!([{"label": "car", "since_ms": t0 + 16_000, "pictures": 20}])
        );
        assert_eq!(cam["detections_window"]["start_ms"], t0 + 10_000);
        assert_eq!(cam["detections_window"]["classes"]["car"]["objects"], 20);
        assert_eq!(cam["last_analysed_ms"], t0 + 495 * 40);

        let (code, body, _) = get(&app, "/api/cameras/cam/events?kind=appeared").await;
        assert_eq!(code, StatusCode::OK, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let brief: Vec<(String, i64, Value)> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["label"].as_str().unwrap().to_owned(),
                    e["start_ms"].as_i64().unwrap(),
                    e["end_ms"].clone(),
                )
            })
            .collect();
        assert_eq!(
            brief,
            [
                ("person".to_owned(), t0 + 4_000, json!(t0 + 8_000)),
                ("car".to_owned(), t0 + 16_000, Value::Null),
            ],
            "the person left at the first picture without them (200), noticed 5 s after 195"
        );
        let (_, body, _) = get(&app, "/api/cameras/cam/events?kind=left&label=person").await;
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["events"].as_array().unwrap().len(), 1, "{v}");
        assert_eq!(
            (&v["events"][0]["start_ms"], &v["events"][0]["duration_ms"]),
            (&json!(t0 + 8_000), &json!(0))
        );
        // A point event at exactly `from` is inside [from, to).
        let (_, body, _) = get(
            &app,
            &format!("/api/cameras/cam/events?kind=left&from={}", t0 + 8_000),
        )
        .await;
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["events"].as_array().unwrap().len(), 1, "{v}");
        let (_, body, _) = get(&app, "/api/cameras/cam/events?label=dog").await;
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["events"].as_array().unwrap().is_empty());

        let (code, body, _) = get(&app, "/api/cameras/cam/detections/latest").await;
        assert_eq!(code, StatusCode::OK, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (&v["seq"], &v["capture_ms"]),
            (&json!(495), &json!(t0 + 495 * 40))
        );
        assert_eq!(
            (&v["width"], &v["height"], &v["min_score"]),
            (&json!(640), &json!(360), &json!(0.5))
        );
        let objects = v["objects"].as_array().unwrap();
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0]["label"], "car");
        assert_eq!(
            objects[0]["box"],
            json!({"x0": 0.1, "y0": 0.2, "x1": 0.3, "y1": 0.4})
        );
    }

    /// Validates `instance` against the schema at `pointer` (a JSON pointer) in the
    /// OpenAPI document; panics listing every violation.
    fn conforms(spec: &Value, pointer: &str, instance: &Value) {
        let mut root = spec.clone();
        root["$ref"] = Value::String(format!("#{pointer}"));
        let validator = jsonschema::validator_for(&root).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{pointer}: {errors:#?}\n{instance:#}");
    }

    #[tokio::test]
    async fn every_response_matches_the_openapi_document() {
        let (state, _dir, t0) = state().await;
        let app = router(state);
        let spec: Value = serde_json::from_str(OPENAPI).unwrap();
        let ok = |path: &str| {
            format!(
                "/paths/{}/get/responses/200/content/application~1json/schema",
                path.replace('~', "~0")
                    .replace('/', "~1")
                    .replace('{', "%7B")
                    .replace('}', "%7D")
            )
        };
        let error = "/components/schemas/Error";
        for (uri, pointer) in [
            ("/api/cameras".to_owned(), ok("/api/cameras")),
            (
                format!("/api/cameras/cam/summaries?from={t0}"),
                ok("/api/cameras/{id}/summaries"),
            ),
            (
                "/api/cameras/cam/events".to_owned(),
                ok("/api/cameras/{id}/events"),
            ),
            (
                "/api/cameras/cam/detections/latest".to_owned(),
                ok("/api/cameras/{id}/detections/latest"),
            ),
            (
                "/api/cameras/nope/detections/latest".to_owned(),
                error.to_owned(),
            ),
            (
                "/api/cameras/cam/events?kind=blue".to_owned(),
                error.to_owned(),
            ),
        ] {
            let (_, body, _) = get(&app, &uri).await;
            let v: Value = serde_json::from_str(&body).unwrap();
            conforms(&spec, &pointer, &v);
        }
        // The document is strict: an undocumented field fails.
        let (_, body, _) = get(&app, "/api/cameras").await;
        let mut v: Value = serde_json::from_str(&body).unwrap();
        v["cameras"][0]["detections_window"]["undocumented"] = json!(1);
        let mut root = spec.clone();
        root["$ref"] = Value::String(format!("#{}", ok("/api/cameras")));
        assert!(!jsonschema::validator_for(&root).unwrap().is_valid(&v));
        // Every kind the sink stores is in the document's enums.
        let kinds = &spec["components"]["schemas"]["Incident"]["properties"]["kind"]["enum"];
        for k in Kind::ALL {
            assert!(
                kinds.as_array().unwrap().contains(&json!(k.as_str())),
                "{k:?}"
            );
        }
    }

    #[tokio::test]
    async fn bad_parameters_are_400_and_unknown_cameras_404_with_a_message() {
        let (state, _dir, _) = state().await;
        let app = router(state);
        for (uri, message) in [
            (
                "/api/cameras/cam/summaries?from=abc",
                "from: \"abc\" is not a time in ms since the Unix epoch (0 to 253402300799999)",
            ),
            (
                "/api/cameras/cam/summaries?from=10&to=5",
                "from (10) must not be after to (5)",
            ),
            (
                "/api/cameras/cam/summaries?to=-1",
                "to: \"-1\" is not a time in ms since the Unix epoch (0 to 253402300799999)",
            ),
            (
                "/api/cameras/cam/events?to=253402300800000",
                "to: \"253402300800000\" is not a time in ms since the Unix epoch (0 to 253402300799999)",
            ),
            (
                "/api/cameras/cam/summaries?limit=0",
                "limit: \"0\" is not a number from 1 to 10000",
            ),
            (
                "/api/cameras/cam/summaries?form=1",
                "unknown parameter \"form\"; expected from, to, limit",
            ),
            (
                "/api/cameras/cam/summaries?from=1&from=2",
                "parameter from is given twice",
            ),
            (
                "/api/cameras/cam/events?kind=blue",
                "kind: \"blue\" is not one of black, frozen, gap, appeared, left",
            ),
            (
                "/api/cameras/a%20b/summaries",
                "camera id \"a b\" has the character ' '; allowed are A-Z a-z 0-9 . _ -",
            ),
        ] {
            let (code, body, _) = get(&app, uri).await;
            assert_eq!(code, StatusCode::BAD_REQUEST, "{uri}: {body}");
            assert_eq!(error_of(&body), message, "{uri}");
        }
        for (uri, message) in [
            ("/api/cameras/nope/summaries", "unknown camera \"nope\""),
            ("/api/cameras/nope/events", "unknown camera \"nope\""),
            ("/api/cameras/nope/thumbnail.jpg", "unknown camera \"nope\""),
            (
                "/api/cameras/nope/detections/latest",
                "unknown camera \"nope\"",
            ),
            (
                "/api/nothing",
                "no such API path /api/nothing; see /api/openapi.json",
            ),
        ] {
            let (code, body, _) = get(&app, uri).await;
            assert_eq!(code, StatusCode::NOT_FOUND, "{uri}: {body}");
            assert_eq!(error_of(&body), message, "{uri}");
        }
    }

    /// API requests turned down for `reason` so far.
    fn rejected(state: &ApiState, reason: Rejection) -> u64 {
        state
            .metrics
            .api_rejected
            .with_label_values(&[reason.as_str()])
            .get()
    }

    #[tokio::test]
    async fn ranges_and_limits_beyond_the_settings_are_400s_naming_them() {
        let (mut state, _dir, t0) = state().await;
        state.limits = Limits {
            max_range_ms: 2 * HOUR_MS,
            max_limit: 50,
        };
        let app = router(state.clone());
        let too_long = format!(
            "from, to: the range {t0}..{} spans 7200001 ms, more than 7200000 ms (120 min), the longest one request may ask for (sink.api.max_range_ms); ask for a shorter range",
            t0 + 2 * HOUR_MS + 1
        );
        for (uri, message) in [
            (
                format!("/api/cameras/cam/summaries?from={t0}&to={}", t0 + 2 * HOUR_MS + 1),
                too_long.clone(),
            ),
            (
                format!("/api/cameras/cam/events?from={t0}&to={}", t0 + 2 * HOUR_MS + 1),
                too_long,
            ),
            (
                "/api/cameras/cam/summaries?limit=51".to_owned(),
                "limit: 51 is more than 50, the most rows one request returns (sink.api.max_limit); ask for fewer and page with from".to_owned(),
            ),
            (
                "/api/cameras/cam/events?limit=10001".to_owned(),
                "limit: 10001 is more than 50, the most rows one request returns (sink.api.max_limit); ask for fewer and page with from".to_owned(),
            ),
        ] {
            let (code, body, _) = get(&app, &uri).await;
            assert_eq!(code, StatusCode::BAD_REQUEST, "{uri}: {body}");
            assert_eq!(error_of(&body), message, "{uri}");
        }
        assert_eq!(rejected(&state, Rejection::RangeTooLong), 2);
        assert_eq!(rejected(&state, Rejection::LimitTooLarge), 2);
        let (_, body, _) = get(&app, "/api/cameras/cam/summaries?from=x").await;
        assert!(body.contains("not a time"), "{body}");
        assert_eq!(rejected(&state, Rejection::BadParameter), 1);

        // Exactly the longest range, and the limit, are fine; so are ranges the defaults
        // make: events default to 24 h, cut to the longest range.
        for uri in [
            format!(
                "/api/cameras/cam/summaries?from={t0}&to={}&limit=50",
                t0 + 2 * HOUR_MS
            ),
            "/api/cameras/cam/events".to_owned(),
            "/api/cameras/cam/summaries".to_owned(),
        ] {
            let (code, body, _) = get(&app, &uri).await;
            assert_eq!(code, StatusCode::OK, "{uri}: {body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            let span = v["to_ms"].as_i64().unwrap() - v["from_ms"].as_i64().unwrap();
            assert!(span <= 2 * HOUR_MS, "{uri}: {span}");
        }
        // `from` alone: `to` is the end of the longest range after it, or now.
        let (code, body, _) = get(&app, "/api/cameras/cam/summaries?from=0").await;
        assert_eq!(code, StatusCode::OK, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (v["from_ms"].as_i64(), v["to_ms"].as_i64()),
            (Some(0), Some(2 * HOUR_MS))
        );
        let (_, body, _) = get(&app, &format!("/api/cameras/cam/summaries?from={t0}")).await;
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["windows"].as_array().unwrap().len(), 2, "to is now: {v}");
        assert!(
            state.metrics.api_read_wait.get_sample_count() > 0,
            "reads waited (briefly) for the read pool"
        );
    }

    #[tokio::test]
    async fn empty_ranges_answer_nothing_and_the_future_is_empty() {
        let (state, _dir, t0) = state().await;
        let app = router(state);
        for uri in [
            "/api/cameras/cam/summaries?to=0".to_owned(),
            "/api/cameras/cam/events?to=0".to_owned(),
            format!("/api/cameras/cam/events?from={t0}&to={t0}"),
            format!("/api/cameras/cam/summaries?from={MAX_TIME_MS}"),
            format!("/api/cameras/cam/events?from={MAX_TIME_MS}&to={MAX_TIME_MS}"),
        ] {
            let (code, body, _) = get(&app, &uri).await;
            assert_eq!(code, StatusCode::OK, "{uri}: {body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            let rows = v.get("windows").or(v.get("events")).unwrap();
            assert_eq!(rows.as_array().map(Vec::len), Some(0), "{uri}: {v}");
        }
        let (code, _, _) = get(&app, "/api/cameras/nope/summaries?to=0").await;
        assert_eq!(code, StatusCode::NOT_FOUND, "the camera is still checked");
    }

    #[tokio::test]
    async fn a_client_beyond_its_rate_gets_429_with_retry_after() {
        let (mut state, _dir, _) = state().await;
        state.rate_limit = Some(Arc::new(RateLimiter::new(1, 3)));
        let app = router(state.clone());
        let from = |ip: [u8; 4]| {
            let mut req = HttpRequest::get("/api/cameras")
                .body(Body::empty())
                .unwrap();
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::from((ip, 40_000))));
            req
        };
        let mut codes = Vec::new();
        for _ in 0..5 {
            let res = app.clone().oneshot(from([10, 0, 0, 1])).await.unwrap();
            codes.push(res.status().as_u16());
            if res.status() == StatusCode::TOO_MANY_REQUESTS {
                assert_eq!(res.headers()[header::RETRY_AFTER], "1");
                let body = res.into_body().collect().await.unwrap().to_bytes();
                let message = error_of(&String::from_utf8_lossy(&body));
                assert_eq!(
                    message,
                    "rate limit: 10.0.0.1 made more than 1 requests per second (burst 3; sink.api.rate_limit_per_second); retry after 1 s"
                );
            }
        }
        assert_eq!(codes, [200, 200, 200, 429, 429]);
        let other = app.clone().oneshot(from([10, 0, 0, 2])).await.unwrap();
        assert_eq!(
            other.status(),
            StatusCode::OK,
            "another client is not limited"
        );
        assert_eq!(rejected(&state, Rejection::RateLimited), 2);
        // The 429 is in the OpenAPI document, with its header.
        let spec: Value = serde_json::from_str(&state.openapi).unwrap();
        for path in ["/api/cameras", "/api/cameras/{id}/summaries"] {
            assert_eq!(
                spec["paths"][path]["get"]["responses"]["429"]["$ref"],
                "#/components/responses/TooManyRequests"
            );
        }
        assert!(
            spec["components"]["responses"]["TooManyRequests"]["headers"]["Retry-After"]
                .is_object()
        );
    }

    #[tokio::test]
    async fn requests_that_find_every_read_connection_busy_are_503_with_retry_after() {
        let (state, _dir, _) = state().await;
        let crate::store::Pool::Sqlite(pool) = state.store.pool() else {
            unreachable!("the fixture is SQLite")
        };
        // Hold both read connections: the request waits 3 s for one, then gives up.
        let held = (pool.acquire().await.unwrap(), pool.acquire().await.unwrap());
        let res = router(state.clone())
            .oneshot(
                HttpRequest::get("/api/cameras")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert!(
            error_of(&String::from_utf8_lossy(&body)).starts_with("busy: "),
            "{body:?}"
        );
        assert_eq!(rejected(&state, Rejection::Busy), 1);
        drop(held);
        let (code, _, _) = get(&router(state), "/api/cameras").await;
        assert_eq!(code, StatusCode::OK);
    }

    #[test]
    fn the_served_document_carries_the_configured_limits() {
        let doc = openapi_document(Limits {
            max_range_ms: 3 * DAY_MS,
            max_limit: 500,
        });
        let spec: Value = serde_json::from_str(&doc).unwrap();
        let limit = &spec["components"]["parameters"]["Limit"];
        assert_eq!(limit["schema"]["maximum"], 500);
        assert_eq!(limit["schema"]["default"], 500);
        let summaries = &spec["paths"]["/api/cameras/{id}/summaries"]["get"];
        assert_eq!(summaries["x-framewire-max-range-ms"], 3 * DAY_MS);
        let to = summaries["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "to")
            .unwrap();
        assert!(
            to["description"]
                .as_str()
                .unwrap()
                .contains("at most 259200000 ms"),
            "{to}"
        );
        assert_eq!(to["schema"]["maximum"], MAX_TIME_MS);
        // The template itself is the default document, less the filled-in parts.
        let default: Value = serde_json::from_str(&openapi_document(Limits::default())).unwrap();
        let template: Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(
            default["components"]["schemas"],
            template["components"]["schemas"]
        );
    }
}
