use super::*;
use switchyard_config::Quantiles;

/// `ok` 2xx and `bad` 5xx answers over 10 s with a p99 of `p99_ms`.
fn fig(ok: u64, bad: u64, p99_ms: Option<f64>) -> Figures {
    let n = ok + bad;
    Figures {
        seconds: 10.0,
        requests: n,
        responses: [ok, 0, 0, bad],
        error_rate: if n > 0 { bad as f64 / n as f64 } else { 0.0 },
        latency: Quantiles {
            p99: p99_ms.map(|m| m / 1000.0),
            ..Quantiles::default()
        },
        ..Figures::default()
    }
}

fn spec(v: serde_json::Value) -> Analysis {
    let spec: AnalysisSpec = serde_json::from_value(v).expect("shape");
    let mut problems = Vec::new();
    validate("analysis", &spec, &mut problems).unwrap_or_else(|| panic!("{problems:?}"))
}

#[test]
fn judge_table() {
    let absolute =
        spec(serde_json::json!({"min_requests": 50, "max_error_rate": 0.01, "max_p99": "300ms"}));
    let relative = spec(serde_json::json!({"min_requests": 50,
        "baseline": {"max_error_rate_increase": 0.005, "max_p99_ratio": 1.5}}));
    let both = spec(
        serde_json::json!({"min_requests": 50, "max_error_rate": 0.5,
        "baseline": {"max_error_rate_increase": 0.005}}),
    );
    let idle = fig(0, 0, None);
    #[rustfmt::skip]
    let cases: Vec<(&str, &Analysis, Figures, Figures, &str, &str)> = vec![
        ("healthy", &absolute, fig(412, 0, Some(20.0)), idle.clone(), "pass",
            "error rate 0 <= 0.01, p99 20ms <= 300ms over 412 requests in 10s"),
        ("30 % errors", &absolute, fig(284, 128, Some(20.0)), idle.clone(), "fail",
            "error rate 0.3107 > 0.01 over 412 requests in 10s"),
        ("slow", &absolute, fig(100, 0, Some(900.0)), idle.clone(), "fail",
            "p99 900ms > 300ms over 100 requests in 10s"),
        ("too few requests", &absolute, fig(12, 0, Some(5.0)), idle.clone(), "inconclusive",
            "too few requests: 12 < 50 in 10s"),
        ("too few and all failing is still inconclusive", &absolute, fig(0, 10, Some(5.0)),
            idle.clone(), "inconclusive", "too few requests: 10 < 50 in 10s"),
        ("no latency", &absolute, fig(60, 0, None), idle.clone(), "inconclusive",
            "no latency measured over 60 requests in 10s"),
        ("as good as the baseline", &relative, fig(99, 1, Some(30.0)), fig(99, 1, Some(25.0)),
            "pass", "error rate 0.01 vs baseline 0.01 (+0) <= +0.005, p99 30ms vs baseline 25ms (1.20x) <= 1.5x over 100 requests in 10s"),
        ("worse than the baseline", &relative, fig(90, 10, Some(80.0)), fig(100, 0, Some(25.0)),
            "fail", "error rate 0.1 vs baseline 0 (+0.1) > +0.005, p99 80ms vs baseline 25ms (3.20x) > 1.5x over 100 requests in 10s"),
        ("no baseline and only relative bounds", &relative, fig(100, 0, Some(5.0)), fig(3, 0, Some(5.0)),
            "inconclusive", "baseline has too few requests: 3 < 50 in 10s"),
        ("no baseline but an absolute bound", &both, fig(100, 0, Some(5.0)), idle.clone(),
            "pass", "error rate 0 <= 0.5, baseline not compared (0 requests) over 100 requests in 10s"),
    ];
    for (name, spec, window, baseline, verdict, detail) in cases {
        let v = judge(&window, &baseline, spec);
        assert_eq!((v.as_str(), v.detail()), (verdict, detail), "{name}");
    }
}

#[test]
fn proxy_errors_count_as_errors() {
    let spec = spec(serde_json::json!({"min_requests": 10, "max_error_rate": 0.1}));
    let mut f = fig(8, 0, Some(1.0));
    f.proxy_errors.insert("connect-failed".into(), 2);
    f.error_rate = 0.2;
    let v = judge(&f, &Figures::default(), &spec);
    assert_eq!(
        v,
        Verdict::Fail("error rate 0.2 > 0.1 over 10 requests in 10s".into())
    );
}

