//! The deployment body built from `switchyard deploy`'s flags (and `--spec`).

use serde_json::{Value, json};

use super::{CliError, DeployArgs};

/// Parses `5:60s,25:60s,50:manual,100` into canary steps.
fn canary_steps(text: &str) -> Result<Value, CliError> {
    let mut steps = Vec::new();
    for part in text.split(',') {
        let (weight, pause) = match part.split_once(':') {
            Some((w, p)) => (w, Some(p)),
            None => (part, None),
        };
        let weight: i64 = weight.trim().parse().map_err(|_| {
            CliError::Usage(format!("--canary {text}: {part:?} is not WEIGHT[:PAUSE]"))
        })?;
        let mut step = json!({"weight": weight});
        if let Some(p) = pause {
            step["pause"] = json!(p.trim());
        }
        steps.push(step);
    }
    Ok(json!({"canary": {"steps": steps}}))
}

/// Groups `GET /health=200` (one value, or the method and the rest as two) into checks.
/// Every malformed value is refused with the expected form, naming `flag`.
fn checks(flag: &str, values: &[String]) -> Result<Vec<Value>, CliError> {
    let bad = |v: &str| {
        CliError::Usage(format!(
            "{flag} {v:?}: expected [METHOD] PATH=STATUS, e.g. \"/health=200\" or \"POST /warm=204\""
        ))
    };
    let is_method = |m: &str| !m.is_empty() && m.bytes().all(|c| c.is_ascii_alphabetic());
    let mut out = Vec::new();
    let mut method: Option<&str> = None;
    for v in values {
        let v = v.trim();
        let (m, rest) = match v.split_once(' ') {
            Some((m, rest)) if method.is_none() => (Some(m), rest.trim()),
            None if is_method(v) && method.is_none() => {
                method = Some(v);
                continue;
            }
            None => (method.take(), v),
            Some(_) => return Err(bad(&format!("{} {v}", method.unwrap_or_default()))),
        };
        if m.is_some_and(|m| !is_method(m)) {
            return Err(bad(v));
        }
        let (path, status) = rest.split_once('=').unwrap_or((rest, "200"));
        let path = path.trim();
        if !path.starts_with('/') || path.contains(char::is_whitespace) {
            return Err(bad(v));
        }
        let status: u16 = status
            .trim()
            .parse()
            .ok()
            .filter(|s| (100..=599).contains(s))
            .ok_or_else(|| bad(v))?;
        let method = m.unwrap_or("GET").to_ascii_uppercase();
        out.push(json!({"http": {"method": method, "path": path, "expect_status": status}}));
    }
    if let Some(m) = method {
        return Err(bad(m));
    }
    Ok(out)
}

/// Parses `BEFORE=URL[,timeout=D][,interval=D]` into a gate.
fn gate(text: &str) -> Result<Value, CliError> {
    let bad = || {
        CliError::Usage(format!(
            "--gate {text}: expected BEFORE=URL[,timeout=D][,interval=D], e.g. \"step:2=http://ci.internal/approve,timeout=10m\""
        ))
    };
    let (before, rest) = text.split_once('=').ok_or_else(bad)?;
    let mut parts = rest.split(',');
    let url = parts.next().filter(|u| !u.is_empty()).ok_or_else(bad)?;
    let mut gate = json!({"before": before.trim(), "url": url.trim()});
    for p in parts {
        match p.split_once('=') {
            Some(("timeout", d)) => gate["timeout"] = json!(d.trim()),
            Some(("interval", d)) => gate["interval"] = json!(d.trim()),
            _ => return Err(bad()),
        }
    }
    Ok(gate)
}

