use super::*;
use crate::deploy::plan::validate;
use crate::deploy::record::{Before, DeploymentRecord};
use crate::deploy::spec::DeploymentSpec;
use crate::store::Origin;

const NOW: &str = "2030-01-01T00:00:00Z";

fn spec(strategy: serde_json::Value, post: bool) -> DeploymentSpec {
    let mut v = serde_json::json!({
        "stack": "green", "version": "v2",
        "source": {"endpoints": ["127.0.0.1:9003"]},
        "strategy": strategy,
        "pre_integration": [{"http": {"path": "/health"}}],
        "retire_previous": {"after": "0s"},
    });
    if post {
        v["post_integration"] = serde_json::json!([{"http": {"path": "/"}}]);
    }
    serde_json::from_value(v).expect("valid shape")
}

fn record(spec: DeploymentSpec) -> DeploymentRecord {
    let before: raw::Service = serde_json::from_value(serde_json::json!({
        "name": "web", "listeners": ["public"],
        "stacks": [{"name": "blue", "version": "v1", "weight": 100, "endpoints": ["127.0.0.1:9001"]}]
    }))
    .expect("valid service");
    DeploymentRecord {
        id: 1,
        service: "web".into(),
        spec,
        created_by: "ci".into(),
        created_at: NOW.into(),
        updated_at: NOW.into(),
        finished_at: None,
        phase: Phase::Provisioning,
        step: 0,
        waiting: Waiting::Work,
        paused: false,
        pending: false,
        retire_started: false,
        epoch: 0,
        weights: BTreeMap::new(),
        before: Before {
            revision: 1,
            origin: Origin::File,
            spec: before,
            promotions: BTreeMap::new(),
        },
        stack: None,
        units: Vec::new(),
        checks: Vec::new(),
        reason: None,
        left: None,
        log: Vec::new(),
        webhooks: Vec::new(),
        analysis: Default::default(),
        standby: None,
        undone_by: None,
        undo_of: None,
    }
}

struct Run {
    rec: DeploymentRecord,
    plan: Plan,
}

impl Run {
    fn new(strategy: serde_json::Value, post: bool) -> Self {
        let spec = spec(strategy, post);
        let plan = validate(&spec).expect("valid plan");
        Self {
            rec: record(spec),
            plan,
        }
    }

    fn on(&mut self, event: Event) -> Vec<Action> {
        let (rec, actions) = step(&self.rec, &self.plan, event, NOW).expect("accepted");
        self.rec = rec;
        actions
    }

    fn command(&mut self, c: Command) -> Result<Vec<Action>, Refusal> {
        let (rec, actions) = step(&self.rec, &self.plan, Event::Command(c), NOW)?;
        self.rec = rec;
        Ok(actions)
    }

    fn stack() -> raw::Stack {
        serde_json::from_value(
            serde_json::json!({"name": "green", "version": "v2", "endpoints": ["127.0.0.1:9003"]}),
        )
        .expect("valid stack")
    }

    /// Drives a fresh deployment up to its first shift.
    fn drive_to_shifting(&mut self) -> Vec<Action> {
        assert_eq!(
            self.on(Event::Begin { resumed: false }),
            vec![Action::Provision]
        );
        assert_eq!(
            self.on(Event::Provisioned(Box::new(Self::stack()))),
            vec![Action::Register(Box::new(Self::stack()))]
        );
        assert_eq!(self.on(Event::Registered), vec![Action::WaitHealthy]);
        assert_eq!(self.on(Event::Healthy), vec![Action::Check { post: false }]);
        self.on(passed())
    }
}

fn passed() -> Event {
    Event::Checked {
        results: Vec::new(),
        passed: true,
    }
}

fn weights(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
    pairs.iter().map(|(n, w)| ((*n).to_owned(), *w)).collect()
}

