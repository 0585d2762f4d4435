use super::*;
use crate::fake::{config_text, parse};

const NOW: &str = "2025-01-01T00:00:00Z";
const LATER: &str = "2025-01-02T00:00:00Z";

fn base() -> &'static Path {
    Path::new("/etc/switchyard")
}

fn first(file: &Config) -> Merged {
    merge(file, &BTreeMap::new(), base(), NOW).expect("merges")
}

#[test]
fn first_start_seeds_every_file_service_at_revision_one() {
    let file = parse(&config_text());
    let m = first(&file);
    assert_eq!(m.config, file);
    assert_eq!(m.changed.len(), 2);
    let auth = &m.records["auth"];
    assert_eq!((auth.revision, auth.origin), (1, Origin::File));
    assert_eq!(auth.promotions.keys().collect::<Vec<_>>(), vec!["blue"]);
}

#[test]
fn unchanged_file_changes_nothing() {
    let file = parse(&config_text());
    let m = first(&file);
    let again = merge(&file, &m.records, base(), LATER).expect("merges");
    assert!(again.changed.is_empty());
    assert_eq!(again.records, m.records);
}

#[test]
fn file_edits_reach_file_owned_services_only() {
    let file = parse(&config_text());
    let mut records = first(&file).records;
    let auth = records.get_mut("auth").expect("auth");
    auth.origin = Origin::Runtime;
    let mut raw = auth.spec.clone().expect("spec");
    raw.stacks[1].weight = 7;
    auth.spec = Some(raw);

    let edited = parse(
        &config_text()
            .replace("weight = 0", "weight = 3")
            .replace("version = \"v7\"", "version = \"v8\""),
    );
    let m = merge(&edited, &records, base(), LATER).expect("merges");
    let auth = m.config.service("auth").expect("auth");
    assert_eq!(auth.stack("green").expect("green").weight().get(), 7);
    let web = m.config.service("web").expect("web");
    assert_eq!(web.stacks()[0].version(), "v8");
    assert_eq!(m.records["web"].revision, 2);
    assert_eq!(m.records["auth"].revision, 1);
    assert_eq!(m.changed.len(), 1);
    assert_eq!(m.changed[0].service, "web");
}

#[test]
fn a_service_deleted_at_runtime_stays_deleted() {
    let file = parse(&config_text());
    let mut records = first(&file).records;
    let web = records.get_mut("web").expect("web");
    web.origin = Origin::Runtime;
    web.spec = None;
    web.revision = 2;
    let m = merge(&file, &records, base(), LATER).expect("merges");
    assert!(m.config.service("web").is_none());
    assert!(m.changed.is_empty());
}

#[test]
fn a_service_removed_from_the_file_is_tombstoned_and_comes_back_at_the_next_revision() {
    let file = parse(&config_text());
    let records = first(&file).records;
    let text = config_text();
    let start = text
        .find("[[services]]\nname = \"web\"")
        .expect("web section");
    let end = text.find("[[tokens]]").expect("tokens");
    let without_web = format!("{}{}", &text[..start], &text[end..]);
    let m = merge(&parse(&without_web), &records, base(), LATER).expect("merges");
    assert!(m.config.service("web").is_none());
    assert_eq!(m.records["web"].revision, 2);
    assert_eq!(m.records["web"].spec, None);
    let back = merge(&file, &m.records, base(), LATER).expect("merges");
    assert_eq!(back.records["web"].revision, 3);
    assert!(back.config.service("web").is_some());
}

#[test]
fn a_runtime_service_on_a_removed_listener_is_an_error_naming_it() {
    let file = parse(&config_text());
    let mut records = first(&file).records;
    let mut api = records["web"].clone();
    api.origin = Origin::Runtime;
    let mut raw = api.spec.clone().expect("spec");
    raw.name = "api".into();
    raw.hosts = vec![];
    raw.listeners = vec!["internal".into()];
    api.spec = Some(raw);
    records.insert("api".into(), api);
    assert!(merge(&file, &records, base(), LATER).is_ok());

    let no_internal = config_text().replace(
        "[[listeners]]\nname = \"internal\"\nbind = \"127.0.0.1:18081\"\n",
        "",
    );
    let e = merge(&parse(&no_internal), &records, base(), LATER).expect_err("conflict");
    assert!(matches!(e, SeedError::Conflict { .. }));
    assert!(
        e.to_string().contains("unknown listener \"internal\""),
        "{e}"
    );
}

#[test]
fn an_invalid_saved_service_is_an_error_naming_it() {
    let file = parse(&config_text());
    let mut records = first(&file).records;
    let auth = records.get_mut("auth").expect("auth");
    auth.origin = Origin::Runtime;
    if let Some(raw) = auth.spec.as_mut() {
        raw.stacks[0].weight = -5;
    }
    let e = merge(&file, &records, base(), LATER).expect_err("invalid");
    assert!(matches!(&e, SeedError::InvalidSaved { service, .. } if service == "auth"));
}
