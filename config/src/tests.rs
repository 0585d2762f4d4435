use super::*;
use std::path::Path;

const GOOD: &str = r#"
[[listeners]]
name = "public"
bind = "127.0.0.1:8080"

[[services]]
name = "auth"
listeners = ["public"]
hosts = ["auth.example.test", "*.auth.example.test"]
path_prefix = "/"
load_balancing = "least_request"
sticky = { cookie = "sid" }

[[services.stacks]]
name = "blue"
version = "v1.3"
weight = 90
endpoints = ["127.0.0.1:9001", "127.0.0.1:9002"]

[[services.stacks]]
name = "green"
version = "v1.4"
weight = 10
endpoints = ["https://localhost:9443"]

[timeouts]
connect = "150ms"
"#;

fn problems(text: &str) -> Vec<Problem> {
    parse(text, Path::new("/etc/sy.toml"))
        .expect_err("must be invalid")
        .problems
}

#[test]
fn valid_file_builds_the_model_with_defaults() {
    let c = parse(GOOD, Path::new("/etc/sy.toml")).expect("valid");
    assert_eq!(c.listeners()[0].bind().port(), 8080);
    let s = c.service("auth").expect("service");
    assert_eq!(s.load_balancing(), LoadBalancing::LeastRequest);
    assert_eq!(s.pin_header(), Some(DEFAULT_PIN_HEADER));
    assert_eq!(s.sticky(), Some(&Sticky::Cookie("sid".into())));
    assert_eq!(
        s.hosts()[1],
        HostPattern::Wildcard(".auth.example.test".into())
    );
    assert_eq!(s.stacks()[0].weight().get(), 90);
    assert_eq!(s.stacks()[1].endpoints()[0].scheme(), Scheme::Https);
    assert_eq!(c.timeouts().connect, std::time::Duration::from_millis(150));
    assert_eq!(c.timeouts().drain, Timeouts::default().drain);
    assert_eq!(c.control().state_dir, Path::new("/etc/switchyard-state"));
}

#[test]
fn unknown_key_names_line_and_field() {
    let text = GOOD.replace(
        "version = \"v1.3\"",
        "version = \"v1.3\"\ncolour = \"blue\"",
    );
    let p = problems(&text);
    assert_eq!(p.len(), 1);
    assert!(
        p[0].message.contains("unknown key `colour`"),
        "{}",
        p[0].message
    );
    assert_eq!(p[0].location.map(|l| l.line), Some(17));
    let shown = ConfigError {
        origin: "/etc/sy.toml".into(),
        problems: p,
    }
    .to_string();
    assert!(shown.starts_with("/etc/sy.toml:17:"), "{shown}");
}

#[test]
fn semantic_errors_are_all_reported_with_lines() {
    let text = GOOD
        .replace("weight = 90", "weight = 20000")
        .replace("\"127.0.0.1:9002\"", "\"nope\"")
        .replace("connect = \"150ms\"", "connect = \"3 days\"");
    let p = problems(&text);
    let fields: Vec<String> = p.iter().map(|p| p.field.to_string()).collect();
    assert!(
        fields.contains(&"services[0].stacks[0].weight".to_string()),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"services[0].stacks[0].endpoints[1]".to_string()),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"timeouts.connect".to_string()),
        "{fields:?}"
    );
    let weight = p
        .iter()
        .find(|p| p.field.to_string().ends_with("weight"))
        .expect("weight problem");
    assert_eq!(weight.location.map(|l| l.line), Some(17));
    assert!(weight.message.contains("0 to 10000"));
}

#[test]
fn wrong_type_names_field() {
    let text = GOOD.replace("weight = 90", "weight = \"ninety\"");
    let p = problems(&text);
    assert_eq!(p[0].field.to_string(), "services[0].stacks[0].weight");
    assert_eq!(p[0].location.map(|l| l.line), Some(17));
}

#[test]
fn syntax_error_has_location() {
    let p = problems("[[listeners]\nname = 1");
    assert_eq!(p[0].location.map(|l| l.line), Some(1));
    assert!(p[0].message.starts_with("invalid TOML"));
}

