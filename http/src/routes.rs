//! The router: every route of the API in one table ([`API_ROUTES`]), held equal to the paths of
//! the OpenAPI document by a test, the dashboard's files, and the layers around them (the token
//! guard, the body limit, CORS when configured, and headers that keep the page to itself).

use crate::{AppState, auth, cluster, dashboard, deliveries, events, metrics, ops, quarantine, tasks};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// The OpenAPI 3 document of the API, served at `/api/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Every API route, as `(method, path)` with `{param}` segments as OpenAPI writes them.
pub const API_ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/tasks"),
    ("POST", "/api/tasks"),
    ("GET", "/api/tasks/{id}"),
    ("POST", "/api/tasks/{id}/cancel"),
    ("POST", "/api/tasks/{id}/retry"),
    ("POST", "/api/retry"),
    ("GET", "/api/pools"),
    ("GET", "/api/agents"),
    ("GET", "/api/quarantine"),
    ("GET", "/api/quarantine/{name}"),
    ("POST", "/api/quarantine/{name}/requeue"),
    ("GET", "/api/deliveries"),
    ("GET", "/api/stats"),
    ("GET", "/api/cluster"),
    ("GET", "/api/events"),
    ("GET", "/api/openapi.json"),
    ("GET", "/metrics"),
];

/// An API error: a status and a JSON body `{"error": ..., "reason": ...}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: Value,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &str, reason: impl std::fmt::Display) -> Self {
        Self { status, body: json!({"error": error, "reason": reason.to_string()}) }
    }
    pub fn unavailable() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the broker is not running")
    }
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }
    pub fn bad_request(reason: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", reason)
    }
    pub fn internal(reason: impl std::fmt::Display) -> Self {
        tracing::warn!(%reason, "http request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", reason)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

/// The application: API, metrics, event stream and dashboard, behind the token guard.
pub fn router(state: AppState) -> Router {
    let limit = usize::try_from(state.cfg.broker.max_message_bytes).unwrap_or(usize::MAX);
    let cors = cors(&state.cfg.http.cors_origins);
    let app = Router::new()
        .route("/api/tasks", get(tasks::list).post(tasks::submit))
        .route("/api/tasks/{id}", get(tasks::show))
        .route("/api/tasks/{id}/cancel", post(tasks::cancel))
        .route("/api/tasks/{id}/retry", post(tasks::retry))
        .route("/api/retry", post(tasks::retry_where))
        .route("/api/pools", get(ops::pools))
        .route("/api/agents", get(ops::agents))
        .route("/api/quarantine", get(quarantine::quarantine))
        .route("/api/quarantine/{name}", get(quarantine::quarantined))
        .route("/api/quarantine/{name}/requeue", post(quarantine::requeue))
        .route("/api/deliveries", get(deliveries::list))
        .route("/api/stats", get(ops::stats))
        .route("/api/cluster", get(cluster::board))
        .route("/api/events", get(events::stream))
        .route("/api/openapi.json", get(openapi))
        .route("/metrics", get(metrics::scrape))
        .merge(dashboard::routes())
        .fallback(|| async { ApiError::not_found("no such route (see /api/openapi.json)") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::guard))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::map_response(own_headers))
        .with_state(state);
    match cors {
        Some(c) => app.layer(c),
        None => app,
    }
}

/// Headers on every response: no sniffing, no framing, and a page that loads only itself.
async fn own_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    res
}

/// CORS for the configured origins only; none configured, no CORS headers at all.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| match HeaderValue::from_str(o) {
            Ok(v) => Some(v),
            Err(_) => {
                tracing::warn!(origin = %o, "ignored a CORS origin that is not a valid header value");
                None
            }
        })
        .collect();
    Some(
        tower_http::cors::CorsLayer::new()
            .allow_origin(list)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::HeaderName::from_static("last-event-id"),
            ]),
    )
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observer::Observer;
    use axum::body::Body;
    use axum::http::Request;
    use std::sync::Arc;
    use tower::ServiceExt;

    /// An application whose broker is gone (every command answers "stopped") on a fresh root.
    fn app(dir: &std::path::Path) -> Router {
        let layout = runtime_layout::Layout::new(dir.join("runtime"));
        layout.create(&runtime_layout::RealFs).unwrap();
        let (handle, rx) = mailroom::engine::commands::channel(1);
        drop(rx);
        let cfg = mailroom::config::Config::default();
        router(AppState {
            handle,
            fs: Arc::new(runtime_layout::RealFs),
            layout,
            cfg: Arc::new(cfg.clone()),
            token: Arc::new(auth::Token::from_secret("t")),
            reads_need_token: false,
            observer: Arc::new(Observer::new(cfg)),
            deliveries: Default::default(),
            cluster: None,
            socket: None,
        })
    }

    /// Every route of the table is routed (no 404 or 405 from the fallback), and unknown ones are not.
    #[test]
    fn every_route_of_the_table_is_served() {
        let d = tempfile::tempdir().unwrap();
        let app = app(d.path());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let call = |m: &str, p: &str| {
                let req = Request::builder()
                    .method(m)
                    .uri(p.replace("{id}", "T-1").replace("{name}", "x"))
                    .header("authorization", "Bearer t")
                    .body(Body::from("{}"))
                    .unwrap();
                app.clone().oneshot(req)
            };
            for (m, p) in API_ROUTES
                .iter()
                .copied()
                .chain(crate::dashboard::DASHBOARD_ROUTES.iter().map(|p| ("GET", *p)))
            {
                let r = call(m, p).await.unwrap();
                let s = r.status();
                // A route that answers 404 itself says why in its own words (a broker that is
                // not a cluster node has no cluster board); the fallback says `not_found`.
                let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
                let own_404 =
                    serde_json::from_slice::<Value>(&body).is_ok_and(|v| v["error"] == "not_a_cluster_node");
                assert!(
                    s != StatusCode::NOT_FOUND && s != StatusCode::METHOD_NOT_ALLOWED
                        || p.contains("{name}")
                        || s == StatusCode::NOT_FOUND && own_404 && p == "/api/cluster",
                    "{m} {p}: {s}"
                );
            }
            assert_eq!(call("GET", "/api/nope").await.unwrap().status(), StatusCode::NOT_FOUND);
            assert_eq!(call("GET", "/api/tasks").await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
            let no_token = Request::builder().method("POST").uri("/api/retry").body(Body::empty()).unwrap();
            assert_eq!(app.clone().oneshot(no_token).await.unwrap().status(), StatusCode::UNAUTHORIZED);
        });
    }

    /// The document and the route table describe the same API, and the document is OpenAPI 3.
    #[test]
    fn every_route_is_in_the_openapi_document_and_nothing_else_is() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json parses");
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                    documented.push((method.to_uppercase(), path.clone()));
                }
            }
        }
        let mut routes: Vec<(String, String)> =
            API_ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
        documented.sort();
        routes.sort();
        assert_eq!(documented, routes);
        // Every operation says what it answers.
        for (m, p) in API_ROUTES {
            let op = &doc["paths"][p][m.to_lowercase()];
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{m} {p}");
            assert!(op["summary"].is_string(), "{m} {p} has a summary");
        }
        // Every `$ref` resolves.
        let text = OPENAPI;
        for r in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
            let name = &r[..r.find('"').unwrap()];
            assert!(doc["components"]["schemas"][name].is_object(), "{name} is defined");
        }
    }
}
