//! `switchyard deploy`: build the body from the flags, start the deployment (or ask for a dry
//! run's plan), and with `--wait` follow it to its end.

use serde_json::Value;

use super::client::Client;
use super::render::{items, text, weights_text};
use super::{CliError, DeployArgs, EXIT_SUCCEEDED, body, follow};

pub(super) async fn deploy(args: DeployArgs) -> Result<u8, CliError> {
    let spec = body::body(&args)?;
    let client = Client::new(&args.conn)?;
    let path = format!("/v1/services/{}/deployments", args.service);
    if args.dry_run {
        let plan = client
            .json("POST", &format!("{path}?dry_run=true"), Some(&spec))
            .await?;
        print_plan(&plan);
        return Ok(EXIT_SUCCEEDED);
    }
    let key: Vec<(&str, &str)> = args
        .idempotency_key
        .as_deref()
        .map(|k| ("idempotency-key", k))
        .into_iter()
        .collect();
    let clock = tokio::time::Instant::now();
    let started = client.json_with("POST", &path, Some(&spec), &key).await?;
    let id = started["id"].as_u64().unwrap_or(0);
    let phase = text(&started["phase"], "");
    if phase == "provisioning" {
        println!(
            "deployment {id} of {} started: stack {} version {}",
            args.service, started["stack"], started["version"]
        );
    } else {
        println!(
            "deployment {id} of {} (started before with this idempotency key) is {}",
            args.service,
            text(&started["label"], phase)
        );
    }
    if !args.wait {
        return Ok(EXIT_SUCCEEDED);
    }
    follow::follow(&client, &args.conn, &args.service, id, clock).await
}

/// A dry run's answer: each phase with its weights and pause, then what was verified.
fn print_plan(plan: &Value) {
    println!(
        "dry run: deployment of stack {} version {} to {} ({}); nothing changed",
        text(&plan["stack"], "?"),
        text(&plan["version"], "?"),
        text(&plan["service"], "?"),
        text(&plan["strategy"], "?")
    );
    for p in items(&plan["phases"]) {
        let mut line = format!(
            "  {:<18} {}",
            text(&p["label"], "?"),
            text(&p["detail"], "")
        );
        if p["weights"].is_object() {
            line.push_str(&format!("  weights: {}", weights_text(&p["weights"])));
        }
        if let Some(pause) = p["pause"].as_str() {
            line.push_str(&format!("  then pause {pause}"));
        }
        println!("{line}");
    }
    for v in items(&plan["verified"]) {
        println!("  verified: {}", text(v, ""));
    }
}
