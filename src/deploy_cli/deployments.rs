//! `switchyard deployments list|show|logs|watch`: the deployment records the API keeps, and
//! following one (through [`follow`](super::follow), as `deploy --wait` does).
//!
//! Deployment ids count per service; without `--service`, `show`, `logs` and `watch` look the
//! id up in every service the token may read and refuse an id several services have.

use serde_json::{Value, json};

use super::client::{Client, Connection};
use super::render::{items, log_text, state_text, text, verdict_text, window_figures};
use super::{CliError, DeploymentsCommand, EXIT_SUCCEEDED, Output, Which, follow};

/// Analysis windows `show` prints, the latest.
const SHOWN_WINDOWS: usize = 5;

pub(super) async fn run(command: DeploymentsCommand) -> Result<u8, CliError> {
    match command {
        DeploymentsCommand::List {
            conn,
            service,
            output,
        } => list(&conn, service.as_deref(), output).await,
        DeploymentsCommand::Show { which, output } => {
            let (_, view) = find(&which).await?;
            match output {
                Output::Json => println!("{view}"),
                Output::Text => print_view(&view),
            }
            Ok(EXIT_SUCCEEDED)
        }
        DeploymentsCommand::Logs { which, output } => {
            let (_, view) = find(&which).await?;
            match output {
                Output::Json => println!(
                    "{}",
                    json!({"service": view["service"], "id": view["id"], "log": view["log"]})
                ),
                Output::Text => {
                    for l in items(&view["log"]) {
                        println!("{}", log_text(l));
                    }
                }
            }
            Ok(EXIT_SUCCEEDED)
        }
        DeploymentsCommand::Watch { which } => {
            let clock = tokio::time::Instant::now();
            let (client, view) = find(&which).await?;
            let service = text(&view["service"], "").to_owned();
            println!(
                "deployment {} of {service}: stack {} version {}, started by {} at {}",
                which.id,
                text(&view["stack"], "?"),
                text(&view["version"], "?"),
                text(&view["created_by"], "?"),
                text(&view["created_at"], "?"),
            );
            follow::follow(&client, &which.conn, &service, which.id, clock).await
        }
    }
}

/// The names of the services the token may read.
async fn services(client: &Client) -> Result<Vec<String>, CliError> {
    let list = client.json("GET", "/v1/services", None).await?;
    Ok(items(&list["services"])
        .iter()
        .map(|s| text(&s["name"], "").to_owned())
        .collect())
}

/// The deployment `which` names, and the client that found it.
async fn find(which: &Which) -> Result<(Client, Value), CliError> {
    let client = Client::new(&which.conn)?;
    let id = which.id;
    if let Some(s) = &which.service {
        let view = client
            .json("GET", &format!("/v1/services/{s}/deployments/{id}"), None)
            .await?;
        return Ok((client, view));
    }
    let mut found = Vec::new();
    for s in services(&client).await? {
        match client
            .json("GET", &format!("/v1/services/{s}/deployments/{id}"), None)
            .await
        {
            Ok(view) => found.push(view),
            // Not this service's, or one the token may not read.
            Err(CliError::Api {
                status: 403 | 404, ..
            }) => {}
            Err(e) => return Err(e),
        }
    }
    match found.len() {
        1 => Ok((client, found.remove(0))),
        0 => Err(CliError::Usage(format!("no service has a deployment {id}"))),
        _ => {
            let names: Vec<&str> = found.iter().map(|v| text(&v["service"], "?")).collect();
            Err(CliError::Usage(format!(
                "services {} each have a deployment {id}: pass --service",
                names.join(", ")
            )))
        }
    }
}