#[test]
fn unknown_listener_and_duplicate_route_are_refused() {
    let text = GOOD.replace("listeners = [\"public\"]", "listeners = [\"private\"]");
    let p = problems(&text);
    assert!(
        p[0].message.contains("unknown listener \"private\""),
        "{}",
        p[0].message
    );

    let dup = format!(
        "{GOOD}\n[[services]]\nname = \"other\"\nlisteners = [\"public\"]\nhosts = [\"auth.example.test\"]\n"
    );
    let p = problems(&dup);
    assert!(
        p[0].message.contains("already routed to service \"auth\""),
        "{}",
        p[0].message
    );
}

#[test]
fn names_are_constrained() {
    assert!(Name::new("green-2").is_ok());
    for bad in ["", "-x", "Blue", "a_b", &"a".repeat(64)] {
        assert!(Name::new(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn endpoints_parse_and_display() {
    let e = Endpoint::parse("[::1]:80").expect("v6");
    assert_eq!(e.to_string(), "[::1]:80");
    assert_eq!(e.socket_addr(), Some("[::1]:80".parse().expect("addr")));
    assert!(Endpoint::parse("127.0.0.1").is_err());
    assert!(Endpoint::parse("127.0.0.1:0").is_err());
    assert!(Endpoint::parse("ho st:80").is_err());
}

#[test]
fn raw_round_trip_keeps_service() {
    let c = parse(GOOD, Path::new("/etc/sy.toml")).expect("valid");
    let s = c.service("auth").expect("service");
    let json = serde_json::to_string(&s.to_raw()).expect("serialize");
    let back: raw::Service = serde_json::from_str(&json).expect("deserialize");
    let again = service_from_raw(&back, Path::new("/etc")).expect("valid");
    assert_eq!(&again, s);
}

#[test]
fn with_services_checks_listener_references() {
    let c = parse(GOOD, Path::new("/etc/sy.toml")).expect("valid");
    let mut raw = c.service("auth").expect("service").to_raw();
    raw.name = "billing".into();
    raw.listeners = vec!["nowhere".into()];
    let s = service_from_raw(&raw, Path::new("/etc")).expect("shape is valid");
    let mut all = c.services().to_vec();
    all.push(s);
    assert!(c.with_services(all).is_err());
}

#[test]
fn changed_service_equals_the_same_service_parsed_again() {
    let c = parse(GOOD, Path::new("/etc/sy.toml")).expect("valid");
    let s = c.service("auth").expect("service");
    let weight = Weight::new(50).expect("in range");
    let stacks = s.stacks().iter().map(|st| st.with_weight(weight)).collect();
    let changed = s.with_stacks(stacks).expect("unique names");
    let again = service_from_raw(&changed.to_raw(), Path::new("/etc")).expect("valid");
    assert_eq!(again, changed);
}

/// The whole output of `check` for `text`, as the user reads it.
fn report(text: &str) -> String {
    parse(text, Path::new("/etc/sy.toml"))
        .expect_err("must be invalid")
        .to_string()
}

#[test]
fn every_problem_of_a_file_is_reported_at_once_in_line_order() {
    let text = r#"
[[listeners]]
name = "public"
bind = "127.0.0.1:8080"
colour = "blue"

[[services]]
name = "auth"
listeners = ["private"]

[[services.stacks]]
name = "blue"
weight = "ninety"
endpoints = ["127.0.0.1:9001"]

[timeouts]
connect = "1 sec"
idle = 30
"#;
    assert_eq!(
        report(text),
        [
            "/etc/sy.toml:5:1: listeners[0].colour: unknown key `colour`: expected one of `name`, `bind`, `tls`",
            "/etc/sy.toml:9:14: services[0].listeners[0]: unknown listener \"private\": expected one of [\"public\"]",
            "/etc/sy.toml:13:10: services[0].stacks[0].weight: expected an integer from 0 to 10000, found \"ninety\"",
            "/etc/sy.toml:17:11: timeouts.connect: invalid duration \"1 sec\": expected a duration such as \"150ms\", \"2s\" or \"1m30s\"",
            "/etc/sy.toml:18:8: timeouts.idle: expected a duration such as \"150ms\", \"2s\" or \"1m30s\", at most 1h, found 30",
        ]
        .join("\n")
    );
}

#[test]
fn a_missing_key_does_not_hide_the_rest_or_add_noise() {
    let text = r#"
[[listeners]]
name = "public"

[[listeners]]
name = "other"
bind = "127.0.0.1:8081"
tls = { certs = [], unknown_sni = "maybe" }

[[services]]
name = "Auth"
listeners = ["public"]
"#;
    assert_eq!(
        report(text),
        [
            "/etc/sy.toml:2:1: listeners[0].bind: required key is missing",
            "/etc/sy.toml:8:17: listeners[1].tls.certs: expected at least one { cert, key } pair",
            "/etc/sy.toml:8:35: listeners[1].tls.unknown_sni: unknown value \"maybe\": expected \"default\" or \"refuse\"",
            "/etc/sy.toml:11:8: services[0].name: invalid name \"Auth\": expected 1 to 63 characters of [a-z0-9-], starting with a letter or digit",
        ]
        .join("\n")
    );
}

#[test]
fn unknown_key_suggests_the_close_one_and_wrong_types_use_plain_words() {
    let text = GOOD
        .replace("weight = 10", "wieght = 10")
        .replace("path_prefix = \"/\"", "path_prefix = 1")
        .replace("sticky = { cookie = \"sid\" }", "sticky = \"sid\"");
    let p = problems(&text);
    let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "services[0].path_prefix: expected a string, found 1",
            "services[0].sticky: expected a table, found \"sid\"",
            "services[0].stacks[1].wieght: unknown key `wieght`: did you mean `weight`?",
        ]
    );
}

#[test]
fn huge_durations_are_refused_naming_the_maximum() {
    let text = format!(
        "{GOOD}\n[services.outlier_detection]\nbase_ejection = \"99999999999999999h\"\n\n[dns]\nmax_refresh = \"25h\"\n"
    )
    .replace("connect = \"150ms\"", "connect = \"2h\"");
    let shown: Vec<String> = problems(&text).iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "timeouts.connect: duration \"2h\" is too long: expected at most 1h",
            "services[0].outlier_detection.base_ejection: duration \"99999999999999999h\" is too long: expected at most 24h",
            "dns.max_refresh: duration \"25h\" is too long: expected at most 24h",
        ]
    );
}

