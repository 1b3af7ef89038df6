//! The keys and revisions of an [`EtcdCluster`]: put, get, the current revision and compaction
//! through the JSON gateway, on a chosen member or on whichever answers first, as the fleet
//! tests set up and check what their daemons see.

use serde_json::json;

use super::{EtcdCluster, b64, unb64, wire};

impl EtcdCluster {
    /// Run `op` on each member in turn: the first success, else every member's error.
    fn on_any<T>(&self, mut op: impl FnMut(usize) -> Result<T, String>) -> Result<T, String> {
        let mut errors = Vec::new();
        for i in 0..self.len() {
            match op(i) {
                Ok(v) => return Ok(v),
                Err(e) => errors.push(format!("member {i}: {e}")),
            }
        }
        Err(errors.join("; "))
    }

    /// Put `key` = `value` through the first member that takes it; the revision it made.
    pub fn try_put(&self, key: &str, value: &str) -> Result<i64, String> {
        self.on_any(|i| self.put_on(i, key, value))
    }

    /// Put `key` = `value` through member `i`; the revision it made.
    pub fn put_on(&self, i: usize, key: &str, value: &str) -> Result<i64, String> {
        let r = self.post(
            i,
            "/v3/kv/put",
            &json!({ "key": b64(key), "value": b64(value) }),
        )?;
        wire::int(&r["header"]["revision"]).ok_or_else(|| format!("no header.revision in {r}"))
    }

    /// [`try_put`](Self::try_put) that must succeed.
    pub fn put(&self, key: &str, value: &str) -> i64 {
        self.try_put(key, value)
            .unwrap_or_else(|e| panic!("etcd put {key}: {e}\n{}", self.logs_tail()))
    }

    /// `key`'s value and mod revision (`None`: no such key), by a linearizable read on the first
    /// member that answers.
    pub fn try_get(&self, key: &str) -> Result<Option<(String, i64)>, String> {
        self.on_any(|i| self.get_on(i, key))
    }

    /// `key`'s value and mod revision as member `i` reads it (linearizable).
    pub fn get_on(&self, i: usize, key: &str) -> Result<Option<(String, i64)>, String> {
        let r = self.range_on(i, key)?;
        let Some(kv) = r["kvs"].as_array().and_then(|kvs| kvs.first()) else {
            return Ok(None);
        };
        // proto3 JSON leaves out empty fields: no "value" is the empty value.
        let value = unb64(kv["value"].as_str().unwrap_or(""))?;
        let rev =
            wire::int(&kv["mod_revision"]).ok_or_else(|| format!("no mod_revision in {kv}"))?;
        Ok(Some((value, rev)))
    }

    /// [`try_get`](Self::try_get) that must get an answer.
    pub fn get(&self, key: &str) -> Option<(String, i64)> {
        self.try_get(key)
            .unwrap_or_else(|e| panic!("etcd get {key}: {e}\n{}", self.logs_tail()))
    }

    /// The store's current revision (a linearizable read's header).
    pub fn revision(&self) -> i64 {
        self.on_any(|i| {
            let r = self.range_on(i, "kinfra-fixture-probe")?;
            wire::int(&r["header"]["revision"]).ok_or_else(|| format!("no header.revision in {r}"))
        })
        .unwrap_or_else(|e| panic!("etcd revision: {e}\n{}", self.logs_tail()))
    }

    /// Compact the history up to `revision` (physically: older revisions are gone when this
    /// returns).
    pub fn compact(&self, revision: i64) {
        self.on_any(|i| {
            self.post(
                i,
                "/v3/kv/compaction",
                &json!({ "revision": revision.to_string(), "physical": true }),
            )
        })
        .unwrap_or_else(|e| panic!("etcd compact {revision}: {e}\n{}", self.logs_tail()));
    }
}
