//! End-to-end tests of the binary's plain commands and what people read from them: `check`
//! (every rule that needs no socket, every problem at once, exit 78), `certs` errors, and log
//! lines written to a file carrying no terminal colour codes.

mod support;

use std::process::{Command, Output};
use support::{Proxy, Upstream, config};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run switchyard")
}

/// `certs self-signed --name a.example.test` into `dir`, with `extra` arguments.
fn self_signed(dir: &std::path::Path, extra: &[&str]) -> Output {
    let out_dir = dir.to_string_lossy();
    let mut args = vec![
        "certs",
        "self-signed",
        "--name",
        "a.example.test",
        "--out",
        &out_dir,
    ];
    args.extend(extra);
    run(&args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_refuses_an_open_control_listener_as_serve_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("open.toml");
    let text = "[[listeners]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n\n[control]\nlisten = \"0.0.0.0:0\"\n";
    std::fs::write(&path, text).expect("write");
    let file = path.to_string_lossy().into_owned();

    let out = run(&["check", "--config", &file]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "{file}:6:10: control.listen: control listener 0.0.0.0:0 is not loopback and no token is configured: add [[tokens]] (see `switchyard token new`) or listen on 127.0.0.1\n"
        )
    );
    // `serve` refuses the same file with the same words, before binding anything.
    let out = run(&["serve", "--config", &file]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("control.listen: control listener 0.0.0.0:0 is not loopback"));
}

#[test]
fn check_reports_every_problem_in_line_order_and_a_missing_file_plainly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    let text = "\
[[services]]
name = \"web\"
listeners = [\"nowhere\"]
colour = \"blue\"

[[services.stacks]]
name = \"blue\"
weight = 1.5

[timeouts]
connect = \"1 sec\"
";
    std::fs::write(&path, text).expect("write");
    let file = path.to_string_lossy().into_owned();
    let out = run(&["check", "--config", &file]);
    assert_eq!(out.status.code(), Some(78));
    let expected = [
        format!(
            "{file}:3:14: services[0].listeners[0]: unknown listener \"nowhere\": expected one of []"
        ),
        format!(
            "{file}:4:1: services[0].colour: unknown key `colour`: expected one of `name`, `listeners`, `hosts`, `path_prefix`, `load_balancing`, `pin_header`, `sticky`, `preserve_host`, `timeouts`, `upgrades`, `health_check`, `fail_open`, `outlier_detection`, `slow_start`, `shadow`, `stacks`"
        ),
        format!(
            "{file}:8:10: services[0].stacks[0].weight: expected an integer from 0 to 10000, found 1.5"
        ),
        format!(
            "{file}:11:11: timeouts.connect: invalid duration \"1 sec\": expected a duration such as \"150ms\", \"2s\" or \"1m30s\""
        ),
    ];
    assert_eq!(stderr(&out), expected.join("\n") + "\n");

    let missing = dir.path().join("missing.toml");
    let missing = missing.to_string_lossy();
    let out = run(&["check", "--config", &missing]);
    assert_eq!(out.status.code(), Some(78));
    assert_eq!(
        stderr(&out),
        format!("cannot read {missing}: No such file or directory\n")
    );
}

#[test]
fn certs_inspect_on_a_key_file_says_it_holds_a_private_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = self_signed(dir.path(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let key = dir.path().join("a.example.test.key");
    let key = key.to_string_lossy();
    let out = run(&["certs", "inspect", &key]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!("error: cannot inspect {key}: {key} holds a private key, not a certificate\n")
    );
}

#[test]
fn certs_self_signed_names_the_accepted_key_types() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = self_signed(dir.path(), &["--key-type", "rsa4096"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: unknown key type \"rsa4096\": the accepted key types are ecdsa-p256, rsa2048 and ed25519\n"
    );
    assert!(!dir.path().join("a.example.test.key").exists());
}

#[tokio::test]
async fn logs_written_to_a_file_carry_no_colour_codes() {
    let up = Upstream::start("v1").await;
    let proxy = Proxy::start(&config(&[("blue", "v1", 100, vec![up.addr])], "", ""));
    let log = proxy.stderr();
    assert!(proxy.stop().success());
    assert!(log.contains("INFO"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file: {log:?}"
    );
}

#[test]
fn check_loads_the_certificates_serve_would_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tls.toml");
    let text = "[[listeners]]\nname = \"public-tls\"\nbind = \"127.0.0.1:0\"\ntls = { certs = [{ cert = \"a.crt\", key = \"a.key\" }] }\n";
    std::fs::write(&path, text).expect("write");
    let file = path.to_string_lossy().into_owned();
    let crt = dir.path().join("a.crt");
    let out = run(&["check", "--config", &file]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "{file}: cannot load the certificates of listener public-tls: cannot read {}: No such file or directory (os error 2)\n",
            crt.display()
        )
    );
}
