//! `[store]`: the default local store, etcd settings, and errors naming file, line and field.

use super::{GOOD, report};
use crate::{StoreSpec, parse};
use std::path::Path;
use std::time::Duration;

#[test]
fn no_store_table_means_the_local_store() {
    let c = parse(GOOD, Path::new("/etc/sy.toml")).expect("valid");
    assert_eq!(c.store(), &StoreSpec::Local);
}

#[test]
fn an_etcd_store_keeps_endpoints_prefix_auth_and_lease() {
    let text = format!(
        "{GOOD}\n[store]\nkind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\", \"http://10.0.0.2:2379\"]\nprefix = \"/switchyard/prod/\"\nuser = \"sy\"\npassword = \"pw\"\nlease_ttl = \"3s\"\n"
    );
    let c = parse(&text, Path::new("/etc/sy.toml")).expect("valid");
    let StoreSpec::Etcd(e) = c.store() else {
        panic!("expected etcd, got {:?}", c.store());
    };
    assert_eq!(
        e.endpoints,
        ["http://127.0.0.1:2379", "http://10.0.0.2:2379"]
    );
    assert_eq!(e.prefix, "/switchyard/prod/");
    assert_eq!(e.auth, Some(("sy".to_owned(), "pw".to_owned())));
    assert_eq!(e.lease_ttl, Duration::from_secs(3));
    assert_eq!(e.tls, None);
}

#[test]
fn etcd_settings_errors_name_line_and_field() {
    let lines = GOOD.lines().count();
    let text = format!(
        "{GOOD}\n[store]\nkind = \"etcd\"\nendpoints = [\"127.0.0.1:2379\"]\nprefix = \"switchyard\"\nuser = \"sy\"\n"
    );
    let shown = report(&text);
    let at = |offset: usize, field: &str| format!("/etc/sy.toml:{}:", lines + offset) + "" + field;
    for (offset, field) in [(4, "store.endpoints[0]"), (5, "store.prefix")] {
        let line = at(offset, "");
        assert!(
            shown
                .lines()
                .any(|l| l.starts_with(&line) && l.contains(field)),
            "{field} at {line}: {shown}"
        );
    }
    assert!(
        shown.contains("store.password: expected with user"),
        "{shown}"
    );
}

#[test]
fn etcd_keys_on_a_local_store_and_unknown_kinds_are_refused() {
    let text = format!("{GOOD}\n[store]\nkind = \"zookeeper\"\n");
    assert!(
        report(&text).contains("store.kind: unknown store kind \"zookeeper\""),
        "{}",
        report(&text)
    );
    let text = format!("{GOOD}\n[store]\nendpoints = [\"http://127.0.0.1:2379\"]\n");
    assert!(
        report(&text).contains("store.endpoints: only used with kind = \"etcd\""),
        "{}",
        report(&text)
    );
}
