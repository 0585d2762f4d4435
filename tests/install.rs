//! What an installation uses besides the binary: the systemd readiness protocol (a Unix
//! datagram socket passed as `NOTIFY_SOCKET` to the real binary), the unit file, the manual
//! pages and the shell completion scripts.

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use support::{PUBLIC_LISTENER, Proxy, WAIT, output_text as text};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn run(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run switchyard");
    assert!(out.status.success(), "switchyard {args:?}: {}", text(&out));
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The top-level subcommands, as `--help` lists them (so new ones are covered too).
fn subcommands() -> Vec<String> {
    let help = run(&["--help"]);
    let list = help
        .split("Commands:\n")
        .nth(1)
        .expect("a Commands section")
        .split("\n\n")
        .next()
        .expect("its lines");
    let names: Vec<String> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_owned)
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    names
}

/// `switchyard serve` with `NOTIFY_SOCKET` set, once it printed `ready`. The endpoint is a
/// closed loopback port: no request is sent.
fn serve_notifying(notify_socket: &str) -> Proxy {
    let config = format!(
        "{PUBLIC_LISTENER}{}",
        support::service("app", "", "127.0.0.1:9")
    );
    Proxy::start_with_env(&config, &[("NOTIFY_SOCKET", notify_socket)])
}

fn recv(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 256];
    let n = socket
        .recv(&mut buf)
        .expect("a notification before the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn notify_socket_gets_ready_then_reloading_ready_and_stopping() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notification socket");
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    let proxy = serve_notifying(path.to_str().expect("utf-8 path"));
    assert_eq!(recv(&socket), "READY=1");

    proxy.signal("HUP");
    assert_eq!(recv(&socket), "RELOADING=1");
    assert_eq!(recv(&socket), "READY=1");

    let status = proxy.stop();
    assert!(status.success(), "{status}");
    assert_eq!(recv(&socket), "STOPPING=1");
}

#[test]
fn notify_socket_in_the_abstract_namespace_gets_ready() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("switchyard-notify-test-{}", std::process::id());
    let addr =
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract");
    let socket = UnixDatagram::bind_addr(&addr).expect("bind the notification socket");
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    let _proxy = serve_notifying(&format!("@{name}"));
    assert_eq!(recv(&socket), "READY=1");
}

#[test]
fn systemd_unit_is_type_notify_hardened_and_valid() {
    let unit_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/systemd/switchyard.service");
    let unit = std::fs::read_to_string(&unit_path).expect("read the unit");
    let directives: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for wanted in [
        "Type=notify",
        "ExecStart=/usr/local/bin/switchyard serve --config /etc/switchyard/switchyard.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StateDirectory=switchyard",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "RestartPreventExitStatus=78",
    ] {
        assert!(directives.contains(&wanted), "the unit lacks {wanted}");
    }
    // The commands it runs are ones the binary accepts.
    let check = run(&[
        "check",
        "--config",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/contrib/docker/switchyard.toml"
        ),
    ]);
    assert!(check.contains(": ok: "), "{check}");

    // systemd's own parser, where installed: no unknown key, no invalid value.
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed: the unit was checked by its directives only");
        return;
    };
    assert!(probe.status.success());
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("switchyard.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/switchyard", BIN)).expect("write");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("switchyard.service"))
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "{}",
        text(&out)
    );
}

