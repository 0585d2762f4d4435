//! Several Switchyard instances on one etcd (`[store] kind = "etcd"`), through the real
//! binary and real etcd processes (tests/support/etcd.rs): a write through one instance is
//! served by the others, `If-Match` holds across instances, an etcd outage keeps routing and
//! refuses writes with 503 until etcd returns, a deployment whose driver is killed is taken
//! over, an etcd requiring TLS client certificates and a password is shared the same way, a
//! three-member cluster survives a member's loss, and the migration between the
//! state folder and etcd round-trips. Without etcd installed the tests are skipped (under
//! `CI=true` they fail).

mod support;

use bytes::Bytes;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::process::Command;
use support::deploy::{CI, OPS, tokens};
use support::etcd::{self, Etcd, store_table};
use support::{BlueGreen, Client, Proxy, WAIT, api, output_text, wait_json};

const HOST: &str = "web.test";
const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// Service `web` (blue 100, green 0) with the tokens, without a store table.
fn local_config(bg: &BlueGreen) -> String {
    bg.config(100, 0, &format!("hosts = [\"{HOST}\"]\n"), &tokens())
}

/// The same on `etcd` under `prefix`.
fn etcd_config(bg: &BlueGreen, etcd: &Etcd, prefix: &str) -> String {
    format!("{}\n{}", local_config(bg), store_table(etcd, prefix))
}

/// The version the proxy serves for one new request.
async fn served(proxy: &Proxy) -> String {
    let mut c = Client::connect(proxy.addr("public")).await;
    c.request("GET", "/", &[("host", HOST)], Bytes::new())
        .await
        .version()
}

/// Waits until `proxy` serves `version`, then checks the next requests all get it.
async fn wait_served(proxy: &Proxy, version: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while served(proxy).await != version {
        assert!(
            tokio::time::Instant::now() < deadline,
            "instance at {} never served {version}: {}",
            proxy.control,
            proxy.stderr()
        );
        // A poll interval, bounded by the deadline; the served version is what is awaited.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    for _ in 0..10 {
        assert_eq!(served(proxy).await, version);
    }
}

