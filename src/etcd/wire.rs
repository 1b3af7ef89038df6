//! The JSON shapes of etcd v3's gateway: requests as kinfrad sends them, answers as etcd writes
//! them. Keys and values travel base64-encoded; 64-bit integers arrive as JSON strings (and
//! fields equal to their zero value are left out), so every number is read through [`int`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub fn unb64(s: &str) -> Result<Vec<u8>, String> {
    STANDARD
        .decode(s)
        .map_err(|e| format!("bad base64 from etcd: {e}"))
}

/// A 64-bit integer written as a JSON string or a number; absent is 0.
fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    match v {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| serde::de::Error::custom("integer out of range")),
        Some(Value::String(s)) => s.parse().map_err(serde::de::Error::custom),
        Some(o) => Err(serde::de::Error::custom(format!("not an integer: {o}"))),
    }
}

/// The end of the range holding every key that starts with `prefix` (etcd's `range_end`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: "\0" means "to the end of the key space".
    vec![0]
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Header {
    #[serde(default, deserialize_with = "int")]
    pub revision: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RawKv {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
    #[serde(default, deserialize_with = "int")]
    pub mod_revision: i64,
}

/// One key as read: its bytes, value and the revision that last changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

impl RawKv {
    pub fn decode(self) -> Result<Kv, String> {
        Ok(Kv {
            key: unb64(&self.key)?,
            value: unb64(&self.value)?,
            mod_revision: self.mod_revision,
        })
    }
}

#[derive(Debug, Deserialize)]
pub struct RangeAnswer {
    #[serde(default)]
    pub header: Header,
    #[serde(default)]
    pub kvs: Vec<RawKv>,
}

#[derive(Debug, Deserialize)]
pub struct TxnAnswer {
    #[serde(default)]
    pub succeeded: bool,
    #[serde(default)]
    pub responses: Vec<TxnOpAnswer>,
}

#[derive(Debug, Deserialize)]
pub struct TxnOpAnswer {
    #[serde(default)]
    pub response_range: Option<RangeAnswer>,
}

#[derive(Debug, Deserialize)]
pub struct LeaseAnswer {
    #[serde(default, rename = "ID", deserialize_with = "int")]
    pub id: i64,
    #[serde(default, rename = "TTL", deserialize_with = "int")]
    pub ttl: i64,
}

/// What the gateway answers when a call failed (a gRPC status in JSON).
#[derive(Debug, Deserialize)]
pub struct ErrorAnswer {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub code: i64,
}

/// One message of a watch stream.
#[derive(Debug, Deserialize)]
pub struct WatchMessage {
    #[serde(default)]
    pub result: Option<WatchResult>,
    #[serde(default)]
    pub error: Option<ErrorAnswer>,
}

#[derive(Debug, Deserialize)]
pub struct WatchResult {
    #[serde(default)]
    pub header: Header,
    #[serde(default)]
    pub canceled: bool,
    #[serde(default, deserialize_with = "int")]
    pub compact_revision: i64,
    #[serde(default)]
    pub cancel_reason: String,
    #[serde(default)]
    pub events: Vec<RawEvent>,
}

#[derive(Debug, Deserialize)]
pub struct RawEvent {
    /// Absent for a put (the zero value), "DELETE" for a delete.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    pub kv: RawKv,
}

pub fn range_request(key: &[u8], prefix: bool) -> Value {
    let mut v = json!({ "key": b64(key) });
    if prefix {
        v["range_end"] = json!(b64(&prefix_end(key)));
    }
    v
}

/// A transaction: if `key` was last changed at `mod_revision` (0: it does not exist), put
/// `value`; either way read `key` back, so a loser learns what won.
pub fn txn_put_if(key: &[u8], mod_revision: i64, value: &[u8]) -> Value {
    let read = json!({ "request_range": { "key": b64(key) } });
    json!({
        "compare": [{
            "key": b64(key),
            "result": "EQUAL",
            "target": "MOD",
            "mod_revision": mod_revision.to_string(),
        }],
        "success": [{ "request_put": { "key": b64(key), "value": b64(value) } }, read],
        "failure": [read],
    })
}

pub fn put_request(key: &[u8], value: &[u8], lease: i64) -> Value {
    let mut v = json!({ "key": b64(key), "value": b64(value) });
    if lease != 0 {
        v["lease"] = json!(lease.to_string());
    }
    v
}

pub fn watch_request(key: &[u8], start_revision: i64) -> Value {
    json!({ "create_request": {
        "key": b64(key),
        "range_end": b64(&prefix_end(key)),
        "start_revision": start_revision.to_string(),
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_cover_exactly_the_prefix() {
        assert_eq!(prefix_end(b"/kinfra/"), b"/kinfra0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn gateway_numbers_are_read_as_strings_numbers_or_absent() {
        let a: RangeAnswer = serde_json::from_str(
            r#"{"header":{"revision":"42"},"kvs":[{"key":"a2V5","value":"dg==","mod_revision":7}]}"#,
        )
        .expect("parse");
        assert_eq!(a.header.revision, 42);
        let kv = a.kvs.into_iter().next().expect("kv").decode().expect("b64");
        assert_eq!(
            (kv.key.as_slice(), kv.value.as_slice()),
            (&b"key"[..], &b"v"[..])
        );
        assert_eq!(kv.mod_revision, 7);
        let t: TxnAnswer = serde_json::from_str(r#"{"header":{}}"#).expect("parse");
        assert!(!t.succeeded);
        let bad = serde_json::from_str::<Header>(r#"{"revision":"x"}"#);
        assert!(bad.is_err());
    }

    #[test]
    fn watch_messages_tell_puts_deletes_and_compaction() {
        let m: WatchMessage = serde_json::from_str(
            r#"{"result":{"header":{"revision":"4"},"events":[{"kv":{"key":"eA==","mod_revision":"3","value":"eQ=="}},{"type":"DELETE","kv":{"key":"eA==","mod_revision":"4"}}]}}"#,
        )
        .expect("parse");
        let r = m.result.expect("result");
        assert_eq!(r.events.len(), 2);
        assert_eq!(r.events[0].kind, None);
        assert_eq!(r.events[1].kind.as_deref(), Some("DELETE"));
        let c: WatchMessage = serde_json::from_str(
            r#"{"result":{"header":{},"canceled":true,"compact_revision":"4"}}"#,
        )
        .expect("parse");
        let r = c.result.expect("result");
        assert!(r.canceled);
        assert_eq!(r.compact_revision, 4);
    }
}