#[test]
fn man_writes_a_page_per_subcommand_that_groff_accepts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_dir = dir.path().join("man1");
    let listed = run(&["man", "--out", out_dir.to_str().expect("utf-8")]);
    let top = std::fs::read_to_string(out_dir.join("switchyard.1")).expect("switchyard.1");
    assert_eq!(top, run(&["man"]), "stdout page differs from switchyard.1");
    assert!(top.contains(".TH switchyard 1"), "{top}");
    assert!(top.contains(".SH SUBCOMMANDS"), "{top}");
    let subcommands = subcommands();
    for sub in &subcommands {
        let page = out_dir.join(format!("switchyard-{sub}.1"));
        assert!(page.is_file(), "no page for {sub}");
        assert!(listed.contains(&*page.to_string_lossy()), "{listed}");
        let escaped = sub.replace('-', "\\-");
        assert!(
            top.contains(&format!("switchyard\\-{escaped}(1)")),
            "switchyard.1 does not refer to {sub}"
        );
    }
    let serve = std::fs::read_to_string(out_dir.join("switchyard-serve.1")).expect("serve page");
    assert!(serve.contains("\\-\\-config"), "{serve}");
    // Nested subcommands get their own page too.
    assert!(out_dir.join("switchyard-certs-self-signed.1").is_file());
    let watch = std::fs::read_to_string(out_dir.join("switchyard-deployments-watch.1"))
        .expect("deployments watch page");
    assert!(watch.contains("SWITCHYARD_CONTROL_URL"), "{watch}");

    if Command::new("groff").arg("--version").output().is_err() {
        eprintln!("groff is not installed: the pages were checked by their content only");
        return;
    }
    for entry in std::fs::read_dir(&out_dir).expect("read pages") {
        let page = entry.expect("entry").path();
        let out = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&page)
            .output()
            .expect("groff");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{}: {}",
            page.display(),
            text(&out)
        );
    }
}

/// What bash's completion offers for `words` (the last one being completed).
fn bash_completes(script: &Path, words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let program = format!(
        "source {script}\nCOMP_WORDS=({words})\nCOMP_CWORD={cword}\nCOMP_LINE='{line}'\nCOMP_POINT={point}\n_switchyard switchyard '{cur}' '{prev}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script = script.display(),
        words = words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" "),
        cword = words.len() - 1,
        point = line.len(),
        cur = words[words.len() - 1],
        prev = words[words.len() - 2],
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("run bash");
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completion_parses_and_offers_the_subcommands() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("switchyard.bash");
    std::fs::write(&script, run(&["completions", "bash"])).expect("write");
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash -n");
    assert!(syntax.status.success(), "{}", text(&syntax));

    let offered = bash_completes(&script, &["switchyard", ""]);
    for sub in subcommands() {
        assert!(offered.contains(&sub), "{sub} not offered: {offered:?}");
    }
    assert_eq!(
        bash_completes(&script, &["switchyard", "comp"]),
        ["completions"]
    );
    let certs = bash_completes(&script, &["switchyard", "certs", ""]);
    assert!(
        certs.contains(&"self-signed".to_owned()) && certs.contains(&"inspect".to_owned()),
        "{certs:?}"
    );
    let deployments = bash_completes(&script, &["switchyard", "deployments", ""]);
    for sub in ["list", "show", "logs", "watch"] {
        assert!(deployments.contains(&sub.to_owned()), "{deployments:?}");
    }
    let watch = bash_completes(&script, &["switchyard", "deployments", "watch", "--"]);
    for flag in ["--control", "--token-file", "--ca", "--service"] {
        assert!(watch.contains(&flag.to_owned()), "{watch:?}");
    }
}

#[test]
fn zsh_and_fish_completions_name_every_subcommand() {
    let subcommands = subcommands();
    for (shell, syntax_check) in [("zsh", ["zsh", "-n"]), ("fish", ["fish", "--no-execute"])] {
        let script = run(&["completions", shell]);
        for sub in &subcommands {
            assert!(script.contains(sub.as_str()), "{shell}: {sub} missing");
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(format!("switchyard.{shell}"));
        std::fs::write(&path, &script).expect("write");
        match Command::new(syntax_check[0])
            .arg(syntax_check[1])
            .arg(&path)
            .output()
        {
            Ok(out) => assert!(out.status.success(), "{shell}: {}", text(&out)),
            Err(_) => eprintln!("{shell} is not installed: its script was checked by content"),
        }
    }
    let out = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .expect("run");
    assert!(!out.status.success(), "an unknown shell is refused");
}
