//! The deployment body built from the flags.

use super::*;

#[test]
fn gate_flag_becomes_a_gate() {
    assert_eq!(
        gate("step:2=http://127.0.0.1:9/ok,timeout=5m").expect("valid"),
        json!({"before": "step:2", "url": "http://127.0.0.1:9/ok", "timeout": "5m"})
    );
    assert_eq!(
        gate("shift=http://h/").expect("valid"),
        json!({"before": "shift", "url": "http://h/"})
    );
    for bad in ["shift", "shift=", "shift=http://h/,ttl=1s"] {
        assert!(gate(bad).is_err(), "{bad}");
    }
}

#[test]
fn canary_flag_becomes_steps() {
    let v = canary_steps("5:60s,50:manual,100").expect("valid");
    assert_eq!(
        v["canary"]["steps"][0],
        json!({"weight": 5, "pause": "60s"})
    );
    assert_eq!(v["canary"]["steps"][1]["pause"], "manual");
    assert_eq!(v["canary"]["steps"][2], json!({"weight": 100}));
}

#[test]
fn checks_accept_one_or_two_words() {
    let v = checks(
        "--pre-check",
        &[
            "GET".into(),
            "/health=200".into(),
            "POST /x=201".into(),
            "/=204".into(),
        ],
    )
    .expect("valid");
    assert_eq!(
        v[0]["http"],
        json!({"method": "GET", "path": "/health", "expect_status": 200})
    );
    assert_eq!(v[1]["http"]["method"], "POST");
    assert_eq!(v[2]["http"]["expect_status"], 204);
}

#[test]
fn malformed_checks_show_the_expected_form() {
    for bad in [
        vec!["health"],
        vec!["GET"],
        vec!["GET health=200"],
        vec!["/health=abc"],
        vec!["/health=999"],
        vec!["GET", "POST /x=200"],
        vec!["G-T /x=200"],
    ] {
        let values: Vec<String> = bad.iter().map(|s| (*s).to_owned()).collect();
        let e = checks("--pre-check", &values)
            .expect_err("malformed")
            .to_string();
        assert!(
            e.starts_with("--pre-check \"")
                && e.ends_with(
                    "expected [METHOD] PATH=STATUS, e.g. \"/health=200\" or \"POST /warm=204\""
                ),
            "{bad:?}: {e}"
        );
    }
}

#[derive(clap::Parser)]
struct Flags {
    #[command(flatten)]
    args: DeployArgs,
}

/// The body `deploy` sends for `flags` (after the connection, service, stack, version and an
/// endpoint).
fn body_of(flags: &[&str]) -> Result<Value, CliError> {
    use clap::Parser;
    let mut argv = vec![
        "deploy",
        "--control",
        "http://127.0.0.1:1",
        "--service",
        "web",
        "--stack",
        "green",
        "--version",
        "v2",
        "--endpoint",
        "127.0.0.1:9",
    ];
    argv.extend(flags);
    body(&Flags::try_parse_from(argv).expect("flags parse").args)
}

#[test]
fn shadow_goes_before_the_cutover_or_the_first_canary_step() {
    let v = body_of(&["--shadow", "10:30s", "--analysis-max-error-rate", "0.01"]).expect("valid");
    assert_eq!(
        v["strategy"],
        json!({"blue_green": {"shadow": {"percent": 10, "duration": "30s"},
            "analysis": {"max_error_rate": 0.01}}})
    );
    let v = body_of(&["--canary", "50,100", "--shadow", "5:1m"]).expect("valid");
    assert_eq!(
        v["strategy"]["canary"]["steps"],
        json!([{"shadow": {"percent": 5, "duration": "1m"}}, {"weight": 50}, {"weight": 100}])
    );
    assert!(body_of(&["--shadow", "10"]).is_err());
    assert!(body_of(&["--shadow", "x:1s"]).is_err());
}

#[test]
fn analysis_flags_fill_every_field_and_need_a_judged_strategy() {
    let v = body_of(&[
        "--canary",
        "50:10s,100",
        "--analysis-interval",
        "1s",
        "--analysis-min-requests",
        "20",
        "--analysis-max-p99",
        "300ms",
        "--analysis-max-error-rate-increase",
        "0.005",
        "--analysis-max-p99-ratio",
        "1.5",
        "--analysis-failure-limit",
        "2",
        "--analysis-max-inconclusive",
        "4",
        "--analysis-on-inconclusive",
        "pass",
    ])
    .expect("valid");
    assert_eq!(
        v["strategy"]["canary"]["analysis"],
        json!({"interval": "1s", "min_requests": 20, "max_p99": "300ms", "failure_limit": 2,
            "max_inconclusive": 4, "on_inconclusive": "pass",
            "baseline": {"max_error_rate_increase": 0.005, "max_p99_ratio": 1.5}})
    );
    let e = body_of(&["--analysis-interval", "1s"]).expect_err("blue-green without shadow");
    assert!(e.to_string().contains("pass --canary or --shadow"), "{e}");
}

#[test]
fn webhook_flag_becomes_a_webhook() {
    let v = body_of(&[
        "--webhook",
        "http://h/a,events=deployment.rolled_back,events=deployment.failed,secret_env=S",
        "--webhook",
        "http://h/b",
        "--healthy-timeout",
        "5s",
    ])
    .expect("valid");
    assert_eq!(
        v["webhooks"],
        json!([{"url": "http://h/a", "events": ["deployment.rolled_back", "deployment.failed"],
            "secret_env": "S"}, {"url": "http://h/b"}])
    );
    assert_eq!(v["healthy_timeout"], "5s");
    for bad in ["", "http://h/,events=", "http://h/,secret=S"] {
        assert!(body_of(&["--webhook", bad]).is_err(), "{bad:?}");
    }
}

/// The body `deploy` sends for an image of stack `blue` with `flags`.
fn image_body_of(flags: &[&str]) -> Value {
    use clap::Parser;
    let mut argv = vec![
        "deploy",
        "--control",
        "http://127.0.0.1:1",
        "--service",
        "auth",
        "--stack",
        "blue",
        "--version",
        "v1.4",
        "--image",
        "auth:v1.4",
        "--port",
        "8080",
    ];
    argv.extend(flags);
    body(&Flags::try_parse_from(argv).expect("flags parse").args).expect("valid")
}

#[test]
fn a_rolling_update_of_an_image_keeps_the_stack_replica_count() {
    let v = image_body_of(&["--rolling-batch-size", "1"]);
    assert_eq!(v["strategy"], json!({"rolling": {"batch_size": 1}}));
    assert_eq!(v["source"]["container"]["image"], "auth:v1.4");
    assert_eq!(v["source"]["container"]["port"], 8080);
    assert!(
        v["source"]["container"].get("replicas").is_none(),
        "the live stack's count is kept: {v}"
    );
    let v = image_body_of(&["--replicas", "3", "--start-first"]);
    assert_eq!(v["source"]["container"]["replicas"], 3);
    assert_eq!(v["strategy"], json!({"rolling": {"start_first": true}}));
}
