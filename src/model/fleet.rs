//! The fleet's shared intent and each host's presence, as they are stored in etcd.
//!
//! [`Intent`] is one JSON document under `<prefix>/intent`: the maintenance records, the drain
//! and the operator stops every kinfrad of the fleet applies. Writers replace it whole, in a
//! transaction that compares its revision, so two operators never overwrite each other unseen.
//! A host applies the [`Diff`] between the intent it applied last and the new one, through the
//! same operations as a local command. [`Presence`] is one host's lease-bound key under
//! `<prefix>/nodes/`. Everything read back from etcd is checked like input.

use serde::{Deserialize, Serialize};

use super::drain::Drain;
use super::maintenance::{Maintenance, Target};

/// The intent document's format.
pub const INTENT_FORMAT: u32 = 1;
/// The largest intent or presence document accepted from etcd.
pub const MAX_DOCUMENT: usize = 256 * 1024;
/// Most maintenance records and stopped services an intent may hold.
pub const MAX_ITEMS: usize = 1024;

/// What the whole fleet is asked to do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub version: u32,
    /// Active maintenance records, at most one per target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maintenance: Vec<Maintenance>,
    /// The drain, while one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<Drain>,
    /// Services every host keeps stopped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stopped: Vec<String>,
    /// The node that wrote this version, when (Unix ms), and a random id of the change, by
    /// which a writer whose answer was lost recognises its own write.
    #[serde(default)]
    pub changed_by: String,
    #[serde(default)]
    pub changed_at_ms: u64,
    #[serde(default)]
    pub change_id: String,
}

/// What a host does to go from one intent to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Records to enter or change (new, or different from the last applied).
    pub enter: Vec<Maintenance>,
    /// Targets whose record is gone.
    pub exit: Vec<Target>,
    /// `Some(new)` when the drain changed (`Some(None)`: stopped).
    pub drain: Option<Option<Drain>>,
    pub stop: Vec<String>,
    pub start: Vec<String>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.enter.is_empty()
            && self.exit.is_empty()
            && self.drain.is_none()
            && self.stop.is_empty()
            && self.start.is_empty()
    }
}

/// Two records show the same thing (start time and hits are each host's own).
fn same_record(a: &Maintenance, b: &Maintenance) -> bool {
    a.target == b.target
        && a.message == b.message
        && a.current_issue == b.current_issue
        && a.estimated_completion_ms == b.estimated_completion_ms
        && a.page_url == b.page_url
}

/// Drains are the same when target, start and duration are (the counters are each host's).
fn same_drain(a: &Option<Drain>, b: &Option<Drain>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.target == b.target && a.start_ms == b.start_ms && a.duration_ms == b.duration_ms
        }
        _ => false,
    }
}

impl Intent {
    pub fn empty() -> Intent {
        Intent {
            version: INTENT_FORMAT,
            ..Intent::default()
        }
    }

    /// Read a document from etcd: JSON of a known format whose every value kinfrad could have
    /// written.
    pub fn decode(bytes: &[u8]) -> Result<Intent, String> {
        if bytes.len() > MAX_DOCUMENT {
            return Err(format!(
                "{} bytes, more than the {MAX_DOCUMENT} accepted",
                bytes.len()
            ));
        }
        let i: Intent = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        i.check()?;
        Ok(i)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Every value must be one kinfrad could have written.
    pub fn check(&self) -> Result<(), String> {
        if self.version != INTENT_FORMAT {
            return Err(format!(
                "format version {} (this kinfrad reads {INTENT_FORMAT})",
                self.version
            ));
        }
        if self.maintenance.len() > MAX_ITEMS || self.stopped.len() > MAX_ITEMS {
            return Err(format!("more than {MAX_ITEMS} records or stopped services"));
        }
        for (i, m) in self.maintenance.iter().enumerate() {
            m.check().map_err(|e| format!("maintenance[{i}].{e}"))?;
            if self.maintenance[..i].iter().any(|o| o.target == m.target) {
                return Err(format!(
                    "maintenance[{i}]: a second record for target {}",
                    m.target
                ));
            }
        }
        if let Some(d) = &self.drain {
            d.check().map_err(|e| format!("drain.{e}"))?;
        }
        if let Some(bad) = self.stopped.iter().find(|n| !super::valid_name(n)) {
            return Err(format!("stopped: {bad:?} is not a service name"));
        }
        if !self.changed_by.is_empty() && !super::valid_name(&self.changed_by) {
            return Err(format!(
                "changed_by: {:?} is not a node name",
                self.changed_by
            ));
        }
        if self.change_id.len() > 64 || !self.change_id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err("change_id: not a hex id".to_string());
        }
        Ok(())
    }

    /// What a host that applied `self` does to apply `next`.
    pub fn diff(&self, next: &Intent) -> Diff {
        let enter = next
            .maintenance
            .iter()
            .filter(|m| {
                !self
                    .maintenance
                    .iter()
                    .any(|o| o.target == m.target && same_record(o, m))
            })
            .cloned()
            .collect();
        let exit = self
            .maintenance
            .iter()
            .filter(|o| !next.maintenance.iter().any(|m| m.target == o.target))
            .map(|o| o.target.clone())
            .collect();
        let drain = (!same_drain(&self.drain, &next.drain)).then(|| next.drain.clone());
        let stop = next
            .stopped
            .iter()
            .filter(|s| !self.stopped.contains(s))
            .cloned()
            .collect();
        let start = self
            .stopped
            .iter()
            .filter(|s| !next.stopped.contains(s))
            .cloned()
            .collect();
        Diff {
            enter,
            exit,
            drain,
            stop,
            start,
        }
    }
}