#[test]
fn blue_green_runs_through_every_phase_to_succeeded() {
    let mut r = Run::new(serde_json::json!({"blue_green": {}}), true);
    let a = r.drive_to_shifting();
    assert_eq!(
        a,
        vec![Action::SetWeights(weights(&[("blue", 0), ("green", 100)]))]
    );
    assert_eq!(r.rec.phase_label(1), "shifting(1/1)");
    assert_eq!(r.on(Event::WeightsSet), vec![Action::Check { post: true }]);
    assert_eq!(r.on(passed()), vec![Action::Timer(Duration::ZERO)]);
    assert_eq!(r.rec.phase, Phase::Retiring);
    assert_eq!(r.on(Event::TimerFired), vec![Action::Retire]);
    assert!(r.rec.retire_started);
    assert_eq!(r.on(Event::Retired { left: None }), vec![]);
    assert_eq!(r.rec.phase, Phase::Succeeded);
    assert!(r.rec.finished_at.is_some());
}

#[test]
fn canary_waits_for_its_timer_and_for_promote_at_a_manual_step() {
    let mut r = Run::new(
        serde_json::json!({"canary": {"steps": [{"weight": 10, "pause": "30s"}, {"weight": 50, "pause": "manual"}, {"weight": 100}]}}),
        false,
    );
    assert_eq!(
        r.drive_to_shifting(),
        vec![Action::SetWeights(weights(&[("blue", 90), ("green", 10)]))]
    );
    assert_eq!(
        r.on(Event::WeightsSet),
        vec![Action::Timer(Duration::from_secs(30))]
    );
    assert!(
        r.command(Command::Promote).is_ok(),
        "a timed pause may be cut short"
    );
    assert_eq!(r.rec.step, 1);
    assert_eq!(r.on(Event::WeightsSet), vec![]);
    assert_eq!(r.rec.waiting, Waiting::Promote);
    let a = r
        .command(Command::Promote)
        .expect("promote at a manual step");
    assert_eq!(
        a,
        vec![Action::SetWeights(weights(&[("blue", 0), ("green", 100)]))]
    );
    assert_eq!(r.on(Event::WeightsSet), vec![Action::Timer(Duration::ZERO)]);
}

#[test]
fn a_failed_check_rolls_back_and_a_stale_event_changes_nothing() {
    let mut r = Run::new(serde_json::json!({"blue_green": {}}), false);
    r.on(Event::Begin { resumed: false });
    r.on(Event::Provisioned(Box::new(Run::stack())));
    r.on(Event::Registered);
    r.on(Event::Healthy);
    let failed = CheckResult {
        phase: "pre_integration".into(),
        name: "http GET /health".into(),
        passed: false,
        detail: "status 500, expected 200".into(),
        at: NOW.into(),
    };
    let a = r.on(Event::Checked {
        results: vec![failed],
        passed: false,
    });
    assert_eq!(a, vec![Action::RollBack]);
    assert_eq!(r.rec.phase, Phase::RollingBack);
    assert!(r.rec.reason.as_deref().unwrap_or("").contains("status 500"));
    assert_eq!(r.on(Event::Healthy), vec![]);
    assert_eq!(r.rec.phase, Phase::RollingBack);
    r.on(Event::RolledBack);
    assert_eq!(r.rec.phase, Phase::RolledBack);
    assert!(r.command(Command::Abort { by: "ops".into() }).is_err());
}

#[test]
fn pause_holds_the_advance_until_resume() {
    let mut r = Run::new(serde_json::json!({"blue_green": {}}), false);
    r.on(Event::Begin { resumed: false });
    r.on(Event::Provisioned(Box::new(Run::stack())));
    r.on(Event::Registered);
    r.command(Command::Pause).expect("pause");
    assert_eq!(r.on(Event::Healthy), vec![]);
    assert!(r.rec.pending);
    assert_eq!(r.rec.phase, Phase::WaitingHealthy);
    assert_eq!(
        r.command(Command::Resume).expect("resume"),
        vec![Action::Check { post: false }]
    );
}

