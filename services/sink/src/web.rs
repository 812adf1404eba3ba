//! The web page: a live grid of cameras (thumbnail, status, fps, brightness and motion
//! sparklines of the last hour, current incidents) at `/` on the sink's HTTP port.
//!
//! The page is three static files compiled into the binary (`src/web/`): plain HTML, CSS
//! and browser JavaScript that polls the JSON API ([`crate::api`]) — no build step, no
//! external assets, nothing to deploy beside the binary.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// `index.html`.
pub const INDEX_HTML: &str = include_str!("web/index.html");
/// `app.js`.
pub const APP_JS: &str = include_str!("web/app.js");
/// `style.css`.
pub const STYLE_CSS: &str = include_str!("web/style.css");
/// `favicon.svg`.
pub const FAVICON_SVG: &str = include_str!("web/favicon.svg");

/// The page's routes: `/` and `/assets/*`.
pub fn router() -> Router {
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX_HTML)))
        .route(
            "/assets/app.js",
            get(|| asset("text/javascript; charset=utf-8", APP_JS)),
        )
        .route(
            "/assets/style.css",
            get(|| asset("text/css; charset=utf-8", STYLE_CSS)),
        )
        .route(
            "/assets/favicon.svg",
            get(|| asset("image/svg+xml", FAVICON_SVG)),
        )
}

/// A static asset. `no-cache`: a browser revalidates, so a new sink version's page is
/// picked up at once.
async fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[tokio::test]
    async fn the_page_and_its_assets_are_served_from_the_binary() {
        let app = router();
        for (path, ctype, needle) in [
            (
                "/",
                "text/html; charset=utf-8",
                "<script src=\"/assets/app.js\">",
            ),
            (
                "/assets/app.js",
                "text/javascript; charset=utf-8",
                "/api/cameras",
            ),
            ("/assets/style.css", "text/css; charset=utf-8", ".tile"),
            ("/assets/favicon.svg", "image/svg+xml", "<svg"),
        ] {
            let res = app
                .clone()
                .oneshot(Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            assert_eq!(res.headers()[header::CONTENT_TYPE], ctype, "{path}");
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert!(String::from_utf8_lossy(&body).contains(needle), "{path}");
        }
    }

    #[test]
    fn the_page_references_only_embedded_assets() {
        for line in INDEX_HTML.lines() {
            for attr in ["src=\"", "href=\""] {
                if let Some(rest) = line.split(attr).nth(1) {
                    let target = rest.split('"').next().unwrap();
                    assert!(
                        target.starts_with("/assets/") || target.starts_with("/api/"),
                        "{target} is not served by the sink"
                    );
                }
            }
        }
    }
}
