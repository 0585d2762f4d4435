//! Shadow traffic of a service: which stack receives copies of live requests, how many, which.
//!
//! The proxy mirrors a copy of `percent` of the live requests whose method is listed and whose
//! body is at most `max_body` bytes to `stack`, reads the answer and discards it. This module
//! only holds the validated setting; `validate::service` builds it.

use crate::model::Name;

/// Methods mirrored when a shadow setting names none: the idempotent reads.
pub const DEFAULT_SHADOW_METHODS: &[&str] = &["GET", "HEAD", "OPTIONS"];

/// Largest request body copied when a shadow setting names no bound: 64 KiB.
pub const DEFAULT_SHADOW_MAX_BODY: u64 = 64 * 1024;

/// The largest `max_body` accepted: 1 MiB. Each copy in flight buffers its body in memory.
pub const MAX_SHADOW_BODY: u64 = 1 << 20;

/// A validated `shadow = { ... }` setting of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowSpec {
    pub(crate) stack: Name,
    pub(crate) percent: u8,
    pub(crate) methods: Vec<String>,
    pub(crate) max_body: u64,
}

impl ShadowSpec {
    /// The stack receiving the copies (one of the service's stacks).
    pub fn stack(&self) -> &Name {
        &self.stack
    }
    /// Share of the live requests copied, 1..=100.
    pub fn percent(&self) -> u8 {
        self.percent
    }
    /// Methods mirrored, exactly as written (methods are case-sensitive, RFC 9110 §9.1).
    pub fn methods(&self) -> &[String] {
        &self.methods
    }
    /// Whether requests of `method` are mirrored.
    pub fn mirrors(&self, method: &str) -> bool {
        self.methods.iter().any(|m| m == method)
    }
    /// Largest request body copied, in bytes.
    pub fn max_body(&self) -> u64 {
        self.max_body
    }
}