#[test]
fn control_listener_off_loopback_needs_a_token() {
    let open = format!("{GOOD}\n[control]\nlisten = \"0.0.0.0:9090\"\n");
    assert_eq!(
        report(&open),
        "/etc/sy.toml:30:10: control.listen: control listener 0.0.0.0:9090 is not loopback and no token is configured: add [[tokens]] (see `switchyard token new`) or listen on 127.0.0.1"
    );
    let with_token = format!(
        "{open}\n[[tokens]]\nname = \"ci\"\nrole = \"read\"\nsha256 = \"{}\"\n",
        "ab".repeat(32)
    );
    assert!(parse(&with_token, Path::new("/etc/sy.toml")).is_ok());
    let loopback = format!("{GOOD}\n[control]\nlisten = \"[::1]:9090\"\n");
    assert!(parse(&loopback, Path::new("/etc/sy.toml")).is_ok());
}

#[test]
fn missing_file_says_cannot_read_it() {
    let e = load(Path::new("/nonexistent/sy.toml")).expect_err("no such file");
    assert_eq!(
        e.to_string(),
        "cannot read /nonexistent/sy.toml: No such file or directory"
    );
}

#[test]
fn upgrades_default_to_websocket_and_refuse_h2c_and_non_tokens() {
    let c = parse(GOOD, Path::new("/etc/sy.toml")).expect("valid");
    let s = c.service("auth").expect("service");
    assert_eq!(s.upgrades(), DEFAULT_UPGRADES);
    let text = GOOD.replace(
        "sticky = { cookie = \"sid\" }",
        "sticky = { cookie = \"sid\" }\nupgrades = [\"WebSocket\", \"x-custom\"]",
    );
    let c = parse(&text, Path::new("/etc/sy.toml")).expect("valid");
    let s = c.service("auth").expect("service");
    assert_eq!(s.upgrades(), ["websocket", "x-custom"]);
    let text = GOOD.replace(
        "sticky = { cookie = \"sid\" }",
        "sticky = { cookie = \"sid\" }\nupgrades = [\"H2C\", \"web socket\"]",
    );
    let p = problems(&text);
    let fields: Vec<String> = p.iter().map(|p| p.field.to_string()).collect();
    assert!(
        fields.contains(&"services[0].upgrades[0]".to_owned()),
        "{p:?}"
    );
    assert!(
        fields.contains(&"services[0].upgrades[1]".to_owned()),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p.message.contains("h2c cannot be tunnelled"))
    );
}

