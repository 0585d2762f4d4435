//! The live dashboard's page (`GET /ui/`): plain HTML, CSS and JavaScript embedded in the
//! binary, with no build step and nothing loaded from elsewhere, so it works offline.
//!
//! The files are static and hold no data, so serving them needs no token; the page asks the
//! operator for one, keeps it in `sessionStorage` and sends it as `Authorization: Bearer` to
//! `GET /v1/whoami`, to the live feed `GET /v1/dashboard/events` (read with `fetch()` streaming,
//! so the token never appears in a URL or a log) and to the deployment commands. A
//! Content-Security-Policy allows only this origin.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const STYLE_CSS: &str = include_str!("ui/style.css");

/// Only this origin, no inline script or style, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[utoipa::path(
    get, path = "/ui/", tag = "dashboard",
    description = "The live dashboard: one HTML page (with `/ui/app.js` and `/ui/style.css`) embedded in the binary. No token needed to load it; it asks for one and every data call sends it.",
    responses((status = 200, description = "The page", body = String, content_type = "text/html; charset=utf-8")),
)]
pub(crate) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

#[utoipa::path(
    get, path = "/ui/app.js", tag = "dashboard",
    description = "The dashboard's script. No token needed.",
    responses((status = 200, description = "The script", body = String, content_type = "text/javascript; charset=utf-8")),
)]
pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

#[utoipa::path(
    get, path = "/ui/style.css", tag = "dashboard",
    description = "The dashboard's style sheet. No token needed.",
    responses((status = 200, description = "The style sheet", body = String, content_type = "text/css; charset=utf-8")),
)]
pub(crate) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}