/// `PUT /v1/services/web/weights`, with `If-Match` when given: (status, body).
async fn set_weights(
    control: SocketAddr,
    blue: u32,
    green: u32,
    if_match: Option<u64>,
) -> (u16, Value) {
    let mut c = Client::connect(control).await;
    let auth = format!("Bearer {OPS}");
    let tag = if_match.map(|r| format!("\"{r}\""));
    let mut headers = vec![
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    if let Some(t) = &tag {
        headers.push(("if-match", t.as_str()));
    }
    let body = json!({"weights": {"blue": blue, "green": green}}).to_string();
    let r = c
        .request(
            "PUT",
            "/v1/services/web/weights",
            &headers,
            Bytes::from(body),
        )
        .await;
    (r.status, r.json())
}

async fn service(proxy: &Proxy) -> Value {
    let (status, v) = api(proxy.control, "GET", "/v1/services/web", Some(OPS), None).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// The service view without runtime counters (desired state only).
fn comparable(mut v: Value) -> Value {
    let o = v.as_object_mut().expect("service object");
    for s in o["stacks"].as_array_mut().expect("stacks") {
        for e in s["endpoints"].as_array_mut().expect("endpoints") {
            let e = e.as_object_mut().expect("endpoint");
            e.remove("requests_total");
            e.remove("detail");
        }
    }
    v
}

/// As [`comparable`], without what every write changes (revision, updated_at): a rollback
/// puts back everything else exactly.
fn rolled_back(v: Value) -> Value {
    let mut v = comparable(v);
    let o = v.as_object_mut().expect("service object");
    o.remove("revision");
    o.remove("updated_at");
    v
}

async fn history(proxy: &Proxy) -> Value {
    let (status, v) = api(
        proxy.control,
        "GET",
        "/v1/history?limit=1000",
        Some(OPS),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v["entries"].clone()
}

#[tokio::test]
async fn a_weight_change_through_one_instance_is_served_by_the_others() {
    if !etcd::available() {
        return;
    }
    let etcd = Etcd::start(1);
    let bg = BlueGreen::start().await;
    // A long lease: an instance that stops cleanly must leave the list at once, not expire.
    let text = etcd_config(&bg, &etcd, "/switchyard/spread/")
        .replace("lease_ttl = \"2s\"", "lease_ttl = \"60s\"");
    assert!(text.contains("lease_ttl = \"60s\""));
    let instances = [
        Proxy::start(&text),
        Proxy::start(&text),
        Proxy::start(&text),
    ];
    for p in &instances {
        assert_eq!(served(p).await, "blue");
    }
    let (status, v) = set_weights(instances[0].control, 0, 100, None).await;
    assert_eq!(status, 200, "{v}");
    for p in &instances[1..] {
        wait_served(p, "green").await;
    }
    let v = wait_json(
        instances[2].control,
        "/v1/instances",
        Some(OPS),
        "three instances that agree",
        |v| v["instances"].as_array().map_or(0, Vec::len) == 3 && v["agree"] == true,
    )
    .await;
    assert_eq!(v["store"], "etcd");
    // The service list shows them too.
    let (_, list) = api(instances[0].control, "GET", "/v1/services", Some(OPS), None).await;
    assert_eq!(list["instances"]["store"], "etcd", "{list}");
    assert_eq!(
        list["instances"]["instances"].as_array().map(Vec::len),
        Some(3),
        "{list}"
    );
    let mut addrs: Vec<String> = v["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| i["address"].as_str().unwrap_or_default().to_owned())
        .collect();
    addrs.sort();
    let mut expected: Vec<String> = instances.iter().map(|p| p.control.to_string()).collect();
    expected.sort();
    assert_eq!(addrs, expected);
    let token_file = instances[1].dir.path().join("token");
    std::fs::write(&token_file, OPS).expect("write token");
    let status = Command::new(BIN)
        .args([
            "status",
            "--control",
            &format!("http://{}", instances[1].control),
        ])
        .arg("--token-file")
        .arg(&token_file)
        .output()
        .expect("run status");
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(
        out.contains("instances (3, agree)"),
        "{}",
        output_text(&status)
    );
    // A clean stop leaves the list at once (no waiting for the lease to expire).
    let [a, b, c] = instances;
    assert!(a.stop().success());
    wait_json(
        c.control,
        "/v1/instances",
        Some(OPS),
        "two instances",
        |v| v["instances"].as_array().map_or(0, Vec::len) == 2,
    )
    .await;
    assert!(b.stop().success());
    assert!(c.stop().success());
}

#[tokio::test]
async fn two_if_match_writes_through_two_instances_exactly_one_wins() {
    if !etcd::available() {
        return;
    }
    let etcd = Etcd::start(1);
    let bg = BlueGreen::start().await;
    let text = etcd_config(&bg, &etcd, "/switchyard/cas/");
    let a = Proxy::start(&text);
    let b = Proxy::start(&text);
    let revision = service(&a).await["revision"].as_u64().expect("revision");
    assert_eq!(service(&b).await["revision"], revision);
    let (first, second) = tokio::join!(
        set_weights(a.control, 30, 70, Some(revision)),
        set_weights(b.control, 70, 30, Some(revision)),
    );
    let mut statuses = [first.0, second.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 412], "{first:?} {second:?}");
    let loser = if first.0 == 412 { &first.1 } else { &second.1 };
    assert_eq!(loser["error"]["code"], "revision_mismatch");
    // Both instances converge on the winner's weights, one revision on.
    let winner_blue = if first.0 == 200 { 30 } else { 70 };
    for p in [&a, &b] {
        wait_json(
            p.control,
            "/v1/services/web",
            Some(OPS),
            "the winning write",
            |v| {
                v["revision"] == revision + 1
                    && v["stacks"].as_array().is_some_and(|s| {
                        s.iter()
                            .any(|s| s["name"] == "blue" && s["weight"] == winner_blue)
                    })
            },
        )
        .await;
    }
    assert!(a.stop().success());
    assert!(b.stop().success());
}

#[tokio::test]
async fn with_etcd_down_instances_keep_routing_refuse_writes_and_catch_up_after() {
    if !etcd::available() {
        return;
    }
    let mut etcd = Etcd::start(1);
    let bg = BlueGreen::start().await;
    let text = etcd_config(&bg, &etcd, "/switchyard/outage/");
    let a = Proxy::start(&text);
    let b = Proxy::start(&text);
    etcd.stop(0);
    for p in [&a, &b] {
        for _ in 0..5 {
            assert_eq!(served(p).await, "blue");
        }
    }
    let (status, v) = set_weights(a.control, 0, 100, None).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "store_unavailable");
    wait_json(
        a.control,
        "/readyz",
        None,
        "the store reported unavailable",
        |v| v["store"] == "unavailable",
    )
    .await;
    for p in [&a, &b] {
        assert_eq!(served(p).await, "blue", "still routing on the last state");
        let (status, v) = api(p.control, "GET", "/v1/services/web", Some(OPS), None).await;
        assert_eq!(status, 200, "reads answer from the last state: {v}");
    }

    etcd.restart(0);
    wait_json(a.control, "/readyz", None, "the store back", |v| {
        v["store"] == "available"
    })
    .await;
    let (status, v) = set_weights(a.control, 0, 100, None).await;
    assert_eq!(status, 200, "{v}");
    wait_served(&b, "green").await;
    wait_served(&a, "green").await;
    assert!(a.stop().success());
    assert!(b.stop().success());
}

#[tokio::test]
async fn a_canary_whose_driving_instance_is_killed_is_taken_over_and_rolled_back_exactly() {
    if !etcd::available() {
        return;
    }
    let etcd = Etcd::start(1);
    let bg = BlueGreen::start().await;
    let text = etcd_config(&bg, &etcd, "/switchyard/takeover/");
    let a = Proxy::start(&text);
    let b = Proxy::start(&text);
    let c = Proxy::start(&text);
    let before = rolled_back(service(&b).await);

    let body = json!({"stack": "canary", "version": "v3", "source": {"endpoints": [bg.green.addr.to_string()]},
        "strategy": {"canary": {"steps": [{"weight": 25, "pause": "manual"}, {"weight": 100}]}}});
    let (status, v) = api(
        a.control,
        "POST",
        "/v1/services/web/deployments",
        Some(CI),
        Some(&body),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_u64().expect("id");
    let path = format!("/v1/services/web/deployments/{id}");
    wait_json(a.control, &path, Some(CI), "the manual step", |v| {
        v["step"]["waiting"] == "promote"
    })
    .await;
    // The others see the deployment and the canary weights.
    wait_json(b.control, &path, Some(CI), "the deployment on B", |v| {
        v["step"]["waiting"] == "promote"
    })
    .await;
    // A process stack is refused in etcd mode, by name of the field.
    let process = json!({"stack": "p", "version": "v1", "source": {"process": {"command": [BIN, "demo-upstream", "--bind", "127.0.0.1:{port}", "--version", "p"], "replicas": 1}}});
    let (status, v) = api(
        b.control,
        "POST",
        "/v1/services/web/deployments",
        Some(CI),
        Some(&process),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("source.process")),
        "{v}"
    );

    drop(a.kill9());
    // Within the lease time another instance drives it: the one that accepts the abort.
    let abort = format!("{path}/abort");
    let deadline = tokio::time::Instant::now() + WAIT;
    let driver = loop {
        let mut accepted = None;
        for p in [&b, &c] {
            let (status, _) = api(p.control, "POST", &abort, Some(CI), None).await;
            if status == 200 {
                accepted = Some(p);
                break;
            }
        }
        if let Some(p) = accepted {
            break p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no instance took the deployment over: {}\n{}",
            b.stderr(),
            c.stderr()
        );
        // A poll interval, bounded by the deadline above.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let v = wait_json(driver.control, &path, Some(CI), "the rollback", |v| {
        v["phase"] == "rolled_back"
    })
    .await;
    assert_eq!(v["reason"], "aborted by ci");
    for p in [&b, &c] {
        wait_json(
            p.control,
            "/v1/services/web",
            Some(OPS),
            "the state before the deployment",
            |v| rolled_back(v.clone()) == before,
        )
        .await;
        wait_served(p, "blue").await;
    }
    assert!(b.stop().success());
    assert!(c.stop().success());
}

#[tokio::test]
async fn instances_share_an_etcd_that_requires_tls_client_certificates_and_a_password() {
    if !etcd::available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = etcd::TlsFiles::generate(dir.path());
    let etcd = Etcd::start_tls(&tls);
    etcd.ctl(&["user", "add", "root:root-secret"]);
    etcd.ctl(&["auth", "enable"]);
    let bg = BlueGreen::start().await;
    // Without the token every request is refused (the client certificate names no user).
    let text = format!(
        "{}user = \"root\"\npassword = \"root-secret\"\ntls = {{ ca = {:?}, cert = {:?}, key = {:?} }}\n",
        etcd_config(&bg, &etcd, "/switchyard/secured/"),
        tls.ca,
        tls.client_cert,
        tls.client_key
    );
    let a = Proxy::start(&text);
    let b = Proxy::start(&text);
    assert_eq!(served(&b).await, "blue");
    let (status, v) = set_weights(a.control, 0, 100, None).await;
    assert_eq!(status, 200, "{v}");
    wait_served(&b, "green").await;
    assert!(a.stop().success());
    assert!(b.stop().success());
}

#[tokio::test]
async fn a_three_member_etcd_with_one_member_stopped_keeps_working() {
    if !etcd::available() {
        return;
    }
    let mut etcd = Etcd::start(3);
    let bg = BlueGreen::start().await;
    let text = etcd_config(&bg, &etcd, "/switchyard/cluster/");
    let a = Proxy::start(&text);
    let b = Proxy::start(&text);
    etcd.stop(0);
    // Requests that find the stopped member are sent again to a live one: no write fails.
    let (status, v) = set_weights(a.control, 0, 100, None).await;
    assert_eq!(status, 200, "{v}: {}", a.stderr());
    wait_served(&b, "green").await;
    let (status, v) = set_weights(b.control, 100, 0, None).await;
    assert_eq!(status, 200, "{v}");
    wait_served(&a, "blue").await;
    assert!(a.stop().success());
    assert!(b.stop().success());
}

fn migrate(config: &std::path::Path, from: &str, to: &str) -> String {
    let out = Command::new(BIN)
        .args(["store", "migrate", "--config"])
        .arg(config)
        .args(["--from", from, "--to", to])
        .output()
        .expect("run migrate");
    assert!(out.status.success(), "{}", output_text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn migration_from_the_state_folder_to_etcd_and_back_keeps_state_and_history() {
    if !etcd::available() {
        return;
    }
    let etcd = Etcd::start(1);
    let bg = BlueGreen::start().await;
    let local = Proxy::start(&local_config(&bg));
    let (status, v) = set_weights(local.control, 40, 60, None).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = set_weights(local.control, 0, 100, None).await;
    assert_eq!(status, 200, "{v}");
    let view = comparable(service(&local).await);
    let entries = history(&local).await;
    // The seeding from the file, then the two writes.
    let n = entries.as_array().map_or(0, Vec::len);
    assert_eq!(n, 3, "{entries}");
    let copied = format!("services=1 history={n}");
    let (status, dir) = local.stop_keep_dir();
    assert!(status.success());

    // Into etcd: the same state folder, now with a [store] table.
    let etcd_text = format!(
        "{}\n[control]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n",
        etcd_config(&bg, &etcd, "/switchyard/moved/"),
        dir.path().join("switchyard-state").display()
    );
    let etcd_path = dir.path().join("etcd.toml");
    std::fs::write(&etcd_path, &etcd_text).expect("write config");
    let out = migrate(&etcd_path, "local", "etcd");
    assert!(out.contains(&copied), "{out}");
    // A second migration into the now non-empty etcd is refused.
    let again = Command::new(BIN)
        .args(["store", "migrate", "--config"])
        .arg(&etcd_path)
        .args(["--from", "local", "--to", "etcd"])
        .output()
        .expect("run migrate");
    assert!(!again.status.success(), "{}", output_text(&again));

    let on_etcd = Proxy::start(&etcd_config(&bg, &etcd, "/switchyard/moved/"));
    assert_eq!(comparable(service(&on_etcd).await), view);
    assert_eq!(history(&on_etcd).await, entries);
    wait_served(&on_etcd, "green").await;
    assert!(on_etcd.stop().success());

    // And back into a fresh state folder.
    let back = tempfile::tempdir().expect("tempdir");
    let back_state = back.path().join("state");
    let back_text = format!(
        "{}\n[control]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n",
        etcd_config(&bg, &etcd, "/switchyard/moved/"),
        back_state.display()
    );
    let back_path = back.path().join("etcd.toml");
    std::fs::write(&back_path, &back_text).expect("write config");
    let out = migrate(&back_path, "etcd", "local");
    assert!(out.contains(&copied), "{out}");
    let local_again = Proxy::start(&format!(
        "{}\n[control]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n",
        local_config(&bg),
        back_state.display()
    ));
    assert_eq!(comparable(service(&local_again).await), view);
    assert_eq!(history(&local_again).await, entries);
    assert!(local_again.stop().success());
}
