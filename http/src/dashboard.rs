//! The dashboard: one page and its script and style, embedded in the binary (no CDN, no build
//! step). It reads the API and follows `/api/events`; it asks for the token once per browser
//! session, the first time a change (or, beyond loopback, a read) needs it.

use crate::AppState;
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

pub const INDEX: &str = include_str!("../assets/index.html");
pub const SCRIPT: &str = include_str!("../assets/app.js");
pub const STYLE: &str = include_str!("../assets/app.css");
pub const VIEWS: &str = include_str!("../assets/views.js");
pub const CHARTS: &str = include_str!("../assets/charts.js");

/// The dashboard's routes (outside the API and the OpenAPI document).
pub const DASHBOARD_ROUTES: &[&str] =
    &["/", "/assets/app.js", "/assets/views.js", "/assets/charts.js", "/assets/app.css"];

pub fn routes() -> Router<AppState> {
    let page = |ty: &'static str, body: &'static str| {
        move || async move {
            ([(header::CONTENT_TYPE, ty), (header::CACHE_CONTROL, "no-cache")], body).into_response()
        }
    };
    Router::new()
        .route("/", get(page("text/html; charset=utf-8", INDEX)))
        .route("/assets/app.js", get(page("text/javascript; charset=utf-8", SCRIPT)))
        .route("/assets/views.js", get(page("text/javascript; charset=utf-8", VIEWS)))
        .route("/assets/charts.js", get(page("text/javascript; charset=utf-8", CHARTS)))
        .route("/assets/app.css", get(page("text/css; charset=utf-8", STYLE)))
}