/// Parses `URL[,events=PATTERN]...[,secret_env=VAR]` into a webhook.
fn webhook(text: &str) -> Result<Value, CliError> {
    let bad = || {
        CliError::Usage(format!(
            "--webhook {text}: expected URL[,events=PATTERN]...[,secret_env=VAR], e.g. \"http://hooks.internal/deploy,events=deployment.rolled_back\""
        ))
    };
    let mut parts = text.split(',');
    let url = parts
        .next()
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(bad)?;
    let mut hook = json!({"url": url.trim()});
    let mut events = Vec::new();
    for p in parts {
        match p.split_once('=') {
            Some(("events", e)) if !e.trim().is_empty() => events.push(json!(e.trim())),
            Some(("secret_env", v)) if !v.trim().is_empty() => hook["secret_env"] = json!(v.trim()),
            _ => return Err(bad()),
        }
    }
    if !events.is_empty() {
        hook["events"] = json!(events);
    }
    Ok(hook)
}

/// Parses `PERCENT:DURATION` into a shadow step.
fn shadow(text: &str) -> Result<Value, CliError> {
    let bad = || {
        CliError::Usage(format!(
            "--shadow {text}: expected PERCENT:DURATION, e.g. \"10:30s\""
        ))
    };
    let (percent, duration) = text.split_once(':').ok_or_else(bad)?;
    let percent: i64 = percent.trim().parse().map_err(|_| bad())?;
    if duration.trim().is_empty() {
        return Err(bad());
    }
    Ok(json!({"percent": percent, "duration": duration.trim()}))
}

/// `--shadow` into the strategy: a blue-green's `shadow`, or a canary's first step.
fn add_shadow(step: Value, spec: &mut Value) -> Result<(), CliError> {
    if spec.get("strategy").is_none() {
        spec["strategy"] = json!({"blue_green": {}});
    }
    let strategy = &mut spec["strategy"];
    if let Some(bg) = strategy
        .get_mut("blue_green")
        .and_then(Value::as_object_mut)
    {
        bg.insert("shadow".into(), step);
        return Ok(());
    }
    if let Some(steps) = strategy
        .get_mut("canary")
        .and_then(|c| c.get_mut("steps"))
        .and_then(Value::as_array_mut)
    {
        steps.retain(|s| s.get("shadow").is_none());
        steps.insert(0, json!({ "shadow": step }));
        return Ok(());
    }
    Err(CliError::Usage(
        "--shadow goes before a blue-green cutover or a canary's steps, not a rolling update"
            .to_owned(),
    ))
}

/// The `--analysis-*` flags into the canary's (or the shadowing blue-green's) `analysis`.
fn analysis(args: &DeployArgs, spec: &mut Value) -> Result<(), CliError> {
    let baseline = [
        (
            "max_error_rate_increase",
            args.analysis_max_error_rate_increase.map(|v| json!(v)),
        ),
        (
            "max_p99_ratio",
            args.analysis_max_p99_ratio.map(|v| json!(v)),
        ),
    ];
    let mut fields = vec![
        (
            "interval",
            args.analysis_interval.as_ref().map(|v| json!(v)),
        ),
        ("min_requests", args.analysis_min_requests.map(|v| json!(v))),
        (
            "max_error_rate",
            args.analysis_max_error_rate.map(|v| json!(v)),
        ),
        ("max_p99", args.analysis_max_p99.as_ref().map(|v| json!(v))),
        (
            "failure_limit",
            args.analysis_failure_limit.map(|v| json!(v)),
        ),
        (
            "max_inconclusive",
            args.analysis_max_inconclusive.map(|v| json!(v)),
        ),
        (
            "on_inconclusive",
            args.analysis_on_inconclusive.as_ref().map(|v| json!(v)),
        ),
        ("dry_run", args.analysis_dry_run.then_some(json!(true))),
    ];
    if baseline.iter().any(|(_, v)| v.is_some()) {
        let b: serde_json::Map<String, Value> = baseline
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
            .collect();
        fields.push(("baseline", Some(Value::Object(b))));
    }
    if fields.iter().all(|(_, v)| v.is_none()) {
        return Ok(());
    }
    let strategy = spec.get_mut("strategy");
    let judged = strategy.and_then(|s| {
        let shadowing = s
            .get("blue_green")
            .is_some_and(|b| b.get("shadow").is_some());
        if shadowing {
            s.get_mut("blue_green")
        } else {
            s.get_mut("canary")
        }
    });
    let Some(judged) = judged.and_then(Value::as_object_mut) else {
        return Err(CliError::Usage(
            "--analysis-* judges canary steps or a shadow step: pass --canary or --shadow (or such a strategy in --spec)"
                .to_owned(),
        ));
    };
    let analysis = judged.entry("analysis").or_insert_with(|| json!({}));
    for (k, v) in fields {
        if let Some(v) = v {
            analysis[k] = v;
        }
    }
    Ok(())
}

