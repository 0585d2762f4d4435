use super::*;

const MS: Duration = Duration::from_millis(1);

#[test]
fn causes_are_indexed_in_order() {
    for (i, c) in Cause::ALL.iter().enumerate() {
        assert_eq!(c.index(), i, "{c:?}");
    }
}

#[test]
fn bounds_are_increasing_and_hold_every_prometheus_bound() {
    assert!(BOUNDS_US.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(BOUNDS_US[0], 100);
    assert_eq!(BOUNDS_US[45], 10_000_000);
    for b in PROMETHEUS_BOUNDS_US {
        assert!(BOUNDS_US.contains(&b), "{b}");
    }
}

#[test]
fn latencies_land_in_le_buckets() {
    let h = Histogram::default();
    let mine = Mine::get();
    h.record(mine, Duration::from_micros(100)); // exactly the first bound: bucket 0
    h.record(mine, Duration::from_micros(101)); // just above: bucket 1 (<= 150)
    h.record(mine, Duration::from_secs(11)); // overflow
    let mut c = [0; LATENCY_BUCKETS];
    assert_eq!(h.add_to(&mut c), 100 + 101 + 11_000_000);
    assert_eq!(c[0], 1);
    assert_eq!(c[1], 1);
    assert_eq!(c[LATENCY_BUCKETS - 1], 1);
    assert_eq!(c.iter().sum::<u64>(), 3);
}

#[test]
fn quantiles_interpolate_inside_the_bucket() {
    let mut b = [0u64; LATENCY_BUCKETS];
    // 100 values in (40 ms, 50 ms]: index of the 50 ms bound.
    let i = BOUNDS_US.iter().position(|&x| x == 50_000).unwrap();
    b[i] = 100;
    let q = quantiles(&b);
    assert_eq!(q.p50, Some(0.045));
    assert_eq!(q.p99, Some(0.0499));
    assert_eq!(quantiles(&[0; LATENCY_BUCKETS]).p50, None);
    // One slow request in a hundred moves p99, not p50.
    b[i] = 98;
    b[LATENCY_BUCKETS - 1] = 2;
    let q = quantiles(&b);
    assert!(q.p50.unwrap() < 0.05);
    assert_eq!(q.p99, Some(10.0));
}

#[tokio::test(start_paused = true)]
async fn figures_count_exactly_by_class_and_cause() {
    let s = StackStats::new(2);
    for i in 0..10u16 {
        s.record_request();
        let status = if i < 7 { 200 } else { 503 };
        s.record_status(usize::from(i % 2), status, 3 * MS);
        s.record_done(5 * MS, 100);
    }
    for _ in 0..2 {
        s.record_request();
        s.record_failure(0, Cause::ConnectFailed, MS);
    }
    s.record_bytes_in(42);
    tokio::time::advance(Duration::from_secs(2)).await;
    let f = s.figures(Window::Last10s, Instant::now());
    assert_eq!(f.requests, 12);
    assert_eq!(f.responses, [7, 0, 0, 3]);
    assert_eq!(f.proxy_errors.get("connect-failed"), Some(&2));
    assert_eq!(f.completed(), 12);
    assert_eq!(f.error_rate, 5.0 / 12.0);
    assert_eq!(f.bytes_in, 42);
    assert_eq!(f.bytes_out, 1000);
    assert_eq!(f.seconds, 2.0);
    assert_eq!(f.request_rate, 6.0);
    // Headers at 3 ms (10 of 12) and errors at 1 ms; totals at 5 ms.
    assert!(f.headers_latency.p50.unwrap() > 0.0025 && f.headers_latency.p50.unwrap() <= 0.003);
    assert!(f.latency.p99.unwrap() > 0.004 && f.latency.p99.unwrap() <= 0.005);
    // Per listener: odd requests went to listener 1.
    assert_eq!(s.classes(1), [0, 3, 0, 0, 2]);
    assert_eq!(s.errors(1)[Cause::ConnectFailed.index()], 0);
    // A stale listener index counts on the first listener.
    s.record_status(7, 404, MS);
    assert_eq!(s.classes(0)[3], 1);
}

#[tokio::test(start_paused = true)]
async fn windows_roll_over_at_whole_seconds() {
    let s = StackStats::new(1);
    let tick = |s: &StackStats| s.tick(Instant::now());
    // 5 requests in the first second, then one each second after.
    for _ in 0..5 {
        s.record_request();
        s.record_status(0, 500, MS);
    }
    for _ in 0..10 {
        tokio::time::advance(Duration::from_secs(1)).await;
        tick(&s);
    }
    // 10 ticks: the 10 s window still reaches back to the start.
    let f = s.figures(Window::Last10s, Instant::now());
    assert_eq!((f.requests, f.responses[3]), (5, 5));
    assert_eq!(f.error_rate, 1.0);
    tokio::time::advance(Duration::from_secs(1)).await;
    tick(&s);
    s.record_request();
    s.record_status(0, 200, MS);
    // 11 ticks: the first second has left the 10 s window, not the 1 min one.
    let f = s.figures(Window::Last10s, Instant::now());
    assert_eq!((f.requests, f.responses), (1, [1, 0, 0, 0]));
    assert_eq!(f.error_rate, 0.0);
    assert_eq!(f.seconds, 10.0);
    let f = s.figures(Window::Last1m, Instant::now());
    assert_eq!((f.requests, f.responses), (6, [1, 0, 0, 5]));
    assert_eq!(f.seconds, 11.0);
    // 5 minutes later nothing is left in any window, and the ring stays bounded.
    for _ in 0..400 {
        tokio::time::advance(Duration::from_secs(1)).await;
        tick(&s);
    }
    assert_eq!(s.ring().len(), RING);
    for w in Window::ALL {
        let f = s.figures(w, Instant::now());
        assert_eq!(f.requests, 0, "{w:?}");
        assert_eq!(f.latency.p99, None);
        assert_eq!(f.seconds, w.seconds() as f64);
    }
}

#[test]
fn counts_from_more_threads_than_shards_add_up_exactly() {
    // More threads than owned shards: some count in a shard of their own, the rest share the
    // last one; every count must be there.
    let s = Arc::new(StackStats::new(2));
    let threads = 2 * shard::owned() + 3;
    let per = 5_000u64;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..per {
                    s.record_request();
                    s.record_status(t % 2, if i % 10 == 0 { 503 } else { 200 }, 3 * MS);
                    s.record_done(5 * MS, 10);
                    s.record_bytes_in(1);
                    s.record_connect(MS);
                }
                s.record_failure(0, Cause::ConnectFailed, MS);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let n = threads as u64 * per;
    assert_eq!(s.requests(), n);
    let classes: u64 = (0..2).map(|l| s.classes(l).iter().sum::<u64>()).sum();
    assert_eq!(classes, n);
    assert_eq!(s.classes(0)[4] + s.classes(1)[4], n / 10);
    assert_eq!(s.errors(0)[Cause::ConnectFailed.index()], threads as u64);
    assert_eq!(s.bytes(), (n, 10 * n));
    assert_eq!(s.headers().counts.iter().sum::<u64>(), n + threads as u64);
    assert_eq!(s.total().counts.iter().sum::<u64>(), n + threads as u64);
    assert_eq!(s.connect().counts.iter().sum::<u64>(), n);
    assert_eq!((s.connect().sum_seconds * 1e6).round() as u64, n * 1_000);
}