#[test]
fn abort_is_refused_once_retirement_began() {
    let mut r = Run::new(serde_json::json!({"blue_green": {}}), false);
    r.drive_to_shifting();
    r.on(Event::WeightsSet);
    assert_eq!(r.rec.phase, Phase::Retiring);
    r.on(Event::TimerFired);
    let refused = r.command(Command::Abort { by: "ops".into() });
    assert!(refused.is_err());
}

#[test]
fn a_restart_waits_for_health_then_resumes_the_step_and_rolls_back_only_a_provisioning_process_deployment()
 {
    let mut r = Run::new(
        serde_json::json!({"canary": {"steps": [{"weight": 20, "pause": "manual"}, {"weight": 100}]}}),
        false,
    );
    r.drive_to_shifting();
    r.on(Event::WeightsSet);
    // Before the fix the step's work ran at once, before the new stack was healthy again.
    let a = r.on(Event::Begin { resumed: true });
    assert_eq!(a, vec![Action::WaitHealthy]);
    assert_eq!(r.rec.waiting, Waiting::Health);
    assert!(
        r.command(Command::Promote).is_err(),
        "no promote while waiting for health"
    );
    let a = r.on(Event::Healthy);
    assert_eq!(
        a,
        vec![Action::SetWeights(weights(&[("blue", 80), ("green", 20)]))]
    );
    assert_eq!(r.rec.phase, Phase::Shifting);
    r.on(Event::WeightsSet);
    assert_eq!(r.rec.waiting, Waiting::Promote);

    // A process deployment past provisioning resumes the same way (its replicas are
    // re-adopted at start).
    r.plan.process = true;
    let a = r.on(Event::Begin { resumed: true });
    assert_eq!(a, vec![Action::WaitHealthy]);
    let a = r.on(Event::Failed("endpoints not healthy within 1s".into()));
    assert_eq!(a, vec![Action::RollBack]);

    let mut p = Run::new(serde_json::json!({"blue_green": {}}), false);
    p.plan.process = true;
    p.on(Event::Begin { resumed: false });
    let a = p.on(Event::Begin { resumed: true });
    assert_eq!(a, vec![Action::RollBack]);
    assert!(
        p.rec
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("restarted during provisioning")
    );
}

fn gated(strategy: serde_json::Value, gates: serde_json::Value) -> Run {
    let mut s = spec(strategy, false);
    s.gates = serde_json::from_value(gates).expect("gates");
    let plan = validate(&s).expect("valid plan");
    Run {
        rec: record(s),
        plan,
    }
}

fn window(step: &str) -> Box<crate::deploy::analysis::AnalysisWindow> {
    Box::new(crate::deploy::analysis::AnalysisWindow {
        at: NOW.into(),
        step: step.into(),
        seconds: 1.0,
        new: Default::default(),
        baseline: Default::default(),
        verdict: String::new(),
        detail: String::new(),
    })
}

fn judged(step: &str, verdict: Verdict) -> Event {
    Event::Analysed {
        window: window(step),
        verdict,
        ended: tokio::time::Instant::now(),
    }
}

#[test]
fn a_gate_holds_the_step_until_approved_and_promote_passes_it() {
    let mut r = gated(
        serde_json::json!({"canary": {"steps": [{"weight": 10}, {"weight": 50}, {"weight": 100}]}}),
        serde_json::json!([{"before": "step:2", "url": "http://127.0.0.1:9/"}, {"before": "promote", "url": "http://127.0.0.1:9/p"}]),
    );
    r.drive_to_shifting();
    assert_eq!(r.on(Event::WeightsSet), vec![Action::Gate]);
    assert_eq!((r.rec.step, r.rec.waiting), (0, Waiting::Gate));
    let epoch = r.rec.epoch;
    assert_eq!(
        r.on(Event::GateApproved),
        vec![Action::SetWeights(weights(&[("blue", 50), ("green", 50)]))]
    );
    assert!(r.rec.epoch > epoch);
    assert_eq!(r.rec.step, 1);
    // No gate before step 3; one before retiring, which promote passes.
    assert_eq!(
        r.on(Event::WeightsSet),
        vec![Action::SetWeights(weights(&[("blue", 0), ("green", 100)]))]
    );
    assert_eq!(r.on(Event::WeightsSet), vec![Action::Gate]);
    assert_eq!(r.rec.phase, Phase::Shifting);
    let a = r.command(Command::Promote).expect("promote passes a gate");
    assert_eq!(a, vec![Action::Timer(Duration::ZERO)]);
    assert_eq!(r.rec.phase, Phase::Retiring);
}