/// One host's presence under `<prefix>/nodes/<node>`, alive as long as its lease.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub node: String,
    pub version: String,
    /// When this kinfrad started and when it last wrote this (Unix ms).
    pub started_ms: u64,
    pub updated_ms: u64,
    /// The intent revision it applied last (0: none yet).
    pub applied_revision: i64,
    #[serde(default)]
    pub services: Vec<PresenceService>,
    /// What it could not apply of the intent (a target it does not have, a refused value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceService {
    pub name: String,
    /// `healthy`, `starting`, `down`, `stopped`, … as the host's own status shows it.
    pub health: String,
}

impl Presence {
    pub fn decode(bytes: &[u8]) -> Result<Presence, String> {
        if bytes.len() > MAX_DOCUMENT {
            return Err(format!("{} bytes, too large", bytes.len()));
        }
        let p: Presence = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        if !super::valid_name(&p.node) {
            return Err(format!("node: {:?} is not a node name", p.node));
        }
        if p.services.len() > MAX_ITEMS || p.problems.len() > MAX_ITEMS {
            return Err("too many services or problems".to_string());
        }
        let short = |s: &str| s.len() <= 256;
        if !short(&p.version)
            || p.services
                .iter()
                .any(|s| !super::valid_name(&s.name) || !short(&s.health))
            || p.problems.iter().any(|s| s.len() > 1024)
        {
            return Err("a field is not one kinfrad writes".to_string());
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::drain::DrainTarget;
    use crate::model::maintenance::Change;

    fn rec(t: Target, msg: &str) -> Maintenance {
        let c = Change {
            message: Some(msg.to_string()),
            ..Change::default()
        };
        Maintenance::begin_for(t, c, 1_000)
    }

    #[test]
    fn a_diff_enters_changed_records_exits_gone_ones_and_toggles_stops() {
        let mut a = Intent::empty();
        a.maintenance.push(rec(Target::All, "one"));
        a.maintenance
            .push(rec(Target::Service("api".into()), "api"));
        a.stopped.push("worker".into());
        let mut b = Intent::empty();
        let mut changed = rec(Target::All, "two");
        changed.start_time_ms = 5_000;
        b.maintenance.push(changed.clone());
        b.stopped.push("batch".into());
        b.drain = Some(Drain::begin(DrainTarget::All, 60_000, 2_000).expect("drain"));
        let d = a.diff(&b);
        assert_eq!(d.enter, vec![changed]);
        assert_eq!(d.exit, vec![Target::Service("api".into())]);
        assert_eq!(d.stop, vec!["batch".to_string()]);
        assert_eq!(d.start, vec!["worker".to_string()]);
        assert!(matches!(d.drain, Some(Some(_))));
        assert!(b.diff(&b).is_empty());
        // A record that differs only in start time and hits is the same record.
        let mut c = b.clone();
        c.maintenance[0].start_time_ms = 9;
        c.maintenance[0].hits = 7;
        assert!(b.diff(&c).is_empty());
        let mut e = b.clone();
        e.drain = None;
        assert_eq!(b.diff(&e).drain, Some(None));
    }

    #[test]
    fn documents_from_etcd_are_checked_like_input() {
        let mut i = Intent::empty();
        i.maintenance.push(rec(Target::All, "ok"));
        i.change_id = "00ff".into();
        assert_eq!(Intent::decode(&i.encode()).expect("round trip"), i);
        let cases = [
            (r#"{"version":2}"#, "format version"),
            (r#"{"version":1,"stopped":["a b"]}"#, "not a service name"),
            (r#"{"version":1,"change_id":"zz"}"#, "hex"),
            (r#"{"version":1,"changed_by":"../x"}"#, "node name"),
            ("[1,2]", "not JSON"),
        ];
        for (doc, want) in cases {
            let e = Intent::decode(doc.as_bytes()).expect_err(doc);
            assert!(e.contains(want), "{doc}: {e}");
        }
        let mut two = Intent::empty();
        two.maintenance.push(rec(Target::All, "a"));
        two.maintenance.push(rec(Target::All, "b"));
        assert!(Intent::decode(&two.encode()).is_err());
        let mut huge = Intent::empty();
        huge.changed_by = "x".repeat(MAX_DOCUMENT);
        assert!(Intent::decode(&huge.encode()).is_err());
    }

    #[test]
    fn presence_documents_are_checked() {
        let p = Presence {
            node: "web-1".into(),
            version: "0.1.0".into(),
            services: vec![PresenceService {
                name: "api".into(),
                health: "healthy".into(),
            }],
            ..Presence::default()
        };
        let bytes = serde_json::to_vec(&p).expect("json");
        assert_eq!(Presence::decode(&bytes).expect("decode"), p);
        let bad = br#"{"node":"","version":"","started_ms":0,"updated_ms":0,"applied_revision":0}"#;
        assert!(Presence::decode(bad).is_err());
    }
}
