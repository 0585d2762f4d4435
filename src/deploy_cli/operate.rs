//! The operator's commands on a running deployment (`promote`, `pause`, `resume`, `abort`) and
//! `rollback` of a service's latest successful one.

use super::client::{Client, Connection};
use super::render::{items, state_text, terminal, text, weights_text};
use super::{CliError, EXIT_SUCCEEDED, Target};

/// `promote`, `pause`, `resume` or `abort` (`word`) of the target deployment.
pub(super) async fn operate(t: Target, word: &str) -> Result<u8, CliError> {
    let client = Client::new(&t.conn)?;
    let base = format!("/v1/services/{}/deployments", t.service);
    let id = match t.id {
        Some(id) => id,
        None => {
            let list = client.json("GET", &base, None).await?;
            items(&list["deployments"])
                .iter()
                .find(|d| !terminal(text(&d["phase"], "")))
                .and_then(|d| d["id"].as_u64())
                .ok_or_else(|| {
                    CliError::Usage(format!("no deployment of {} in progress", t.service))
                })?
        }
    };
    let v = client
        .json("POST", &format!("{base}/{id}/{word}"), None)
        .await?;
    println!("deployment {id}: {}", state_text(&v, &t.service));
    Ok(EXIT_SUCCEEDED)
}

/// `POST /v1/services/{service}/rollback`.
pub(super) async fn rollback(conn: &Connection, service: &str) -> Result<u8, CliError> {
    let client = Client::new(conn)?;
    let v = client
        .json("POST", &format!("/v1/services/{service}/rollback"), None)
        .await?;
    let id = v["id"].as_u64().unwrap_or(0);
    let undone = v["undo_of"].as_u64().unwrap_or(0);
    if v["phase"] == "succeeded" {
        println!(
            "deployment {id}: rolled back deployment {undone}; weights: {}",
            weights_text(&v["weights"])
        );
    } else {
        println!(
            "deployment {id}: re-deploying stack {} version {} to roll back deployment {undone}: {}",
            text(&v["stack"], "?"),
            text(&v["version"], "?"),
            state_text(&v, service)
        );
        println!("follow it: switchyard deployments watch {id} --service {service}");
    }
    Ok(EXIT_SUCCEEDED)
}
