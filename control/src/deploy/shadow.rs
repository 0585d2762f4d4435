//! The shadow step of a deployment: before any user request reaches the new stack, a copy of a
//! share of the live requests goes to it as well, for a while, and its answers are judged.
//!
//! The proxy mirrors while the service's desired state carries a shadow setting naming the
//! new stack (`raw::Service.shadow`); the driver sets it when the step begins and clears it
//! when the step ends, both through the writer like any change. A rollback restores the service
//! as it was, without the setting. This module validates the step ([`step`]); the copies'
//! answers are counted on the new stack, so analysis judges them like a canary's.

use std::time::Duration;

use switchyard_config::{
    MAX_PERIOD, MAX_SHADOW_BODY, parse_duration_at_most, parse_size_at_most, raw,
};

use super::spec::{DeploymentSpec, ShadowStepSpec, StrategySpec};

/// A validated shadow step: the setting to apply and how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShadowStep {
    pub(crate) setting: raw::Shadow,
    pub(crate) duration: Duration,
}

/// The shadow step of `spec` (the first canary step, or the blue-green strategy's `shadow`),
/// checked in full; every problem names its field.
pub(crate) fn step(spec: &DeploymentSpec, problems: &mut Vec<String>) -> Option<ShadowStep> {
    let (field, s) = match &spec.strategy {
        StrategySpec::BlueGreen {
            shadow: Some(s), ..
        } => ("strategy.blue_green.shadow".to_owned(), s),
        StrategySpec::Canary { steps, .. } => {
            let (i, s) = steps
                .iter()
                .enumerate()
                .find_map(|(i, st)| st.shadow.as_ref().map(|s| (i, s)))?;
            (format!("strategy.canary.steps[{i}].shadow"), s)
        }
        StrategySpec::BlueGreen { shadow: None, .. } | StrategySpec::Rolling(_) => return None,
    };
    validate(&field, s, &spec.stack, problems)
}

fn validate(
    field: &str,
    s: &ShadowStepSpec,
    stack: &str,
    problems: &mut Vec<String>,
) -> Option<ShadowStep> {
    let before = problems.len();
    if !(1..=100).contains(&s.percent) {
        problems.push(format!(
            "{field}.percent: {} out of range: expected 1 to 100",
            s.percent
        ));
    }
    let duration = match parse_duration_at_most(&s.duration, MAX_PERIOD) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            problems.push(format!("{field}.duration: expected a positive duration"));
            Duration::ZERO
        }
        Err(e) => {
            problems.push(format!("{field}.duration: {e}"));
            Duration::ZERO
        }
    };
    if let Some(methods) = &s.methods {
        if methods.is_empty() {
            problems.push(format!(
                "{field}.methods: expected at least one method, e.g. [\"GET\"]"
            ));
        }
        for (i, m) in methods.iter().enumerate() {
            if http::Method::from_bytes(m.as_bytes()).is_err() {
                problems.push(format!("{field}.methods[{i}]: {m:?} is not an HTTP method"));
            }
        }
    }
    if let Some(b) = &s.max_body {
        if let Err(e) = parse_size_at_most(b, MAX_SHADOW_BODY) {
            problems.push(format!("{field}.max_body: {e}"));
        }
    }
    (problems.len() == before).then(|| ShadowStep {
        setting: raw::Shadow {
            stack: stack.to_owned(),
            percent: s.percent,
            methods: s.methods.clone(),
            max_body: s.max_body.clone(),
        },
        duration,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(strategy: serde_json::Value) -> DeploymentSpec {
        serde_json::from_value(serde_json::json!({
            "stack": "green", "version": "v2", "source": {"endpoints": ["127.0.0.1:1"]},
            "strategy": strategy
        }))
        .expect("shape")
    }

    #[test]
    fn a_shadow_step_names_the_new_stack_and_every_bad_field() {
        let mut problems = Vec::new();
        let s = step(
            &spec(serde_json::json!({"canary": {"steps": [
                {"shadow": {"percent": 20, "duration": "30s", "methods": ["GET", "POST"]}},
                {"weight": 100}]}})),
            &mut problems,
        )
        .expect("valid");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(s.setting.stack, "green");
        assert_eq!(s.setting.percent, 20);
        assert_eq!(s.duration, Duration::from_secs(30));

        let s = step(
            &spec(
                serde_json::json!({"blue_green": {"shadow": {"percent": 0, "duration": "0s",
                "methods": ["G ET"], "max_body": "2MiB"}}}),
            ),
            &mut problems,
        );
        assert!(s.is_none());
        let all = problems.join("\n");
        for f in [
            "strategy.blue_green.shadow.percent: 0 out of range",
            "strategy.blue_green.shadow.duration",
            "strategy.blue_green.shadow.methods[0]",
            "strategy.blue_green.shadow.max_body",
        ] {
            assert!(all.contains(f), "{f} missing in {all}");
        }
    }

    #[test]
    fn a_shadow_step_comes_first_and_alone() {
        let spec = spec(serde_json::json!({"canary": {"steps": [
            {"weight": 10}, {"shadow": {"percent": 20, "duration": "30s"}, "pause": "1s"}, {"weight": 100}]}}));
        let problems = super::super::plan::validate(&spec).expect_err("invalid");
        assert_eq!(
            problems,
            vec![
                "strategy.canary.steps[1].shadow: a shadow step stands alone (no weight, no pause) before the first weight step"
            ]
        );
    }
}