#[test]
fn request_body_timeout_has_a_default_and_a_per_service_override() {
    let c = parse(GOOD, Path::new("/etc/sy.toml")).expect("valid");
    assert_eq!(
        c.timeouts().request_body,
        std::time::Duration::from_secs(30)
    );
    assert_eq!(
        c.service("auth").expect("service").request_body_timeout(),
        None
    );
    let text = GOOD
        .replace(
            "connect = \"150ms\"",
            "connect = \"150ms\"\nrequest_body = \"5s\"",
        )
        .replace(
            "sticky = { cookie = \"sid\" }",
            "sticky = { cookie = \"sid\" }\ntimeouts = { request_body = \"300ms\" }",
        );
    let c = parse(&text, Path::new("/etc/sy.toml")).expect("valid");
    assert_eq!(c.timeouts().request_body, std::time::Duration::from_secs(5));
    assert_eq!(
        c.service("auth").expect("service").request_body_timeout(),
        Some(std::time::Duration::from_millis(300))
    );
}

#[test]
fn docker_host_is_a_unix_socket_or_tcp_address_and_an_error_names_its_line() {
    let c = parse(
        &format!("{GOOD}\n[docker]\nhost = \"unix:///run/docker.sock\"\n"),
        Path::new("/etc/sy.toml"),
    )
    .expect("valid");
    assert_eq!(c.docker_host(), Some("unix:///run/docker.sock"));
    assert_eq!(
        parse(GOOD, Path::new("/etc/sy.toml"))
            .expect("valid")
            .docker_host(),
        None
    );
    let text = format!("{GOOD}\n[docker]\nhost = \"docker.sock\"\n");
    let p = problems(&text);
    assert_eq!(p[0].field.to_string(), "docker.host");
    assert_eq!(
        p[0].location.map(|l| l.line),
        Some(text.lines().count()),
        "{p:?}"
    );
    assert!(p[0].message.contains("unix:///"), "{}", p[0].message);
}

#[test]
fn shadow_defaults_and_problems_name_their_fields() {
    let c = parse(GOOD, Path::new("/etc/sy.toml")).expect("valid");
    assert_eq!(c.service("auth").expect("service").shadow(), None);
    let with = |shadow: &str| {
        GOOD.replace(
            "sticky = { cookie = \"sid\" }",
            &format!("sticky = {{ cookie = \"sid\" }}\nshadow = {shadow}"),
        )
    };
    let c = parse(
        &with("{ stack = \"green\", percent = 20 }"),
        Path::new("/etc/sy.toml"),
    )
    .expect("valid");
    let s = c.service("auth").expect("service");
    let sh = s.shadow().expect("shadow");
    assert_eq!(sh.stack().as_str(), "green");
    assert_eq!(sh.percent(), 20);
    assert_eq!(sh.methods(), DEFAULT_SHADOW_METHODS);
    assert!(sh.mirrors("GET") && !sh.mirrors("POST") && !sh.mirrors("get"));
    assert_eq!(sh.max_body(), DEFAULT_SHADOW_MAX_BODY);
    assert_eq!(s.to_raw().shadow.expect("raw shadow").percent, 20);

    let c = parse(
        &with("{ stack = \"green\", percent = 100, methods = [\"GET\", \"PUT\"], max_body = \"1MiB\" }"),
        Path::new("/etc/sy.toml"),
    )
    .expect("valid");
    let sh = c.service("auth").expect("service").shadow().cloned();
    let sh = sh.expect("shadow");
    assert_eq!(sh.methods(), ["GET", "PUT"]);
    assert_eq!(sh.max_body(), 1 << 20);

    let p = problems(&with(
        "{ stack = \"red\", percent = 0, methods = [\"G ET\"], max_body = \"1TB\" }",
    ));
    let fields: Vec<String> = p.iter().map(|p| p.field.to_string()).collect();
    assert_eq!(
        fields,
        [
            "services[0].shadow.stack",
            "services[0].shadow.percent",
            "services[0].shadow.methods[0]",
            "services[0].shadow.max_body",
        ],
        "{p:?}"
    );
    assert!(p.iter().all(|p| p.location.map(|l| l.line) == Some(13)));
    assert!(
        p[0].message
            .contains("expected one of the service's stacks (blue, green)")
    );
    assert!(p[1].message.contains("expected an integer from 1 to 100"));
    let p = problems(&with("{ stack = \"green\", percent = \"x\" }"));
    assert_eq!(
        p[0].to_string(),
        "services[0].shadow.percent: expected an integer from 1 to 100, found \"x\""
    );
    let p = problems(&with("{ stack = \"green\", percent = 5, mirror = true }"));
    assert!(p[0].message.contains("unknown key `mirror`"), "{p:?}");
}

