use super::*;
use crate::fake::{config_text, parse};
use crate::seed::merge;

const NOW: &str = "2025-01-01T00:00:00Z";
const LATER: &str = "2025-01-02T00:00:00Z";

fn setup() -> (Config, BTreeMap<String, ServiceRecord>) {
    let file = parse(&config_text());
    let m = merge(&file, &BTreeMap::new(), Path::new("/etc"), NOW).expect("merges");
    (m.config, m.records)
}

fn weights(pairs: &[(&str, i64)]) -> Change {
    Change::SetWeights {
        weights: pairs.iter().map(|(n, w)| ((*n).to_owned(), *w)).collect(),
        exclusive: false,
        allow_no_traffic: false,
    }
}

#[test]
fn raising_a_weight_records_a_promotion_and_deleting_the_stack_forgets_it() {
    let (config, records) = setup();
    let p = plan(
        &config,
        &records,
        "auth",
        None,
        &weights(&[("green", 10)]),
        Path::new("/etc"),
        LATER,
    )
    .expect("valid");
    assert_eq!(p.record.revision, 2);
    assert_eq!(p.record.origin, Origin::Runtime);
    let green = &p.record.promotions["green"];
    assert_eq!((green.at.as_str(), green.revision), (LATER, 2));
    assert_eq!(
        p.record.promotions["blue"].revision, 1,
        "blue kept its promotion"
    );

    let mut records = records;
    records.insert("auth".into(), p.record);
    let change = Change::DeleteStack {
        stack: "green".into(),
        force: true,
        allow_no_traffic: false,
    };
    let p = plan(
        &p.config,
        &records,
        "auth",
        None,
        &change,
        Path::new("/etc"),
        LATER,
    )
    .expect("valid");
    assert!(!p.record.promotions.contains_key("green"));
}

#[test]
fn validation_comes_before_the_revision_check() {
    let (config, records) = setup();
    let e = plan(
        &config,
        &records,
        "auth",
        Some(9),
        &weights(&[("green", -1)]),
        Path::new("/etc"),
        NOW,
    )
    .expect_err("invalid");
    assert_eq!(e.code(), "invalid_value");
    let e = plan(
        &config,
        &records,
        "auth",
        Some(9),
        &weights(&[("green", 1)]),
        Path::new("/etc"),
        NOW,
    )
    .expect_err("stale");
    assert_eq!(e.code(), "revision_mismatch");
}

#[test]
fn every_problem_is_reported_at_once() {
    let (config, records) = setup();
    let e = plan(
        &config,
        &records,
        "auth",
        None,
        &weights(&[("green", 20000), ("purple", 1)]),
        Path::new("/etc"),
        NOW,
    )
    .expect_err("invalid");
    let m = e.to_string();
    assert!(
        m.contains("weights.green: weight 20000") && m.contains("weights.purple: unknown stack"),
        "{m}"
    );
}