#[test]
fn a_rejected_gate_rolls_back_and_a_restart_asks_it_again() {
    let mut r = gated(
        serde_json::json!({"blue_green": {}}),
        serde_json::json!([{"before": "shift", "url": "http://127.0.0.1:9/"}]),
    );
    r.on(Event::Begin { resumed: false });
    r.on(Event::Provisioned(Box::new(Run::stack())));
    r.on(Event::Registered);
    r.on(Event::Healthy);
    assert_eq!(r.on(passed()), vec![Action::Gate]);
    // Restarted while waiting: the phase's work is redone, then the gate is asked again.
    let mut restarted = Run {
        rec: r.rec.clone(),
        plan: r.plan.clone(),
    };
    assert_eq!(
        restarted.on(Event::Begin { resumed: true }),
        vec![Action::WaitHealthy]
    );
    assert_eq!(
        restarted.on(Event::Healthy),
        vec![Action::Check { post: false }]
    );
    assert_eq!(restarted.on(passed()), vec![Action::Gate]);
    let a = r.on(Event::Failed("gate shift rejected: no".into()));
    assert_eq!(a, vec![Action::RollBack]);
    assert!(
        r.rec
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("rejected: no")
    );
}

#[test]
fn gates_must_name_a_step_of_the_strategy() {
    let mut s = spec(serde_json::json!({"blue_green": {}}), false);
    s.gates = serde_json::from_value(serde_json::json!([
        {"before": "step:2", "url": "http://127.0.0.1:9/"},
        {"before": "later", "url": "https://x/"},
        {"before": "shift", "url": "http://h/", "timeout": "25h"},
    ]))
    .expect("gates");
    let problems = validate(&s).expect_err("invalid").join("\n");
    assert!(problems.contains("gates[0].before"), "{problems}");
    assert!(problems.contains("gates[1].before"), "{problems}");
    assert!(problems.contains("gates[1].url"), "{problems}");
    assert!(problems.contains("gates[2].timeout"), "{problems}");
}

#[test]
fn with_analysis_a_step_advances_only_after_a_passing_window_and_a_failing_one_rolls_back() {
    let strategy = serde_json::json!({"canary": {"steps": [{"weight": 20}, {"weight": 50}, {"weight": 100}],
        "analysis": {"interval": "1s", "max_error_rate": 0.01, "failure_limit": 1}}});
    let mut r = Run::new(strategy, false);
    r.drive_to_shifting();
    assert_eq!(r.on(Event::WeightsSet), vec![Action::Analyse]);
    assert_eq!(
        r.rec.waiting,
        Waiting::Analysis,
        "no pause, but no pass yet"
    );
    let a = r.on(judged(
        "1/3",
        Verdict::Inconclusive("too few requests".into()),
    ));
    assert_eq!(a, vec![]);
    let a = r.on(judged("1/3", Verdict::Pass("ok".into())));
    assert_eq!(
        a,
        vec![Action::SetWeights(weights(&[("blue", 50), ("green", 50)]))]
    );
    assert_eq!(r.on(Event::WeightsSet), vec![Action::Analyse]);
    let a = r.on(judged(
        "2/3",
        Verdict::Fail("error rate 0.31 > 0.01 over 412 requests in 10s".into()),
    ));
    assert_eq!(a, vec![Action::RollBack]);
    assert_eq!(
        r.rec.reason.as_deref(),
        Some("analysis failed at 2/3: error rate 0.31 > 0.01 over 412 requests in 10s")
    );
    let verdicts: Vec<&str> = r
        .rec
        .analysis
        .windows
        .iter()
        .map(|w| w.verdict.as_str())
        .collect();
    assert_eq!(verdicts, ["inconclusive", "pass", "fail"]);
}