fn window(step: &str) -> AnalysisWindow {
    AnalysisWindow {
        at: "2030-01-01T00:00:00Z".into(),
        step: step.into(),
        seconds: 10.0,
        new: WindowFigures::default(),
        baseline: WindowFigures::default(),
        verdict: String::new(),
        detail: String::new(),
    }
}

/// A name, the analysis, and each window's verdict with what it must lead to.
type TallyCase<'a> = (&'a str, serde_json::Value, Vec<(&'a Verdict, Outcome)>);

#[test]
fn tally_table() {
    let fail = Verdict::Fail("error rate 0.31 > 0.01 over 412 requests in 10s".into());
    let pass = Verdict::Pass("ok".into());
    let none = Verdict::Inconclusive("too few requests: 3 < 50 in 10s".into());
    let rb = |s: &str| Outcome::RollBack(s.to_owned());
    #[rustfmt::skip]
    let cases: Vec<TallyCase<'_>> = vec![
        ("the first failure rolls back", serde_json::json!({"max_error_rate": 0.01}),
            vec![(&fail, rb("analysis failed at 1/2: error rate 0.31 > 0.01 over 412 requests in 10s"))]),
        ("failure_limit counts every failing window", serde_json::json!({"max_error_rate": 0.01, "failure_limit": 2}),
            vec![(&fail, Outcome::Wait), (&pass, Outcome::Pass),
                 (&fail, rb("analysis failed at 1/2: error rate 0.31 > 0.01 over 412 requests in 10s"))]),
        ("dry run never rolls back", serde_json::json!({"max_error_rate": 0.01, "dry_run": true}),
            vec![(&fail, Outcome::Wait), (&fail, Outcome::Wait), (&pass, Outcome::Pass)]),
        ("inconclusive waits, then fails", serde_json::json!({"max_error_rate": 0.01, "max_inconclusive": 2}),
            vec![(&none, Outcome::Wait),
                 (&none, rb("analysis inconclusive at 1/2 for 2 windows in a row: too few requests: 3 < 50 in 10s"))]),
        ("a conclusive window resets the inconclusive run", serde_json::json!({"max_error_rate": 0.01, "max_inconclusive": 2}),
            vec![(&none, Outcome::Wait), (&pass, Outcome::Pass), (&none, Outcome::Wait)]),
        ("inconclusive may pass", serde_json::json!({"max_error_rate": 0.01, "max_inconclusive": 1, "on_inconclusive": "pass"}),
            vec![(&none, Outcome::Pass)]),
    ];
    for (name, spec_json, seq) in cases {
        let spec = spec(spec_json);
        let mut rec = AnalysisRecord::default();
        for (i, (verdict, expected)) in seq.into_iter().enumerate() {
            let out = tally(&mut rec, &spec, window("1/2"), verdict);
            assert_eq!(out, expected, "{name}: window {i}");
        }
        assert_eq!(
            rec.windows.last().map(|w| w.verdict.is_empty()),
            Some(false),
            "{name}"
        );
    }
}

#[test]
fn invalid_analysis_names_every_field() {
    let spec: AnalysisSpec = serde_json::from_value(serde_json::json!({
        "interval": "10ms", "min_requests": 0, "max_error_rate": 1.5,
        "baseline": {"max_p99_ratio": 0.5}, "failure_limit": 0, "on_inconclusive": "maybe"
    }))
    .expect("shape");
    let mut problems = Vec::new();
    assert!(validate("strategy.canary.analysis", &spec, &mut problems).is_none());
    let all = problems.join("\n");
    for field in [
        "analysis.interval: \"10ms\" is too short",
        "analysis.min_requests",
        "analysis.max_error_rate: 1.5 out of range",
        "analysis.baseline.max_p99_ratio",
        "analysis.failure_limit: 0 out of range",
        "analysis.on_inconclusive",
    ] {
        assert!(all.contains(field), "{field} missing in {all}");
    }
    let empty: AnalysisSpec = serde_json::from_value(serde_json::json!({})).expect("shape");
    let mut problems = Vec::new();
    assert!(validate("a", &empty, &mut problems).is_none());
    assert_eq!(
        problems,
        vec![
            "a: expected at least one bound: max_error_rate, max_p99, baseline.max_error_rate_increase or baseline.max_p99_ratio"
        ]
    );
}
