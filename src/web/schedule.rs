//! The `scheduled` field of `GET /api/maintenance/status`: the next scheduled maintenance
//! window, while it is within its warning lead time, so a page or script can warn before it
//! starts. Absent otherwise, so the seed's shape is unchanged when nothing is scheduled.

use serde_json::{Value, json};

use crate::app::App;
use crate::model::maintenance::Target;
use crate::model::schedule::rfc3339;
use crate::protocol::StatusView;

/// `view` as JSON, with `scheduled` when a window of `target` warns now: for the global view
/// any window, for a target's view its own windows and global ones.
pub fn with_scheduled(app: &App, target: &Target, view: StatusView) -> Value {
    let mut v = serde_json::to_value(view).unwrap_or(Value::Null);
    let next = app.scheduled_for(|w| *target == Target::All || w == target || *w == Target::All);
    if let (Some((start, end, t)), Some(obj)) = (next, v.as_object_mut()) {
        obj.insert(
            "scheduled".into(),
            json!({
                "start": rfc3339(start),
                "startTime": start,
                "endTime": end,
                "target": t,
            }),
        );
    }
    v
}
