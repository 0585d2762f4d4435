//! `switchyard status`: which version is live where, at what weights, since when, deployed by
//! which token; the deployment in progress, the latest one's analysis and standby; and with a
//! shared store, the instances.
//!
//! `--output json` prints one document assembled from the API's answers, unchanged:
//! `{"services": [GET /v1/services/{s}, ...], "deployments": {"{s}": [GET
//! /v1/services/{s}/deployments .deployments], ...}, "instances": GET /v1/instances | null}`.

use serde_json::{Map, Value, json};

use super::client::{Client, Connection};
use super::render::{items, text};
use super::{CliError, EXIT_SUCCEEDED, Output};

pub(super) async fn status(
    conn: &Connection,
    only: Option<&str>,
    output: Output,
) -> Result<u8, CliError> {
    let client = Client::new(conn)?;
    let names: Vec<String> = match only {
        Some(s) => vec![s.to_owned()],
        None => {
            let list = client.json("GET", "/v1/services", None).await?;
            items(&list["services"])
                .iter()
                .map(|s| text(&s["name"], "").to_owned())
                .collect()
        }
    };
    let mut services = Vec::new();
    let mut deployments = Map::new();
    for name in &names {
        services.push(
            client
                .json("GET", &format!("/v1/services/{name}"), None)
                .await?,
        );
        let list = client
            .json("GET", &format!("/v1/services/{name}/deployments"), None)
            .await?;
        deployments.insert(name.clone(), list["deployments"].clone());
    }
    // A token limited to some services may not read the instances; status shows the rest.
    let instances = client.json("GET", "/v1/instances", None).await.ok();
    if output == Output::Json {
        let doc = json!({
            "services": services,
            "deployments": deployments,
            "instances": instances,
        });
        println!("{doc}");
        return Ok(EXIT_SUCCEEDED);
    }
    for svc in &services {
        let name = text(&svc["name"], "");
        print_service(svc, items(&deployments[name]));
    }
    if let Some(list) = &instances {
        print_instances(list);
    }
    Ok(EXIT_SUCCEEDED)
}

/// A service's stacks (with who deployed each), its deployment in progress and its latest.
fn print_service(svc: &Value, deployments: &[Value]) {
    let name = text(&svc["name"], "");
    println!(
        "service {name} (revision {}, active {})",
        svc["revision"],
        text(&svc["active"], "none")
    );
    let stacks = items(&svc["stacks"]);
    let total: u64 = stacks.iter().filter_map(|s| s["weight"].as_u64()).sum();
    println!(
        "  {:<12} {:<10} {:>6} {:>6}  {:<32} deployed by",
        "stack", "version", "weight", "share", "live since"
    );
    for s in stacks {
        let stack = text(&s["name"], "");
        let weight = s["weight"].as_u64().unwrap_or(0);
        let share = (weight * 100).checked_div(total).unwrap_or(0);
        let by = deployments
            .iter()
            .find(|d| d["stack"] == stack && d["phase"] == "succeeded")
            .map_or_else(
                || "-".to_owned(),
                |d| {
                    format!(
                        "{} (deployment {}, {})",
                        text(&d["created_by"], "?"),
                        d["id"],
                        text(&d["finished_at"], "")
                    )
                },
            );
        println!(
            "  {:<12} {:<10} {:>6} {:>5}%  {:<32} {by}",
            stack,
            text(&s["version"], ""),
            weight,
            share,
            text(&s["promoted_at"], "-"),
        );
    }
    if let Some(d) = svc["deployment"].as_object() {
        println!(
            "  deployment {} in progress: {} (stack {}, started by {} at {}; follow it: switchyard deployments watch {} --service {name})",
            d["id"],
            text(&d["label"], "?"),
            text(&d["stack"], "?"),
            text(&d["created_by"], "?"),
            text(&d["created_at"], "?"),
            d["id"],
        );
    }
    if let Some(d) = deployments.first() {
        print_latest(name, d);
    }
}

/// The latest deployment's analysis window, why it rolled back, and its standby.
fn print_latest(service: &str, d: &Value) {
    if let Some(w) = d["analysis"].as_object() {
        println!(
            "  analysis of deployment {} at {}: {} ({})",
            d["id"],
            text(&w["step"], "?"),
            text(&w["verdict"], "?"),
            text(&w["detail"], "")
        );
    }
    if let Some(reason) = d["reason"].as_str() {
        println!(
            "  deployment {} {}: {reason}",
            d["id"],
            text(&d["phase"], "?")
        );
    }
    if let Some(s) = d["standby"].as_object() {
        let stacks: Vec<&str> = items(&s["stacks"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        println!(
            "  previous {} kept at weight 0 until {}: `switchyard rollback --service {service}` switches back",
            stacks.join(", "),
            text(&s["until"], "?")
        );
    }
}

/// With a shared store: the instances and whether they serve the same state.
fn print_instances(list: &Value) {
    if list["store"] != "etcd" {
        return;
    }
    let all = items(&list["instances"]);
    let agree = if list["agree"] == true {
        "agree"
    } else {
        "DISAGREE"
    };
    println!("instances ({}, {agree})", all.len());
    println!(
        "  {:<18} {:<22} {:<8} {:>10} {:>10}",
        "id", "control", "version", "generation", "revision"
    );
    for i in all {
        println!(
            "  {:<18} {:<22} {:<8} {:>10} {:>10}",
            text(&i["id"], "?"),
            text(&i["address"], "?"),
            text(&i["version"], "?"),
            i["generation"].to_string(),
            i["revision"].to_string(),
        );
    }
}