#[test]
fn a_dry_run_neither_holds_a_step_nor_rolls_back() {
    let strategy = serde_json::json!({"canary": {"steps": [{"weight": 20, "pause": "manual"}, {"weight": 100}],
        "analysis": {"max_error_rate": 0.01, "dry_run": true}}});
    let mut r = Run::new(strategy, false);
    r.drive_to_shifting();
    assert_eq!(r.on(Event::WeightsSet), vec![Action::Analyse]);
    assert_eq!(r.on(judged("1/2", Verdict::Fail("bad".into()))), vec![]);
    assert_eq!(r.rec.phase, Phase::Shifting);
    assert_eq!(r.rec.analysis.failures, 1);
    assert_eq!(
        r.command(Command::Promote).expect("promote"),
        vec![Action::SetWeights(weights(&[("blue", 0), ("green", 100)]))]
    );
    // At 100 % with no pause: no gate, straight on.
    assert_eq!(
        r.on(Event::WeightsSet),
        vec![Action::Analyse, Action::Timer(Duration::ZERO)]
    );
}

#[test]
fn a_success_with_retire_after_keeps_the_previous_stack_as_standby_until_then() {
    let mut r = Run::new(serde_json::json!({"blue_green": {}}), false);
    r.plan.retire_after = Duration::from_secs(600);
    r.drive_to_shifting();
    assert_eq!(r.on(Event::WeightsSet), vec![]);
    assert_eq!(r.rec.phase, Phase::Succeeded);
    let standby = r.rec.standby.clone().expect("standby");
    assert_eq!(standby.stacks, ["blue"]);
    assert_eq!(standby.until, "2030-01-01T00:10:00Z");
}

#[test]
fn a_shadow_step_mirrors_then_clears_the_setting_before_the_first_weight_step() {
    let strategy = serde_json::json!({"canary": {
        "steps": [{"shadow": {"percent": 20, "duration": "30s"}}, {"weight": 100}],
        "analysis": {"max_error_rate": 0.01}}});
    let mut r = Run::new(strategy, false);
    let a = r.drive_to_shifting();
    assert_eq!(r.rec.phase, Phase::Shadowing);
    let Some(Action::SetShadow(Some(setting))) = a.first() else {
        panic!("{a:?}");
    };
    assert_eq!((setting.stack.as_str(), setting.percent), ("green", 20));
    assert_eq!(
        r.on(Event::ShadowSet),
        vec![Action::Analyse, Action::Timer(Duration::from_secs(30))]
    );
    assert_eq!(r.on(Event::TimerFired), vec![]);
    assert_eq!(r.rec.waiting, Waiting::Analysis);
    let a = r.on(judged("shadow", Verdict::Pass("ok".into())));
    assert_eq!(
        a,
        vec![
            Action::SetShadow(None),
            Action::SetWeights(weights(&[("blue", 0), ("green", 100)]))
        ]
    );
    assert_eq!(r.rec.phase_label(1), "shifting(1/1)");

    let strategy = serde_json::json!({"blue_green": {
        "shadow": {"percent": 20, "duration": "30s"}, "analysis": {"max_error_rate": 0.01}}});
    let mut r = Run::new(strategy, false);
    r.drive_to_shifting();
    r.on(Event::ShadowSet);
    let a = r.on(judged(
        "shadow",
        Verdict::Fail("error rate 1 > 0.01".into()),
    ));
    assert_eq!(a, vec![Action::RollBack]);
    assert_eq!(
        r.rec.reason.as_deref(),
        Some("analysis failed at shadow: error rate 1 > 0.01")
    );
}
