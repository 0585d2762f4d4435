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
        weights(r#"{"weights":{"green":80,"green":90}}"#).expect(
            422,
            "invalid_body",
            "weights: duplicate key \"green\"",
        ),
        case(
            "duplicate key in a nested object",
            M::POST,
            "/v1/services/auth/stacks",
            r#"{"name":"red","endpoints":["127.0.0.1:9009"],"health_check":{"path":"/a","path":"/b"}}"#,
        )
        .expect(422, "invalid_body", "health_check: duplicate key \"path\""),
        weights(r#"{"weights":{"blue":0}}"#).expect(
            409,
            "no_traffic",
            "send \"allow_no_traffic\": true",
        ),
        weights(r#"{"weights":{"green":0},"exclusive":true}"#).expect(
            409,
            "no_traffic",
            "every stack of service \"auth\" at weight 0",
        ),
        case(
            "removing the only stack with weight",
            M::DELETE,
            "/v1/services/auth/stacks/blue?force=true",
            "",
        )
        .expect(409, "no_traffic", "?allow_no_traffic=true"),
        case(
            "stack with nothing to route to",
            M::POST,
            "/v1/services/auth/stacks",
            r#"{"name":"red","endpoints":[]}"#,
        )
        .expect(422, "no_endpoints", "endpoints: stack \"red\" would have nothing"),
        case(
            "endpoints emptied",
            M::PUT,
            "/v1/services/auth/stacks/green/endpoints",
            r#"{"endpoints":[]}"#,
        )
        .expect(422, "no_endpoints", "endpoints: stack \"green\""),
        case(
            "service whose stack has nothing to route to",
            M::POST,
            "/v1/services",
            r#"{"name":"api","listeners":["public"],"path_prefix":"/api","stacks":[{"name":"a","weight":100}]}"#,
        )
        .expect(422, "no_endpoints", "stacks[0].endpoints: "),
        case(
            "deployment with an unusable DNS source",
            M::POST,
            "/v1/services/auth/deployments",
            r#"{"stack":"red","version":"v2","source":{"dns":{}}}"#,
        )
        .expect(400, "invalid_value", "source.dns: expected { name, port } or { srv }"),
        case(
            "deployment with a bad DNS port and health check",
            M::POST,
            "/v1/services/auth/deployments",
            r#"{"stack":"red","version":"v2","source":{"dns":{"name":"x.test","port":0}},"health_check":{"interval":"soon"}}"#,
        )
        .expect(400, "invalid_value", "source.dns.port: "),
        case(
            "deployment without endpoints",
            M::POST,
            "/v1/services/auth/deployments",
            r#"{"stack":"red","version":"v2","source":{"endpoints":[]}}"#,
        )
        .expect(422, "no_endpoints", "source.endpoints: "),
        case(
            "deployment with a bad endpoint",
            M::POST,
            "/v1/services/auth/deployments",
            r#"{"stack":"red","version":"v2","source":{"endpoints":["nowhere"]}}"#,
        )
        .expect(400, "invalid_value", "source.endpoints[0]: "),
        case(
            "deployments of a missing service",
            M::GET,
            "/v1/services/nosuch/deployments",
            "",
        )
        .expect(404, "not_found", "no service \"nosuch\""),
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
