use super::*;
use crate::endpoint::EndpointKey;
use crate::select;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use switchyard_config::Endpoint;

fn spec(failures: u32, base_s: u64, max_s: u64, percent: u32) -> OutlierSpec {
    OutlierSpec {
        enabled: true,
        consecutive_failures: failures,
        base_ejection: Duration::from_secs(base_s),
        max_ejection: Duration::from_secs(max_s),
        max_ejection_percent: percent,
    }
}

fn stack(n: u16, o: &OutlierSpec, slow_start: Option<Duration>) -> Vec<Arc<EndpointState>> {
    let policy = Arc::new(StackPolicy::default());
    policy.update(o, slow_start, usize::from(n));
    (0..n)
        .map(|i| {
            let endpoint = Endpoint::parse(&format!("127.0.0.1:{}", 1000 + i)).expect("valid");
            let key = EndpointKey {
                service: "app".into(),
                stack: "blue".into(),
                addr: endpoint.socket_addr().expect("ip"),
                endpoint,
            };
            Arc::new(EndpointState::new(
                key,
                crate::endpoint::Health::Healthy,
                1,
                1,
                policy.clone(),
                false,
                1,
            ))
        })
        .collect()
}

fn fail(ep: &EndpointState, times: u32) {
    for _ in 0..times {
        ep.record(false);
    }
}

#[tokio::test(start_paused = true)]
async fn ejection_time_grows_with_each_ejection_in_a_row_up_to_the_maximum() {
    let eps = stack(2, &spec(2, 10, 25, 50), None);
    let ep = &eps[0];
    fail(ep, 1);
    assert_eq!(ep.health(), Health::Healthy, "one failure is not enough");
    let mut seen = Vec::new();
    for _ in 0..3 {
        fail(ep, 2);
        assert_eq!(ep.health(), Health::Ejected);
        assert!(!ep.is_available());
        let left = ep.outlier.remaining_ms(ep.now_ms());
        seen.push(left);
        tokio::time::advance(Duration::from_millis(left - 1)).await;
        assert!(!ep.is_available(), "not back before its time");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(ep.is_available(), "back when its time is up");
        assert_eq!(ep.consecutive_failures(), 0);
    }
    assert_eq!(seen, vec![10_000, 20_000, 25_000]);
    assert_eq!(ep.outlier.total(), 3);
    assert_eq!(ep.policy().ejected(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_streak_ends_after_staying_in_for_the_longest_ejection() {
    let eps = stack(2, &spec(1, 10, 30, 50), None);
    let ep = &eps[0];
    fail(ep, 1);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(ep.is_available());
    tokio::time::advance(Duration::from_secs(31)).await;
    fail(ep, 1);
    assert_eq!(ep.outlier.remaining_ms(ep.now_ms()), 10_000);
}

#[tokio::test(start_paused = true)]
async fn the_cap_holds_and_frees_when_an_endpoint_returns() {
    let eps = stack(4, &spec(2, 10, 10, 50), None);
    for ep in &eps[..3] {
        fail(ep, 2);
    }
    let ejected: Vec<Health> = eps.iter().map(|e| e.health()).collect();
    assert_eq!(
        ejected,
        vec![
            Health::Ejected,
            Health::Ejected,
            Health::Healthy,
            Health::Healthy
        ]
    );
    assert_eq!(eps[0].policy().ejected(), 2);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(eps[0].is_available());
    // The third endpoint still fails: its next failure may now take the freed place.
    fail(&eps[2], 1);
    assert_eq!(eps[2].health(), Health::Ejected);
    assert_eq!(eps[0].policy().ejected(), 2);
}

#[tokio::test(start_paused = true)]
async fn disabled_detection_never_ejects_and_a_dropped_endpoint_frees_its_place() {
    let off = OutlierSpec {
        enabled: false,
        ..spec(1, 10, 10, 100)
    };
    let eps = stack(2, &off, None);
    fail(&eps[0], 50);
    assert_eq!(eps[0].health(), Health::Healthy);

    let mut eps = stack(2, &spec(1, 10, 10, 100), None);
    fail(&eps[0], 1);
    let policy_of = eps[1].clone();
    assert_eq!(policy_of.policy().ejected(), 1);
    drop(eps.remove(0));
    assert_eq!(policy_of.policy().ejected(), 0);
}

fn picks(eps: &[Arc<EndpointState>], cursor: &AtomicUsize, n: usize) -> usize {
    (0..n)
        .filter(|_| {
            let e = select::round_robin(eps, cursor, false).expect("an endpoint");
            Arc::ptr_eq(e, &eps[0])
        })
        .count()
}

#[tokio::test(start_paused = true)]
async fn a_ramping_endpoint_share_grows_linearly_over_the_window() {
    let eps = stack(2, &spec(5, 30, 300, 50), Some(Duration::from_secs(10)));
    let cursor = AtomicUsize::new(0);
    eps[0].start_ramp();
    assert_eq!(
        picks(&eps, &cursor, 1000),
        0,
        "nothing at the start of the ramp"
    );
    assert_eq!(eps[0].ramp_per_mille(), 0);
    tokio::time::advance(Duration::from_secs(5)).await;
    // Half-way: it takes its turn with probability 1/2, so a quarter of all requests.
    let half = picks(&eps, &cursor, 4000);
    assert!((800..1200).contains(&half), "{half} of 4000");
    assert_eq!(eps[0].ramp_per_mille(), 500);
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(
        picks(&eps, &cursor, 1000),
        500,
        "full share when the window is over"
    );
    assert_eq!(eps[0].ramp_per_mille(), 1000);
}

#[tokio::test(start_paused = true)]
async fn ramping_endpoints_alone_still_take_the_stack_traffic() {
    let eps = stack(2, &spec(5, 30, 300, 50), Some(Duration::from_secs(10)));
    for e in &eps {
        e.start_ramp();
    }
    let cursor = AtomicUsize::new(0);
    // Every request gets an endpoint (`picks` expects one): the first available from the
    // cursor, so the two still alternate.
    assert_eq!(picks(&eps, &cursor, 100), 50);
    for _ in 0..100 {
        assert!(select::least_request(&eps, &cursor).is_some());
    }
}

#[tokio::test(start_paused = true)]
async fn huge_ejection_time_keeps_the_endpoint_out_instead_of_overflowing() {
    let huge = OutlierSpec {
        base_ejection: Duration::MAX,
        max_ejection: Duration::MAX,
        ..spec(1, 1, 1, 100)
    };
    let eps = stack(1, &huge, None);
    let ep = &eps[0];
    tokio::time::advance(Duration::from_secs(5)).await;
    fail(ep, 1);
    assert_eq!(ep.health(), Health::Ejected);
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert!(!ep.is_available(), "an ejection without end stays ejected");
    assert_eq!(ep.outlier.total(), 1);
}
