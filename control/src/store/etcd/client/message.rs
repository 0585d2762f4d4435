//! The JSON of etcd's gateway: what the client sends (compares, operations) and what it
//! reads back (pairs, ranges, transactions, watch messages, leases, errors). Keys and values
//! are base64; int64 fields are strings.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::ClientError;

/// A key-value pair from a range or an event.
#[derive(Debug, Clone, Deserialize)]
pub(in crate::store::etcd) struct KeyValue {
    #[serde(default, deserialize_with = "base64_bytes")]
    pub(in crate::store::etcd) key: Vec<u8>,
    #[serde(default, deserialize_with = "base64_bytes")]
    pub(in crate::store::etcd) value: Vec<u8>,
    #[serde(default, deserialize_with = "int64")]
    pub(in crate::store::etcd) mod_revision: i64,
}

/// A range's answer: the store revision it was read at and the pairs.
#[derive(Debug, Deserialize)]
pub(in crate::store::etcd) struct Range {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    pub(in crate::store::etcd) kvs: Vec<KeyValue>,
}

impl Range {
    pub(in crate::store::etcd) fn revision(&self) -> i64 {
        self.header.revision
    }
}

/// A transaction's answer.
#[derive(Debug, Deserialize)]
pub(in crate::store::etcd) struct TxnResponse {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    pub(in crate::store::etcd) succeeded: bool,
}

impl TxnResponse {
    pub(in crate::store::etcd) fn revision(&self) -> i64 {
        self.header.revision
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Header {
    #[serde(default, deserialize_with = "int64")]
    revision: i64,
}

/// One message of a watch.
#[derive(Debug, Default, Deserialize)]
pub(in crate::store::etcd) struct WatchResponse {
    #[serde(default)]
    pub(in crate::store::etcd) canceled: bool,
    #[serde(default, deserialize_with = "int64")]
    pub(in crate::store::etcd) compact_revision: i64,
    #[serde(default)]
    pub(in crate::store::etcd) cancel_reason: String,
    #[serde(default)]
    pub(in crate::store::etcd) events: Vec<Event>,
}

/// A change in a watch.
#[derive(Debug, Deserialize)]
pub(in crate::store::etcd) struct Event {
    /// `PUT` is the default and left out by the gateway.
    #[serde(default, rename = "type")]
    kind: Option<String>,
    pub(in crate::store::etcd) kv: Option<KeyValue>,
}

impl Event {
    pub(in crate::store::etcd) fn is_delete(&self) -> bool {
        self.kind.as_deref() == Some("DELETE")
    }
}

/// A condition of a transaction.
#[derive(Debug, Clone)]
pub(in crate::store::etcd) enum Compare {
    /// The key's `mod_revision` equals this.
    ModRevision(String, i64),
    /// The key's `create_revision` equals this (0: the key does not exist).
    CreateRevision(String, i64),
    /// The key is under this lease.
    Lease(String, i64),
}

impl Compare {
    pub(super) fn to_json(&self) -> Value {
        let (target, key, field, n) = match self {
            Self::ModRevision(k, n) => ("MOD", k, "mod_revision", n),
            Self::CreateRevision(k, n) => ("CREATE", k, "create_revision", n),
            Self::Lease(k, n) => ("LEASE", k, "lease", n),
        };
        json!({
            "target": target,
            "result": "EQUAL",
            "key": BASE64.encode(key),
            field: n.to_string(),
        })
    }
}

/// An operation of a transaction.
#[derive(Debug, Clone)]
pub(in crate::store::etcd) enum Op {
    /// Puts the value at the key, under the lease (0: none).
    Put {
        key: String,
        value: Vec<u8>,
        lease: i64,
    },
}

impl Op {
    /// A put without a lease.
    pub(in crate::store::etcd) fn put(key: String, value: Vec<u8>) -> Self {
        Self::Put {
            key,
            value,
            lease: 0,
        }
    }

    pub(super) fn to_json(&self) -> Value {
        match self {
            Self::Put { key, value, lease } => {
                let mut put = json!({ "key": BASE64.encode(key), "value": BASE64.encode(value) });
                if *lease != 0 {
                    put["lease"] = lease.to_string().into();
                }
                json!({ "request_put": put })
            }
        }
    }
}

/// A line of a streaming answer: a result or an error.
#[derive(Deserialize)]
pub(super) struct StreamMessage<T> {
    result: Option<T>,
    error: Option<GatewayError>,
}

impl<T: Default> StreamMessage<T> {
    pub(super) fn into_result(self, url: &str) -> Result<T, ClientError> {
        match (self.result, self.error) {
            (_, Some(e)) => Err(e.into_error(url, 200)),
            (Some(r), None) => Ok(r),
            (None, None) => Ok(T::default()),
        }
    }
}

/// The gateway's error body.
#[derive(Debug, Default, Deserialize)]
pub(super) struct GatewayError {
    #[serde(default)]
    pub(super) code: i64,
    #[serde(default)]
    pub(super) message: String,
    #[serde(default)]
    pub(super) error: String,
}

impl GatewayError {
    pub(super) fn into_error(self, url: &str, status: u16) -> ClientError {
        ClientError::Refused {
            endpoint: url.to_owned(),
            status,
            code: self.code,
            message: if self.message.is_empty() {
                self.error
            } else {
                self.message
            },
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct LeaseAnswer {
    #[serde(default, rename = "ID", deserialize_with = "int64")]
    pub(super) id: i64,
    #[serde(default, rename = "TTL", deserialize_with = "int64")]
    pub(super) ttl: i64,
}

#[derive(Deserialize)]
pub(super) struct TokenAnswer {
    pub(super) token: String,
}

/// The key just past every key starting with `prefix` (etcd's `range_end` for a prefix).
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every key: etcd reads `\0` as "to the end".
    vec![0]
}

/// An int64 field: the gateway writes a string; a number is read too.
pub(super) fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Number(i64),
        Text(String),
    }
    match Int::deserialize(d)? {
        Int::Number(n) => Ok(n),
        Int::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

/// A bytes field: base64 text.
pub(super) fn base64_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(d)?;
    BASE64.decode(text).map_err(serde::de::Error::custom)
}
