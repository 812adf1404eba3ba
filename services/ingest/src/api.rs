//! The camera API on the ingest admin port.
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /cameras` | every camera this replica runs (and those of its slots that are `invalid`): spec (URL password redacted), source, slot, state, last error, spec error, session, counters |
//! | `GET /cameras/{id}` | one camera, or 404 |
//! | `GET /leases` | the lease group: group, member id, state, slots owned, cameras per slot |
//! | `PUT /cameras/{id}` | writes the JSON spec in the body to the control topic (202); every replica applies it, the owner runs it |
//! | `DELETE /cameras/{id}` | writes a tombstone to the control topic (202) |
//!
//! Writes need the admin token (`Authorization: Bearer <admin.token>`; 401 without, 403
//! with a wrong one or when no token is configured, see [`framewire_kit::auth`]) and are
//! refused (400) for a spec that does not validate, that has a password in its URL (the
//! control topic must never hold a password) or whose credentials reference lies outside
//! `ingest.credentials_env_prefix` / `ingest.credentials_dir`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use framewire_wire::{CameraSpec, validate_camera_id};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;

use framewire_kit::auth::AdminToken;

use crate::credentials::CredentialPolicy;
use crate::leases::SharedMembership;
use crate::registry::Registry;

/// What the camera routes need.
#[derive(Clone)]
pub struct ApiState {
    /// The cameras of this replica.
    pub registry: Arc<Registry>,
    /// The lease group membership.
    pub membership: SharedMembership,
    /// Producer for control records.
    pub producer: FutureProducer,
    /// Control topic name.
    pub control_topic: String,
    /// `admin.token`.
    pub token: AdminToken,
    /// Whether writes go anywhere (`ingest.control_topic`).
    pub writable: bool,
    /// Where camera passwords may come from.
    pub policy: CredentialPolicy,
}

/// The camera routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/cameras", get(list))
        .route("/leases", get(leases))
        .route("/cameras/{id}", get(one).put(put).delete(delete))
        .with_state(state)
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(json!({"error": message.into()}))).into_response()
}

async fn list(State(s): State<ApiState>) -> Response {
    let leases = s.registry.leases().await;
    Json(json!({
        "lease_state": leases.state,
        "slots": leases.slots.len(),
        "cameras": s.registry.list().await,
    }))
    .into_response()
}

async fn leases(State(s): State<ApiState>) -> Response {
    let membership = s
        .membership
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let leases = s.registry.leases().await;
    Json(json!({
        "group": membership.group,
        "topic": membership.topic,
        "member_id": membership.member_id,
        "instance_id": membership.instance_id,
        "client_id": membership.client_id,
        "members": membership.members,
        "slot_count": membership.slot_count,
        "state": leases.state,
        "slots": leases.slots,
        "held": leases.held,
        "cameras": leases.cameras,
        "cameras_per_slot": leases.cameras_per_slot,
    }))
    .into_response()
}

async fn one(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    match s.registry.get(&id).await {
        Some(view) => Json(view).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("camera {id} is not run by this replica"),
        ),
    }
}

/// The admin token check, then whether writes are on; the refusal to send, if any.
fn refuse_unauthorized(s: &ApiState, headers: &HeaderMap) -> Option<Response> {
    if let Some(refusal) = s.token.refusal(headers, "camera writes") {
        return Some(refusal);
    }
    (!s.writable).then(|| {
        error(
            StatusCode::FORBIDDEN,
            "camera writes are disabled: ingest.control_topic is false",
        )
    })
}

async fn write(s: &ApiState, id: &str, payload: Option<&[u8]>) -> Response {
    let mut record = FutureRecord::<str, [u8]>::to(&s.control_topic).key(id);
    if let Some(p) = payload {
        record = record.payload(p);
    }
    match s.producer.send(record, Duration::from_secs(10)).await {
        Ok(_) => {
            let what = if payload.is_some() {
                "updated"
            } else {
                "removed"
            };
            (
                StatusCode::ACCEPTED,
                Json(json!({"id": id, "status": what, "topic": s.control_topic})),
            )
                .into_response()
        }
        Err((e, _)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("control topic write failed: {e}"),
        ),
    }
}

async fn put(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = refuse_unauthorized(&s, &headers) {
        return refusal;
    }
    if let Err(m) = validate_camera_id(&id) {
        return error(StatusCode::BAD_REQUEST, m);
    }
    let mut value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")),
    };
    if let Some(obj) = value.as_object_mut() {
        obj.entry("id").or_insert_with(|| json!(id));
    }
    let spec: CameraSpec = match serde_json::from_value(value) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("camera {id}: {e}")),
    };
    if spec.id != id {
        return error(
            StatusCode::BAD_REQUEST,
            format!("camera {id}: the body's id is {:?}", spec.id),
        );
    }
    if let Err(m) = spec.validate() {
        return error(StatusCode::BAD_REQUEST, m);
    }
    if spec.url_has_password() {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "camera {id}: no passwords in the URL; use credentials.password_env or password_file"
            ),
        );
    }
    if let Err(m) = s.policy.check(&spec) {
        return error(StatusCode::BAD_REQUEST, m);
    }
    match serde_json::to_vec(&spec) {
        Ok(json) => write(&s, &id, Some(&json)).await,
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn delete(State(s): State<ApiState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refuse_unauthorized(&s, &headers) {
        return refusal;
    }
    if let Err(m) = validate_camera_id(&id) {
        return error(StatusCode::BAD_REQUEST, m);
    }
    write(&s, &id, None).await
}