pub(super) fn body(args: &DeployArgs) -> Result<Value, CliError> {
    let mut spec = match &args.spec {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
            serde_json::from_str(&text)
                .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?
        }
        None => json!({}),
    };
    if let Some(s) = &args.stack {
        spec["stack"] = json!(s);
    }
    if let Some(v) = &args.version {
        spec["version"] = json!(v);
    }
    let mut env = serde_json::Map::new();
    for kv in &args.env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--env {kv}: expected KEY=VALUE")))?;
        env.insert(k.to_owned(), json!(v));
    }
    if let Some(image) = &args.image {
        let mut c = json!({"image": image, "replicas": args.replicas.unwrap_or(1), "env": env});
        if let Some(p) = args.port {
            c["port"] = json!(p);
        }
        if let Some(p) = &args.pull {
            c["pull"] = json!(p);
        }
        if let Some(h) = &args.health {
            c["health"] = json!(h);
        }
        spec["source"] = json!({ "container": c });
    } else if let Some(p) = &args.process {
        let command: Vec<&str> = p.split_whitespace().collect();
        spec["source"] = json!({"process": {"command": command, "replicas": args.replicas.unwrap_or(1), "env": env}});
    } else if !args.endpoints.is_empty() {
        spec["source"] = json!({ "endpoints": args.endpoints });
    }
    if let Some(c) = &args.canary {
        spec["strategy"] = canary_steps(c)?;
    } else if args.blue_green {
        spec["strategy"] = json!({"blue_green": {}});
    } else if args.rolling_batch_size.is_some()
        || args.rolling_interval.is_some()
        || args.start_first.is_some()
    {
        let mut rolling = serde_json::Map::new();
        if let Some(n) = args.rolling_batch_size {
            rolling.insert("batch_size".into(), json!(n));
        }
        if let Some(d) = &args.rolling_interval {
            rolling.insert("interval".into(), json!(d));
        }
        if let Some(b) = args.start_first {
            rolling.insert("start_first".into(), json!(b));
        }
        spec["strategy"] = json!({ "rolling": rolling });
        // The stack keeps its replica count unless --replicas says otherwise.
        if args.replicas.is_none() {
            for kind in ["process", "container"] {
                if let Some(p) = spec["source"][kind].as_object_mut() {
                    p.remove("replicas");
                }
            }
        }
    }
    if let Some(text) = &args.shadow {
        add_shadow(shadow(text)?, &mut spec)?;
    }
    if !args.gates.is_empty() {
        let gates: Result<Vec<Value>, CliError> = args.gates.iter().map(|g| gate(g)).collect();
        spec["gates"] = json!(gates?);
    }
    if !args.pre_checks.is_empty() {
        spec["pre_integration"] = json!(checks("--pre-check", &args.pre_checks)?);
    }
    if !args.post_checks.is_empty() {
        spec["post_integration"] = json!(checks("--post-check", &args.post_checks)?);
    }
    if !args.webhooks.is_empty() {
        let hooks: Result<Vec<Value>, CliError> =
            args.webhooks.iter().map(|w| webhook(w)).collect();
        spec["webhooks"] = json!(hooks?);
    }
    if let Some(t) = &args.healthy_timeout {
        spec["healthy_timeout"] = json!(t);
    }
    analysis(args, &mut spec)?;
    if let Some(a) = &args.retire_after {
        spec["retire_previous"]["after"] = json!(a);
    }
    if let Some(d) = &args.drain_timeout {
        spec["retire_previous"]["drain_timeout"] = json!(d);
    }
    for field in ["stack", "version", "source"] {
        if spec.get(field).is_none() {
            return Err(CliError::Usage(format!(
                "missing {field}: pass --{field} (or --process/--endpoint for source), or --spec"
            )));
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests;
