use crate::{OutlierSpec, parse};
use std::path::Path;
use std::time::Duration;

const BASE: &str = r#"
[[listeners]]
name = "public"
bind = "127.0.0.1:8080"

[[services]]
name = "auth"
listeners = ["public"]
SERVICE_EXTRA

[[services.stacks]]
name = "blue"
weight = 1
endpoints = ["127.0.0.1:9001"]
STACK_EXTRA
"#;

fn text(service: &str, stack: &str) -> String {
    BASE.replace("SERVICE_EXTRA", service)
        .replace("STACK_EXTRA", stack)
}

fn fields(service: &str, stack: &str) -> Vec<(String, String)> {
    parse(&text(service, stack), Path::new("t.toml"))
        .expect_err("must be invalid")
        .problems
        .into_iter()
        .map(|p| (p.field.to_string(), p.message))
        .collect()
}

#[test]
fn outlier_detection_and_slow_start_default_to_on_and_off() {
    let c = parse(&text("", ""), Path::new("t.toml")).expect("valid");
    let s = c.service("auth").expect("service");
    let st = s.stack("blue").expect("stack");
    assert_eq!(*s.outlier_detection_of(st), OutlierSpec::default());
    assert_eq!(
        OutlierSpec::default(),
        OutlierSpec {
            enabled: true,
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejection_percent: 50,
        }
    );
    assert_eq!(s.slow_start_of(st), None);
}

#[test]
fn stack_settings_override_the_service() {
    let c = parse(
        &text(
            "slow_start = \"30s\"\noutlier_detection = { consecutive_failures = 3, base_ejection = \"1s\" }",
            "slow_start = \"5s\"\noutlier_detection = { enabled = false }",
        ),
        Path::new("t.toml"),
    )
    .expect("valid");
    let s = c.service("auth").expect("service");
    assert_eq!(s.outlier_detection().consecutive_failures, 3);
    assert_eq!(s.outlier_detection().base_ejection, Duration::from_secs(1));
    // An explicit base alone keeps the default maximum.
    assert_eq!(s.outlier_detection().max_ejection, Duration::from_secs(300));
    assert_eq!(s.slow_start(), Some(Duration::from_secs(30)));
    let st = s.stack("blue").expect("stack");
    assert!(!s.outlier_detection_of(st).enabled);
    assert_eq!(s.slow_start_of(st), Some(Duration::from_secs(5)));
}

#[test]
fn zero_slow_start_on_a_stack_turns_the_service_window_off() {
    let c = parse(
        &text("slow_start = \"30s\"", "slow_start = \"0s\""),
        Path::new("t.toml"),
    )
    .expect("valid");
    let s = c.service("auth").expect("service");
    assert_eq!(s.slow_start_of(s.stack("blue").expect("stack")), None);
}

#[test]
fn bad_outlier_and_slow_start_values_are_all_reported() {
    let f = fields(
        "slow_start = \"soon\"\noutlier_detection = { consecutive_failures = 0, max_ejection_percent = 101, base_ejection = \"10s\", max_ejection = \"5s\" }",
        "slow_start = \"2h\"",
    );
    let names: Vec<&str> = f.iter().map(|(f, _)| f.as_str()).collect();
    for want in [
        "services[0].slow_start",
        "services[0].outlier_detection.consecutive_failures",
        "services[0].outlier_detection.max_ejection_percent",
        "services[0].outlier_detection.max_ejection",
        "services[0].stacks[0].slow_start",
    ] {
        assert!(names.contains(&want), "{want} missing from {f:?}");
    }
}

#[test]
fn unknown_outlier_key_is_refused() {
    let f = fields("outlier_detection = { interval = \"1s\" }", "");
    assert!(f[0].1.contains("unknown key `interval`"), "{f:?}");
}

#[test]
fn outlier_settings_survive_the_raw_round_trip() {
    let c = parse(
        &text(
            "slow_start = \"30s\"",
            "outlier_detection = { consecutive_failures = 2 }",
        ),
        Path::new("t.toml"),
    )
    .expect("valid");
    let s = c.service("auth").expect("service");
    let back = crate::service_from_raw(&s.to_raw(), Path::new(".")).expect("valid");
    assert_eq!(&back, s);
}

#[test]
fn without_a_configured_check_endpoints_get_a_tcp_check_and_none_turns_it_off() {
    let c = parse(&text("", ""), Path::new("t.toml")).expect("valid");
    let s = c.service("auth").expect("service");
    let st = s.stack("blue").expect("stack");
    let active = s.active_check_of(st).expect("default check");
    assert_eq!(active, crate::HealthCheckSpec::default_tcp());
    assert_eq!(active.interval, Duration::from_secs(2));
    assert!(active.initially_healthy);

    let c = parse(
        &text("", "health_check = { kind = \"none\" }"),
        Path::new("t.toml"),
    )
    .expect("valid");
    let s = c.service("auth").expect("service");
    assert_eq!(s.active_check_of(s.stack("blue").expect("stack")), None);

    let c = parse(
        &text(
            "health_check = { kind = \"none\" }",
            "health_check = { kind = \"tcp\", interval = \"5s\" }",
        ),
        Path::new("t.toml"),
    )
    .expect("valid");
    let s = c.service("auth").expect("service");
    let tcp = s
        .active_check_of(s.stack("blue").expect("stack"))
        .expect("stack's own check");
    assert_eq!(tcp.kind, crate::CheckKind::Tcp);
    assert_eq!(tcp.interval, Duration::from_secs(5));
}

#[test]
fn health_check_kind_refuses_fields_that_mean_nothing_for_it() {
    assert_eq!(
        fields("", "health_check = { kind = \"none\", interval = \"1s\" }"),
        vec![(
            "services[0].stacks[0].health_check.interval".to_owned(),
            "interval means nothing with kind = \"none\"".to_owned()
        )]
    );
    assert_eq!(
        fields("health_check = { kind = \"tcp\", path = \"/x\" }", ""),
        vec![(
            "services[0].health_check.path".to_owned(),
            "path applies to http checks only".to_owned()
        )]
    );
    let f = fields("health_check = { kind = \"grpc\" }", "");
    assert_eq!(f[0].0, "services[0].health_check.kind");
    assert!(f[0].1.contains("\"http\", \"tcp\" or \"none\""), "{f:?}");
}