/// `deployments list`: one service's, or every service's newest first.
async fn list(conn: &Connection, only: Option<&str>, output: Output) -> Result<u8, CliError> {
    let client = Client::new(conn)?;
    let names = match only {
        Some(s) => vec![s.to_owned()],
        None => services(&client).await?,
    };
    let mut all = Vec::new();
    for name in &names {
        let list = client
            .json("GET", &format!("/v1/services/{name}/deployments"), None)
            .await?;
        for d in items(&list["deployments"]) {
            let mut d = d.clone();
            d["service"] = json!(name);
            all.push(d);
        }
    }
    // Newest first across services (RFC 3339 UTC times of one format sort as text).
    all.sort_by(|a, b| {
        text(&b["created_at"], "")
            .cmp(text(&a["created_at"], ""))
            .then_with(|| b["id"].as_u64().cmp(&a["id"].as_u64()))
    });
    if output == Output::Json {
        println!("{}", json!({ "deployments": all }));
        return Ok(EXIT_SUCCEEDED);
    }
    println!(
        "{:>4}  {:<14} {:<12} {:<10} {:<16} {:<10} {:<31} outcome",
        "id", "service", "stack", "version", "phase", "by", "started"
    );
    for d in &all {
        let outcome = match (d["reason"].as_str(), d["undo_of"].as_u64()) {
            (Some(r), _) => r.to_owned(),
            (None, Some(u)) => format!("undid deployment {u}"),
            (None, None) => text(&d["finished_at"], "").to_owned(),
        };
        println!(
            "{:>4}  {:<14} {:<12} {:<10} {:<16} {:<10} {:<31} {outcome}",
            d["id"].to_string(),
            text(&d["service"], "?"),
            text(&d["stack"], "?"),
            text(&d["version"], "?"),
            text(&d["label"], "?"),
            text(&d["created_by"], "?"),
            text(&d["created_at"], "?"),
        );
    }
    Ok(EXIT_SUCCEEDED)
}

/// `deployments show` as text.
fn print_view(v: &Value) {
    let service = text(&v["service"], "?");
    println!(
        "deployment {} of {service}: stack {} version {}",
        v["id"],
        text(&v["stack"], "?"),
        text(&v["version"], "?")
    );
    println!("  state: {}", state_text(v, service));
    println!(
        "  started by {} at {}; updated {}; finished {}",
        text(&v["created_by"], "?"),
        text(&v["created_at"], "?"),
        text(&v["updated_at"], "?"),
        text(&v["finished_at"], "-")
    );
    if let Some(r) = v["reason"].as_str() {
        println!("  reason: {r}");
    }
    if let Some(l) = v["left"].as_str() {
        println!("  left: {l}");
    }
    let endpoints: Vec<&str> = items(&v["endpoints"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if !endpoints.is_empty() {
        println!("  endpoints: {}", endpoints.join(" "));
    }
    for r in items(&v["replicas"]) {
        let who = match (r["pid"].as_u64(), r["container"].as_str()) {
            (_, Some(c)) => format!("container {c}"),
            (Some(pid), None) => format!("pid {pid}"),
            (None, None) => "-".to_owned(),
        };
        println!("  replica {} {who}", text(&r["endpoint"], "?"));
    }
    for c in items(&v["checks"]) {
        println!(
            "  check {} {}: {} ({})",
            text(&c["phase"], "?"),
            text(&c["name"], "?"),
            if c["passed"] == true {
                "passed"
            } else {
                "FAILED"
            },
            text(&c["detail"], "")
        );
    }
    let windows = items(&v["analysis"]);
    for w in &windows[windows.len().saturating_sub(SHOWN_WINDOWS)..] {
        println!("  {} (at {})", verdict_text(w), text(&w["at"], "?"));
        for line in window_figures(w) {
            println!("    {line}");
        }
    }
    for h in items(&v["webhooks"]) {
        println!(
            "  webhook {}: {} delivered, {} failed, {} dropped{}",
            text(&h["url"], "?"),
            h["delivered"],
            h["failed"],
            h["dropped"],
            h["last_error"]
                .as_str()
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default()
        );
    }
    if let Some(s) = v["standby"].as_object() {
        let stacks: Vec<&str> = items(&s["stacks"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        println!(
            "  previous {} kept at weight 0 until {}",
            stacks.join(", "),
            text(&s["until"], "?")
        );
    }
    if let Some(u) = v["undo_of"].as_u64() {
        println!("  undid deployment {u}");
    }
    if let Some(u) = v["undone_by"].as_u64() {
        println!("  undone by deployment {u}");
    }
    println!(
        "  log: {} lines (switchyard deployments logs {} --service {service})",
        items(&v["log"]).len(),
        v["id"]
    );
}
