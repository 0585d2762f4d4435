//! Bad inputs: each a 4xx in the error shape, each leaving the state byte-for-byte unchanged.

use axum::body::Body;
use axum::http::{Method, Request};

use crate::fake::{ADMIN, Fixture, config_text};

struct Case {
    what: &'static str,
    method: Method,
    uri: &'static str,
    content_type: Option<&'static str>,
    body: String,
    if_match: Option<&'static str>,
    status: u16,
    code: &'static str,
    message: &'static str,
}

fn case(what: &'static str, method: Method, uri: &'static str, body: &str) -> Case {
    Case {
        what,
        method,
        uri,
        content_type: Some("application/json"),
        body: body.to_owned(),
        if_match: None,
        status: 400,
        code: "invalid_value",
        message: "",
    }
}

impl Case {
    fn expect(mut self, status: u16, code: &'static str, message: &'static str) -> Self {
        self.status = status;
        self.code = code;
        self.message = message;
        self
    }
}

const W: &str = "/v1/services/auth/weights";

fn cases() -> Vec<Case> {
    use Method as M;
    let weights = |body: &str| case("weights", M::PUT, W, body);
    vec![
        weights(r#"{"weights":"#).expect(400, "malformed_json", "EOF"),
        weights("").expect(400, "malformed_json", ""),
        weights(r#"{"weights":{"blue":1}} trailing"#).expect(400, "malformed_json", ""),
        weights(r#"{"weights":{"blue":1},"colour":"red"}"#).expect(
            422,
            "invalid_body",
            "unknown field `colour`",
        ),
        weights(r#"{"weight":{"blue":1}}"#).expect(422, "invalid_body", "unknown field `weight`"),
        weights(r#"{"weights":{"green":-1}}"#).expect(
            400,
            "invalid_value",
            "weights.green: weight -1 out of range",
        ),
        weights(r#"{"weights":{"green":20000}}"#).expect(
            400,
            "invalid_value",
            "weights.green: weight 20000 out of range",
        ),
        weights(r#"{"weights":{"green":99999999999999999999}}"#).expect(
            422,
            "invalid_body",
            "weights.green: ",
        ),
        weights(r#"{"weights":{"green":1e30}}"#).expect(422, "invalid_body", "weights.green: "),
        weights(r#"{"weights":{"green":1.5}}"#).expect(422, "invalid_body", "weights.green: "),
        weights(r#"{"weights":{"green":"10"}}"#).expect(422, "invalid_body", "weights.green: "),
        weights(r#"{"weights":{"purple":10}}"#).expect(
            400,
            "invalid_value",
            "weights.purple: unknown stack \"purple\"",
        ),
        weights(r#"{"weights":{}}"#).expect(400, "invalid_value", "weights: expected at least"),
        weights(r#"{"weights":{"blue":1},"exclusive":"yes"}"#).expect(
            422,
            "invalid_body",
            "exclusive: ",
        ),
        Case {
            content_type: Some("text/plain"),
            ..weights(r#"{"weights":{"blue":1}}"#)
        }
        .expect(415, "unsupported_media_type", "application/json"),
        Case {
            content_type: None,
            ..weights(r#"{"weights":{"blue":1}}"#)
        }
        .expect(415, "unsupported_media_type", ""),
        weights(&format!(
            r#"{{"weights":{{"blue":1}},"pad":"{}"}}"#,
            "x".repeat(70 * 1024)
        ))
        .expect(413, "payload_too_large", "65536"),
        Case {
            if_match: Some("yesterday"),
            ..weights(r#"{"weights":{"blue":1}}"#)
        }
        .expect(400, "invalid_value", "If-Match"),
        case(
            "unknown service",
            M::PUT,
            "/v1/services/nope/weights",
            r#"{"weights":{"a":1}}"#,
        )
        .expect(404, "not_found", "no service \"nope\""),
        case(
            "bad name in path",
            M::PUT,
            "/v1/services/Auth_1/weights",
            r#"{"weights":{"a":1}}"#,
        )
        .expect(400, "invalid_value", "service: invalid name"),
        case(
            "bad stack name",
            M::POST,
            "/v1/services/auth/stacks",
            r#"{"name":"Green!","endpoints":["127.0.0.1:9009"]}"#,
        )
        .expect(400, "invalid_value", "name: invalid name \"Green!\""),
        case(
            "stack weight out of range",
            M::POST,
            "/v1/services/auth/stacks",
            r#"{"name":"red","weight":10001}"#,
        )
        .expect(400, "invalid_value", "weight: weight 10001 out of range"),
        case(
            "stack exists",
            M::POST,
            "/v1/services/auth/stacks",
            r#"{"name":"green"}"#,
        )
        .expect(409, "conflict", "exists already"),
        case(
            "unknown field in stack",
            M::POST,
            "/v1/services/auth/stacks",
            r#"{"name":"red","colour":"red"}"#,
        )
        .expect(422, "invalid_body", "unknown field `colour`"),
        case(
            "bad endpoint",
            M::PUT,
            "/v1/services/auth/stacks/green/endpoints",
            r#"{"endpoints":["127.0.0.1:9003","nowhere"]}"#,
        )
        .expect(400, "invalid_value", "endpoints[1]: invalid endpoint"),
        case(
            "unknown stack",
            M::PUT,
            "/v1/services/auth/stacks/purple/endpoints",
            r#"{"endpoints":["127.0.0.1:9003"]}"#,
        )
        .expect(404, "not_found", "no stack \"purple\""),
        case(
            "bad service name",
            M::POST,
            "/v1/services",
            r#"{"name":"-auth","listeners":["public"]}"#,
        )
        .expect(400, "invalid_value", "name: invalid name"),
        case(
            "service exists",
            M::POST,
            "/v1/services",
            r#"{"name":"web","listeners":["public"]}"#,
        )
        .expect(409, "conflict", "exists already"),
        case(
            "delete stack with weight",
            M::DELETE,
            "/v1/services/auth/stacks/blue",
            "",
        )
        .expect(409, "conflict", "force=true"),
        case(
            "bad force",
            M::DELETE,
            "/v1/services/auth/stacks/green?force=maybe",
            "",
        )
        .expect(400, "invalid_value", "query: "),
        case("bad history limit", M::GET, "/v1/history?limit=0", "").expect(
            400,
            "invalid_value",
            "limit: 0 out of range",
        ),
    ]
}

#[tokio::test]
async fn bad_inputs_are_4xx_and_leave_state_unchanged() {
    let f = Fixture::start(&config_text()).await;
    let state_file = f.dir.path().join("state.json");
    let list = f.get("/v1/services").await.bytes;
    let auth = f.get("/v1/services/auth").await.bytes;
    let saved = std::fs::read(&state_file).expect("state saved at start");
    for c in cases() {
        let mut req = Request::builder()
            .method(c.method.clone())
            .uri(c.uri)
            .header("authorization", format!("Bearer {ADMIN}"));
        if let Some(ct) = c.content_type {
            req = req.header("content-type", ct);
        }
        if let Some(m) = c.if_match {
            req = req.header("if-match", m);
        }
        let a = f
            .send(req.body(Body::from(c.body.clone())).expect("valid request"))
            .await;
        assert_eq!(
            a.status.as_u16(),
            c.status,
            "{}: {}",
            c.what,
            String::from_utf8_lossy(&a.bytes)
        );
        let (code, message) = a.error();
        assert_eq!(code, c.code, "{}: {message}", c.what);
        assert!(
            message.contains(c.message),
            "{}: {message:?} lacks {:?}",
            c.what,
            c.message
        );
        assert_eq!(f.get("/v1/services").await.bytes, list, "{}", c.what);
        assert_eq!(f.get("/v1/services/auth").await.bytes, auth, "{}", c.what);
        assert_eq!(
            std::fs::read(&state_file).expect("state"),
            saved,
            "{}",
            c.what
        );
        assert_eq!(f.dp.applied_count(), 0, "{}", c.what);
    }
}
