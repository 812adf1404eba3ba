//! The debug surface on the admin port, for `kubectl port-forward`:
//!
//! - `GET /debug/assignment`: partitions (offsets, lag) and cameras (last seq, lag) of
//!   this replica;
//! - `GET /debug/cameras/{id}/snapshot.jpg`: the camera's next decoded picture as JPEG;
//! - `GET /debug/cameras/{id}/mjpeg`: a multipart MJPEG live view at most
//!   `worker.mjpeg_max_fps`, costing nothing once the viewer goes away.
//!
//! The two picture routes show live video of the cameras' sites: they need the admin
//! token (`admin.token`, see [`framewire_kit::auth`]; a browser can give it as the
//! password of its login prompt), and at most `worker.live_view_max_viewers` of them are
//! served at once (429 beyond). Pictures are only copied while someone waits for them
//! (see [`crate::snapshot`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;

use framewire_kit::auth::{AdminToken, require_token};
use prometheus::{IntCounter, IntGauge, Registry};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::assignment::Assignment;
use crate::snapshot::{Snapshot, Watchers};

/// How long a request waits for the camera's next picture.
const PICTURE_WAIT: Duration = Duration::from_secs(5);
/// JPEG quality of snapshots and the live view.
const QUALITY: u8 = 80;
/// Widest picture served (larger ones are scaled down).
const MAX_WIDTH: u32 = 1920;
/// Multipart boundary of the live view.
const BOUNDARY: &str = "framewire-frame";

/// What the debug routes read.
#[derive(Clone)]
pub struct DebugState {
    /// Partitions and cameras of this replica.
    pub assignment: Arc<Assignment>,
    /// Waiters for pictures, served by the decoder threads.
    pub watchers: Arc<Watchers>,
    /// Least time between two live-view pictures.
    pub mjpeg_interval: Duration,
    /// `admin.token`, required by the picture routes.
    pub token: AdminToken,
    /// The live-view cap.
    pub viewers: Viewers,
}

/// At most `worker.live_view_max_viewers` live views at once, counted in metrics.
#[derive(Clone)]
pub struct Viewers {
    slots: Arc<Semaphore>,
    max: u32,
    active: IntGauge,
    refused: IntCounter,
}

/// A live view being served: its slot is freed when the view ends (the viewer leaves).
struct Viewing {
    _permit: OwnedSemaphorePermit,
    active: IntGauge,
}

impl Drop for Viewing {
    fn drop(&mut self) {
        self.active.dec();
    }
}

impl Viewers {
    /// A cap of `max` views, with `framewire_worker_live_viewers` and
    /// `framewire_worker_live_views_refused_total` on `registry`.
    pub fn new(max: u32, registry: &Registry) -> Self {
        let b = framewire_kit::metrics::Builder(registry);
        Viewers {
            slots: Arc::new(Semaphore::new(max as usize)),
            max,
            active: b.gauge(
                "framewire_worker_live_viewers",
                "Live views (snapshot waits and MJPEG streams) being served",
            ),
            refused: b.counter(
                "framewire_worker_live_views_refused_total",
                "Live views refused because worker.live_view_max_viewers were being served",
            ),
        }
    }

    /// A slot for one view, if one is free.
    fn enter(&self) -> Option<Viewing> {
        let permit = self.slots.clone().try_acquire_owned().ok()?;
        self.active.inc();
        Some(Viewing {
            _permit: permit,
            active: self.active.clone(),
        })
    }

    /// The 429 for a view beyond the cap (counted).
    fn full(&self) -> Response {
        self.refused.inc();
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{} live views are being served (worker.live_view_max_viewers); try again later",
                self.max
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        r
    }
}

/// The `/debug/*` routes; the picture routes need the admin token.
pub fn router(state: DebugState) -> Router {
    let pictures = Router::new()
        .route("/debug/cameras/{id}/snapshot.jpg", get(snapshot))
        .route("/debug/cameras/{id}/mjpeg", get(mjpeg))
        .route_layer(middleware::from_fn_with_state(
            state.token.clone(),
            require_token,
        ));
    Router::new()
        .route("/debug/assignment", get(assignment))
        .merge(pictures)
        .with_state(state)
}

async fn assignment(State(s): State<DebugState>) -> Json<serde_json::Value> {
    Json(s.assignment.to_json())
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// Why `camera` cannot be shown by this replica, if it cannot.
fn camera_problem(s: &DebugState, camera: &str) -> Option<Response> {
    if let Err(e) = framewire_wire::validate_camera_id(camera) {
        return Some(error(
            StatusCode::BAD_REQUEST,
            format!("camera id {camera:?}: {e}"),
        ));
    }
    if !s.assignment.has_camera(camera) {
        return Some(error(
            StatusCode::NOT_FOUND,
            format!(
                "camera {camera} is not decoded by this worker replica (see /debug/assignment)"
            ),
        ));
    }
    None
}

async fn encode(snapshot: Arc<Snapshot>) -> Result<Vec<u8>, String> {
    tokio::task::spawn_blocking(move || {
        snapshot
            .to_jpeg(MAX_WIDTH, QUALITY)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

async fn snapshot(State(s): State<DebugState>, Path(camera): Path<String>) -> Response {
    if let Some(r) = camera_problem(&s, &camera) {
        return r;
    }
    let Some(_viewing) = s.viewers.enter() else {
        return s.viewers.full();
    };
    let Some(picture) = s.watchers.next(&camera, PICTURE_WAIT).await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no picture of camera {camera} decoded within {} s",
                PICTURE_WAIT.as_secs()
            ),
        );
    };
    let (seq, capture_ms) = (picture.seq.to_string(), picture.capture_ms.to_string());
    match encode(picture).await {
        Ok(jpeg) => (
            [
                (header::CONTENT_TYPE.as_str(), "image/jpeg"),
                (header::CACHE_CONTROL.as_str(), "no-store"),
                ("x-framewire-seq", seq.as_str()),
                ("x-framewire-capture-ms", capture_ms.as_str()),
            ],
            jpeg,
        )
            .into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("camera {camera}: {e}"),
        ),
    }
}

/// One part of the multipart stream.
fn part(jpeg: &[u8]) -> Bytes {
    let mut out = format!(
        "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
        jpeg.len()
    )
    .into_bytes();
    out.extend_from_slice(jpeg);
    out.extend_from_slice(b"\r\n");
    Bytes::from(out)
}

async fn mjpeg(State(s): State<DebugState>, Path(camera): Path<String>) -> Response {
    if let Some(r) = camera_problem(&s, &camera) {
        return r;
    }
    let Some(viewing) = s.viewers.enter() else {
        return s.viewers.full();
    };
    // The stream owns the slot: the viewer's disconnect drops the stream and frees it.
    let state = (s, camera, true, viewing);
    let stream = futures::stream::unfold(state, |(s, camera, first, viewing)| async move {
        if !first {
            tokio::time::sleep(s.mjpeg_interval).await;
        }
        // A camera that stops ends the stream.
        let picture = s.watchers.next(&camera, PICTURE_WAIT).await?;
        let jpeg = encode(picture).await.ok()?;
        Some((
            Ok::<_, std::io::Error>(part(&jpeg)),
            (s, camera, false, viewing),
        ))
    });
    (
        [
            (
                header::CONTENT_TYPE,
                format!("multipart/x-mixed-replace; boundary={BOUNDARY}"),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}
