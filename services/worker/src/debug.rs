//! The debug surface on the admin port, for `kubectl port-forward`:
//!
//! - `GET /debug/assignment`: partitions (offsets, lag) and cameras (last seq, lag) of
//!   this replica;
//! - `GET /debug/cameras/{id}/snapshot.jpg`: the camera's next decoded picture as JPEG;
//! - `GET /debug/cameras/{id}/mjpeg`: a multipart MJPEG live view at most
//!   `worker.mjpeg_max_fps`, costing nothing once the viewer goes away.
//!
//! Pictures are only copied while someone waits for them (see [`crate::snapshot`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;

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
}

/// The `/debug/*` routes.
pub fn router(state: DebugState) -> Router {
    Router::new()
        .route("/debug/assignment", get(assignment))
        .route("/debug/cameras/{id}/snapshot.jpg", get(snapshot))
        .route("/debug/cameras/{id}/mjpeg", get(mjpeg))
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
    let stream = futures::stream::unfold((s, camera, true), |(s, camera, first)| async move {
        if !first {
            tokio::time::sleep(s.mjpeg_interval).await;
        }
        // A camera that stops ends the stream; the viewer's disconnect drops it.
        let picture = s.watchers.next(&camera, PICTURE_WAIT).await?;
        let jpeg = encode(picture).await.ok()?;
        Some((Ok::<_, std::io::Error>(part(&jpeg)), (s, camera, false)))
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
