//! The admin token: one rule for every endpoint that changes something or shows video.
//!
//! Each service's `admin.token` guards its mutations (ingest's `PUT`/`DELETE /cameras/{id}`)
//! and its live pictures (the worker's snapshot and MJPEG views). The same answers on all
//! three services: no credentials → 401 with `WWW-Authenticate`, wrong token → 403, no
//! `admin.token` configured → 403 saying which setting enables the endpoint. Tokens come as
//! `Authorization: Bearer <token>`, or as HTTP Basic with the token as the password (any
//! user name) so that a browser can open a live view after its login prompt. Comparison is
//! constant-time in the token's content. `/healthz`, `/readyz`, `/metrics` and `/config`
//! (already redacted) stay open: probes and Prometheus need no secret.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use prometheus::{IntCounterVec, Registry};
use serde_json::json;

/// Shortest accepted `admin.token`.
pub const MIN_TOKEN_LEN: usize = 16;

/// The configured token and the counter of refused requests.
#[derive(Clone)]
pub struct AdminToken {
    token: Option<Arc<[u8]>>,
    refused: IntCounterVec,
}

/// Why a request was refused (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `admin.token` is configured: the endpoint is off.
    Disabled,
    /// No usable `Authorization` header.
    Missing,
    /// A token that is not the configured one.
    Wrong,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::Disabled => "disabled",
            Refusal::Missing => "missing",
            Refusal::Wrong => "wrong",
        }
    }
}

impl AdminToken {
    /// The token of `admin.token` (`None`: guarded endpoints answer 403), counting
    /// refusals in `framewire_admin_refused_total{reason}` on `registry` (make one per
    /// service and clone it: a second one on the same registry panics).
    pub fn new(token: Option<&str>, registry: &Registry) -> Self {
        // One AdminToken per service (clone it): the metric is registered once.
        let refused = crate::metrics::Builder(registry).counter_vec(
            "framewire_admin_refused_total",
            "Requests to token-guarded endpoints refused, by reason (disabled, missing, wrong)",
            &["reason"],
        );
        for r in [Refusal::Disabled, Refusal::Missing, Refusal::Wrong] {
            refused.with_label_values(&[r.label()]);
        }
        AdminToken {
            token: token.map(|t| Arc::from(t.as_bytes())),
            refused,
        }
    }

    /// Whether `headers` carry the token; the refusal otherwise (not yet counted).
    pub fn verdict(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(token) = &self.token else {
            return Err(Refusal::Disabled);
        };
        let given = presented(headers).ok_or(Refusal::Missing)?;
        if constant_time_eq(&given, token) {
            Ok(())
        } else {
            Err(Refusal::Wrong)
        }
    }

    /// `None` when `headers` carry the token, else the response to send (counted).
    /// `what` names the endpoint in the 403 of a service without a token.
    pub fn refusal(&self, headers: &HeaderMap, what: &str) -> Option<Response> {
        self.verdict(headers).err().map(|r| {
            self.refused.with_label_values(&[r.label()]).inc();
            refusal_response(r, what)
        })
    }
}

/// Middleware guarding every route of a router with the token.
pub async fn require_token(State(t): State<AdminToken>, req: Request, next: Next) -> Response {
    match t.refusal(req.headers(), "this endpoint") {
        None => next.run(req).await,
        Some(refusal) => refusal,
    }
}

fn refusal_response(r: Refusal, what: &str) -> Response {
    let (status, message) = match r {
        Refusal::Disabled => (
            StatusCode::FORBIDDEN,
            format!("{what} is disabled: set admin.token to enable it"),
        ),
        Refusal::Missing => (
            StatusCode::UNAUTHORIZED,
            "this endpoint needs the admin token: Authorization: Bearer <admin.token>".to_owned(),
        ),
        Refusal::Wrong => (StatusCode::FORBIDDEN, "wrong admin token".to_owned()),
    };
    let mut resp = (status, axum::Json(json!({ "error": message }))).into_response();
    if r == Refusal::Missing {
        let h = resp.headers_mut();
        h.append(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        h.append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"framewire admin\", charset=\"UTF-8\""),
        );
    }
    resp
}

/// The token a request presents: a Bearer token, or the password of Basic credentials.
fn presented(headers: &HeaderMap) -> Option<Vec<u8>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return (!rest.is_empty()).then(|| rest.as_bytes().to_vec());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let colon = decoded.iter().position(|&b| b == b':')?;
        let password = &decoded[colon + 1..];
        return (!password.is_empty()).then(|| password.to_vec());
    }
    None
}

/// Equality whose time depends only on the lengths, never on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TOKEN: &str = "0123456789abcdef-token";

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    fn basic(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    #[test]
    fn bearer_and_basic_carry_the_token() {
        let t = AdminToken::new(Some(TOKEN), &Registry::new());
        assert_eq!(
            t.verdict(&headers(Some(&format!("Bearer {TOKEN}")))),
            Ok(())
        );
        assert_eq!(
            t.verdict(&headers(Some(&format!("bearer  {TOKEN}")))),
            Ok(())
        );
        assert_eq!(t.verdict(&headers(Some(&basic("anyone", TOKEN)))), Ok(()));
        assert_eq!(t.verdict(&headers(None)), Err(Refusal::Missing));
        assert_eq!(t.verdict(&headers(Some("Bearer "))), Err(Refusal::Missing));
        assert_eq!(t.verdict(&headers(Some("Token x"))), Err(Refusal::Missing));
        assert_eq!(
            t.verdict(&headers(Some(&basic("anyone", "")))),
            Err(Refusal::Missing)
        );
        assert_eq!(
            t.verdict(&headers(Some("Bearer 0123456789abcdef-tokeN"))),
            Err(Refusal::Wrong)
        );
        assert_eq!(
            t.verdict(&headers(Some(&format!("Bearer {TOKEN}x")))),
            Err(Refusal::Wrong)
        );
        let off = AdminToken::new(None, &Registry::new());
        assert_eq!(
            off.verdict(&headers(Some(&format!("Bearer {TOKEN}")))),
            Err(Refusal::Disabled)
        );
    }

    #[test]
    fn refusals_answer_401_or_403_and_are_counted() {
        let registry = Registry::new();
        let t = AdminToken::new(Some(TOKEN), &registry);
        let r = t.refusal(&headers(None), "x").unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let challenges: Vec<_> = r
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .collect();
        assert_eq!(challenges.len(), 2);
        let r = t.refusal(&headers(Some("Bearer nope")), "x").unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let off_registry = Registry::new();
        let off = AdminToken::new(None, &off_registry);
        let r = off.refusal(&headers(None), "camera writes").unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let text = crate::metrics::render(&registry) + &crate::metrics::render(&off_registry);
        for (reason, n) in [("missing", 1), ("wrong", 1), ("disabled", 1)] {
            let line = format!("framewire_admin_refused_total{{reason=\"{reason}\"}} {n}");
            assert!(text.contains(&line), "{line} in {text}");
        }
    }

    proptest! {
        #[test]
        fn constant_time_eq_is_equality(a in proptest::collection::vec(any::<u8>(), 0..40),
                                        b in proptest::collection::vec(any::<u8>(), 0..40)) {
            prop_assert_eq!(constant_time_eq(&a, &b), a == b);
            prop_assert!(constant_time_eq(&a, &a));
        }
    }
}
