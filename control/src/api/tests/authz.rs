//! The authorization matrix: every route × every kind of caller.
//!
//! Allowed writes carry `If-Match: "999"`, so they pass authorization and validation and stop
//! at the revision check (412): the matrix proves access without changing anything.

use axum::body::Body;
use axum::http::{Method, Request};
use switchyard_config::Role;

use crate::fake::{ADMIN, AUTH_ONLY, DEPLOY, Fixture, OPERATE, READ, config_text};

struct Call {
    method: Method,
    uri: String,
    body: Option<&'static str>,
    /// `None`: open to everyone.
    need: Option<Role>,
    /// The service the route touches (for the glob-limited token).
    service: Option<&'static str>,
}

fn calls() -> Vec<Call> {
    use Method as M;
    let mut calls = Vec::new();
    let mut add = |method, uri: &str, body, need, service| {
        calls.push(Call {
            method,
            uri: uri.to_owned(),
            body,
            need,
            service,
        });
    };
    add(M::GET, "/healthz", None, None, None);
    add(M::GET, "/readyz", None, None, None);
    add(M::GET, "/v1/openapi.json", None, Some(Role::Read), None);
    add(M::GET, "/v1/services", None, Some(Role::Read), None);
    add(M::GET, "/v1/history", None, Some(Role::Read), None);
    add(M::GET, "/v1/whoami", None, Some(Role::Read), None);
    add(M::GET, "/ui/", None, None, None);
    for svc in ["auth", "web"] {
        let (stack, weights) = if svc == "auth" {
            ("green", r#"{"weights":{"green":0}}"#)
        } else {
            ("main", r#"{"weights":{"main":100}}"#)
        };
        let service = Some(svc);
        add(
            M::GET,
            &format!("/v1/services/{svc}"),
            None,
            Some(Role::Read),
            service,
        );
        add(
            M::GET,
            &format!("/v1/history?service={svc}"),
            None,
            Some(Role::Read),
            service,
        );
        add(
            M::PUT,
            &format!("/v1/services/{svc}/weights"),
            Some(weights),
            Some(Role::Operate),
            service,
        );
        add(
            M::POST,
            &format!("/v1/services/{svc}/stacks"),
            Some(r#"{"name":"extra","endpoints":["127.0.0.1:9300"]}"#),
            Some(Role::Deploy),
            service,
        );
        add(
            M::PUT,
            &format!("/v1/services/{svc}/stacks/{stack}/endpoints"),
            Some(r#"{"endpoints":["127.0.0.1:9301"]}"#),
            Some(Role::Deploy),
            service,
        );
        add(
            M::DELETE,
            &format!("/v1/services/{svc}/stacks/{stack}?force=true&allow_no_traffic=true"),
            None,
            Some(Role::Deploy),
            service,
        );
        add(
            M::DELETE,
            &format!("/v1/services/{svc}"),
            None,
            Some(Role::Admin),
            service,
        );
    }
    add(
        M::POST,
        "/v1/services",
        Some(r#"{"name":"auth-new","listeners":["internal"]}"#),
        Some(Role::Admin),
        Some("auth-new"),
    );
    calls
}

/// (secret, role, may touch only services matching `auth*`)
const CALLERS: [(&str, Role, bool); 5] = [
    (READ, Role::Read, false),
    (OPERATE, Role::Operate, false),
    (DEPLOY, Role::Deploy, false),
    (ADMIN, Role::Admin, false),
    (AUTH_ONLY, Role::Deploy, true),
];

#[tokio::test]
async fn every_route_checks_token_role_and_service() {
    let f = Fixture::start(&config_text()).await;
    let mut checked = 0;
    for c in calls() {
        let mut callers: Vec<(Option<&str>, Option<Role>, bool)> =
            vec![(None, None, false), (Some("not-a-token"), None, false)];
        callers.extend(CALLERS.iter().map(|(s, r, l)| (Some(*s), Some(*r), *l)));
        for (secret, role, limited) in callers {
            let mut req = Request::builder()
                .method(c.method.clone())
                .uri(&c.uri)
                .header("if-match", "\"999\"");
            if let Some(s) = secret {
                req = req.header("authorization", format!("Bearer {s}"));
            }
            let req = match c.body {
                Some(b) => req
                    .header("content-type", "application/json")
                    .body(Body::from(b)),
                None => req.body(Body::empty()),
            }
            .expect("valid request");
            let a = f.send(req).await;
            let status = a.status.as_u16();
            let expected = match (c.need, role) {
                (None, _) => 200,
                (Some(_), None) => 401,
                (Some(need), Some(r)) if r < need => 403,
                (Some(_), Some(_))
                    if limited && !c.service.is_some_and(|s| s.starts_with("auth")) =>
                {
                    // A token limited to some services may still list what it can see.
                    if c.service.is_none() { 200 } else { 403 }
                }
                (Some(_), Some(_)) if c.method == Method::GET => 200,
                (Some(_), Some(_)) => 412,
            };
            assert_eq!(
                status,
                expected,
                "{} {} as {:?}: {}",
                c.method,
                c.uri,
                role,
                String::from_utf8_lossy(&a.bytes)
            );
            if status >= 400 {
                let code = a.error().0;
                let want = match status {
                    401 => "unauthorized",
                    403 => "forbidden",
                    _ => "revision_mismatch",
                };
                assert_eq!(code, want, "{} {}", c.method, c.uri);
            }
            if status == 401 {
                assert_eq!(a.headers["www-authenticate"], "Bearer");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 22 * 7);
    assert_eq!(f.dp.applied_count(), 0);
}

#[tokio::test]
async fn a_limited_token_lists_only_its_services() {
    let f = Fixture::start(&config_text()).await;
    let v = f
        .call(Method::GET, "/v1/services", Some(AUTH_ONLY), None)
        .await
        .json();
    let names: Vec<&str> = v["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, vec!["auth"]);
    let v = f
        .call(Method::GET, "/v1/history", Some(AUTH_ONLY), None)
        .await
        .json();
    let entries = v["entries"].as_array().expect("entries");
    assert!(!entries.is_empty());
    assert!(entries.iter().all(|e| e["service"] == "auth"));
}
