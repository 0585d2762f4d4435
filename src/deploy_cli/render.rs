//! The text forms of the API's JSON that several commands print: weights, a deployment's state
//! line, analysis windows, log lines. Pure functions of the JSON; nothing is printed here.

use serde_json::Value;

/// The items of a JSON array (none when `v` is not one).
pub(super) fn items(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// A string field, or `default`.
pub(super) fn text<'a>(v: &'a Value, default: &'a str) -> &'a str {
    v.as_str().unwrap_or(default)
}

/// A weights object, `blue=75 green=25`.
pub(super) fn weights_text(v: &Value) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, w)| format!("{k}={w}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// The weights of a service view's stacks, `blue=100 green=0`.
pub(super) fn live_weights(svc: &Value) -> String {
    items(&svc["stacks"])
        .iter()
        .map(|s| format!("{}={}", text(&s["name"], "?"), s["weight"]))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A deployment view as the progress line shows it, without the time: the label, what it
/// waits for (with the command that continues it) and the weights.
pub(super) fn state_text(v: &Value, service: &str) -> String {
    let paused = if v["paused"].as_bool() == Some(true) {
        format!(" paused (continue: switchyard resume --service {service})")
    } else {
        String::new()
    };
    let gate = match v["gate"].as_object() {
        Some(g) => format!(
            " (waiting at gate {}: {} answers 200, up to {}; pass it: switchyard promote --service {service})",
            text(&g["before"], "?"),
            text(&g["url"], "?"),
            text(&g["timeout"], "?")
        ),
        None => String::new(),
    };
    let waiting = match v["step"]["waiting"].as_str() {
        Some("promote") => {
            format!(" (waiting for promote: switchyard promote --service {service})")
        }
        Some("timer") => " (pause)".to_owned(),
        Some("analysis") => " (waiting for a passing analysis window)".to_owned(),
        _ => String::new(),
    };
    let weights = weights_text(&v["weights"]);
    let weights = if weights.is_empty() {
        weights
    } else {
        format!("  weights: {weights}")
    };
    format!("{}{gate}{waiting}{paused}{weights}", text(&v["label"], "?"))
}

/// One analysis window's verdict, `analysis 2/4: fail: error rate 0.31 > 0.01 ...`.
pub(super) fn verdict_text(w: &Value) -> String {
    format!(
        "analysis {}: {}: {}",
        text(&w["step"], "?"),
        text(&w["verdict"], "?"),
        text(&w["detail"], "")
    )
}

/// One side's figures of a window: `412 requests, 127 errors (error rate 0.3083), p99 45.0ms`.
fn figures_text(f: &Value) -> String {
    let p99 = f["p99"]
        .as_f64()
        .map_or_else(|| "-".to_owned(), |s| format!("{:.1}ms", s * 1000.0));
    format!(
        "{} requests, {} errors (error rate {:.4}), p99 {p99}",
        f["requests"],
        f["errors"],
        f["error_rate"].as_f64().unwrap_or(0.0)
    )
}

/// A window's figures on two lines: the new stack's and the previous stacks' (baseline).
pub(super) fn window_figures(w: &Value) -> [String; 2] {
    let seconds = w["seconds"].as_f64().unwrap_or(0.0);
    [
        format!("new stack over {seconds:.1}s: {}", figures_text(&w["new"])),
        format!("previous stacks: {}", figures_text(&w["baseline"])),
    ]
}

/// A log line, `TIME [SOURCE] LINE`.
pub(super) fn log_text(l: &Value) -> String {
    format!(
        "{} [{}] {}",
        text(&l["time"], ""),
        text(&l["source"], ""),
        text(&l["line"], "")
    )
}

/// Whether a deployment phase is final.
pub(super) fn terminal(phase: &str) -> bool {
    matches!(phase, "succeeded" | "rolled_back" | "failed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn failing_window_shows_both_sides() {
        let w = json!({"at": "t", "step": "1/2", "seconds": 10.0, "verdict": "fail",
            "detail": "error rate 0.5 > 0.01",
            "new": {"requests": 20, "errors": 10, "error_rate": 0.5, "p99": 0.0123},
            "baseline": {"requests": 180, "errors": 0, "error_rate": 0.0, "p99": null}});
        assert_eq!(
            verdict_text(&w),
            "analysis 1/2: fail: error rate 0.5 > 0.01"
        );
        assert_eq!(
            window_figures(&w),
            [
                "new stack over 10.0s: 20 requests, 10 errors (error rate 0.5000), p99 12.3ms",
                "previous stacks: 180 requests, 0 errors (error rate 0.0000), p99 -"
            ]
        );
    }
}