#[test]
fn shadow_follows_its_stack_and_is_set_through_the_model() {
    let c = parse(GOOD, Path::new("/etc/sy.toml")).expect("valid");
    let s = c.service("auth").expect("service");
    let raw_shadow = |stack: &str, percent| raw::Shadow {
        stack: stack.into(),
        percent,
        methods: None,
        max_body: None,
    };
    let on = s
        .with_shadow(Some(raw_shadow("green", 50)))
        .expect("valid shadow");
    assert_eq!(on.shadow().map(|sh| sh.percent()), Some(50));
    assert_eq!(on.to_raw().shadow, Some(raw_shadow("green", 50)));
    let e = s
        .with_shadow(Some(raw_shadow("red", 101)))
        .expect_err("invalid");
    let fields: Vec<String> = e.iter().map(|p| p.field.to_string()).collect();
    assert_eq!(fields, ["shadow.stack", "shadow.percent"]);
    assert_eq!(on.with_shadow(None).expect("off"), *s);
    // Removing the shadow stack ends mirroring; keeping it keeps the setting.
    let kept = on.with_stacks(s.stacks().to_vec()).expect("same stacks");
    assert!(kept.shadow().is_some());
    let blue_only = on.with_stacks(s.stacks()[..1].to_vec()).expect("blue only");
    assert_eq!(blue_only.shadow(), None);
    assert_eq!(blue_only.to_raw().shadow, None);
}

mod store;

#[test]
fn runtime_scheduler_defaults_to_thread_per_core_and_refuses_unknown_values() {
    let c = parse(GOOD, Path::new("/etc/sy.toml")).expect("valid");
    assert_eq!(c.runtime().scheduler, Scheduler::ThreadPerCore);
    let text = format!("{GOOD}\n[runtime]\nworker_threads = 2\nscheduler = \"work-stealing\"\n");
    let c = parse(&text, Path::new("/etc/sy.toml")).expect("valid");
    assert_eq!(c.runtime().worker_threads, Some(2));
    assert_eq!(c.runtime().scheduler, Scheduler::WorkStealing);
    let text = format!("{GOOD}\n[runtime]\nscheduler = \"fibers\"\n");
    let problems = problems(&text);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].to_string().contains(
            "runtime.scheduler: unknown value \"fibers\": expected \"thread-per-core\" or \"work-stealing\""
        ),
        "{}",
        problems[0]
    );
}

#[test]
fn max_headers_is_bounded_by_what_the_http1_parser_holds() {
    let ok = format!("{GOOD}\n[limits]\nmax_headers = 256\n");
    assert_eq!(
        parse(&ok, Path::new("/etc/sy.toml"))
            .unwrap()
            .limits
            .max_headers,
        256
    );
    let p = problems(&format!("{GOOD}\n[limits]\nmax_headers = 257\n"));
    assert_eq!(p.len(), 1, "{p:?}");
    let shown = p[0].to_string();
    assert!(shown.starts_with("limits.max_headers:"), "{shown}");
    assert!(shown.contains("1 to 256"), "{shown}");
    assert_eq!(p[0].location.map(|l| l.line), Some(30), "{shown}");
}
