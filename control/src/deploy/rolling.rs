//! Rolling updates of a `process` or `container` stack: its replicas replaced batch by batch
//! with replicas of the new version, inside the same stack (the Rancher upgrade model).
//!
//! The request names the live stack (`stack`) and the new version's source (of the stack's
//! kind); the
//! replica count stays the stack's (filled in from its record when absent). The plan has one
//! step per batch (`shifting(k/n)` in views, `percent` the share of new replicas after it) with
//! the batch interval as the pause after each but the last, so pause/resume/abort, gates
//! (`step:N`) and the step log work as for a canary. A batch (driver `rolling`): start the
//! batch's new replicas (with `start_first`, before any old one stops), wait until they
//! accept connections, add them to the stack, wait until the proxy's health check finds them
//! healthy, take the old ones out of the stack, let their requests finish, stop them. The
//! first batch is started while provisioning, so the pre-integration checks reach it
//! directly before it takes traffic; post-integration checks run through the public
//! listener at the end. While it rolls, the stack's `version` shows the mix (`v1.3 ×2,
//! v1.4 ×2`). A rollback starts the old replicas again on their endpoints (from the source's
//! record, unchanged until the end), puts the stack back exactly, and stops the new ones.

mod admit;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_config::{MAX_PERIOD, parse_duration_at_most};
use utoipa::ToSchema;

use super::plan::{Pause, Step};

/// Default time between two batches.
const INTERVAL: Duration = Duration::from_secs(5);

/// `"strategy": {"rolling": {...}}`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollingSpec {
    /// Replicas replaced at a time (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 64)]
    pub batch_size: Option<u32>,
    /// Time between two batches (default `5s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Start a batch's new replicas, and wait until they are healthy, before stopping old ones
    /// (default true: capacity never dips); false stops old ones first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_first: Option<bool>,
}

/// A validated rolling update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rolling {
    pub(crate) batch_size: usize,
    pub(crate) replicas: usize,
    pub(crate) start_first: bool,
}

impl Rolling {
    /// The replica indexes batch `k` (0-based) replaces.
    pub(crate) fn batch(&self, k: usize) -> std::ops::Range<usize> {
        let start = (k * self.batch_size).min(self.replicas);
        start..(start + self.batch_size).min(self.replicas)
    }

    /// Number of batches.
    pub(crate) fn batches(&self) -> usize {
        self.replicas.div_ceil(self.batch_size)
    }
}

/// Checks a rolling strategy for `replicas` replicas (`None`: neither a process nor a
/// container source) and
/// builds its steps; every problem names its field.
pub(crate) fn validate(
    spec: &RollingSpec,
    replicas: Option<u32>,
    problems: &mut Vec<String>,
) -> Option<(Rolling, Vec<Step>)> {
    let Some(replicas) = replicas else {
        problems.push("strategy.rolling: rolling updates replace process or container replicas: expected a \"process\" or \"container\" source".to_owned());
        return None;
    };
    let batch_size = spec.batch_size.unwrap_or(1);
    if !(1..=64).contains(&batch_size) {
        problems.push(format!(
            "strategy.rolling.batch_size: {batch_size} out of range: expected 1 to 64"
        ));
        return None;
    }
    let interval = match spec
        .interval
        .as_deref()
        .map(|i| parse_duration_at_most(i, MAX_PERIOD))
    {
        None => INTERVAL,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            problems.push(format!("strategy.rolling.interval: {e}"));
            return None;
        }
    };
    let rolling = Rolling {
        batch_size: batch_size as usize,
        replicas: replicas.max(1) as usize,
        start_first: spec.start_first.unwrap_or(true),
    };
    let n = rolling.batches();
    let steps = (0..n)
        .map(|k| Step {
            percent: u32::try_from(rolling.batch(k).end * 100 / rolling.replicas)
                .expect("at most 100"),
            pause: if k + 1 < n && !interval.is_zero() {
                Pause::For(interval)
            } else {
                Pause::None
            },
        })
        .collect();
    Some((rolling, steps))
}

/// The stack's `version` while it rolls: `v1.3 ×2, v1.4 ×2` (the old version first).
pub(crate) fn mixed_version(old: &str, old_count: usize, new: &str, new_count: usize) -> String {
    match (old_count, new_count) {
        (_, 0) => old.to_owned(),
        (0, _) => new.to_owned(),
        _ => {
            let mix = format!("{old} ×{old_count}, {new} ×{new_count}");
            // A version label is at most 128 bytes: long versions show the majority's.
            if mix.len() <= 128 {
                mix
            } else if new_count >= old_count {
                new.to_owned()
            } else {
                old.to_owned()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_replica_once() {
        let spec = RollingSpec {
            batch_size: Some(3),
            interval: Some("1s".into()),
            start_first: None,
        };
        let mut problems = Vec::new();
        let (r, steps) = validate(&spec, Some(7), &mut problems).expect("valid");
        assert!(problems.is_empty());
        assert_eq!(r.batches(), 3);
        assert_eq!((r.batch(0), r.batch(1), r.batch(2)), (0..3, 3..6, 6..7));
        let percents: Vec<u32> = steps.iter().map(|s| s.percent).collect();
        assert_eq!(percents, [42, 85, 100]);
        assert_eq!(steps[0].pause, Pause::For(Duration::from_secs(1)));
        assert_eq!(steps[2].pause, Pause::None);
        assert!(r.start_first);
    }

    #[test]
    fn only_process_and_container_sources_roll() {
        let mut problems = Vec::new();
        assert!(validate(&RollingSpec::default(), None, &mut problems).is_none());
        assert!(problems[0].contains("container"), "{problems:?}");
    }

    #[test]
    fn the_version_shows_the_mix() {
        assert_eq!(mixed_version("v1.3", 2, "v1.4", 2), "v1.3 ×2, v1.4 ×2");
        assert_eq!(mixed_version("v1.3", 4, "v1.4", 0), "v1.3");
        assert_eq!(mixed_version("v1.3", 0, "v1.4", 4), "v1.4");
    }
}
