//! The health API's rules: how one component's reading becomes `healthy | degraded |
//! unhealthy`, how the components combine into kinfrad's overall status, and which components
//! hold readiness back. Pure: the callers gather the readings (probe results, the state file's
//! last check) and pass them in.

/// A component's (or the whole's) status, as the health API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Healthy,
    Degraded,
    Unhealthy,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Degraded => "degraded",
            Status::Unhealthy => "unhealthy",
        }
    }
}

/// What the combining rules need of one component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading<'a> {
    pub name: &'a str,
    pub status: Status,
    /// A critical component that is unhealthy makes the whole unhealthy; a non-critical one
    /// only degrades it.
    pub critical: bool,
    /// Visitors of this component get an answer kinfrad gives on purpose while it is down
    /// (its fallback page or a maintenance page), so it does not hold readiness back.
    pub fallback_by_design: bool,
}

/// One component as the health API answers for it: what the combining rules need, and its
/// JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    pub name: String,
    pub status: Status,
    pub critical: bool,
    pub by_design: bool,
    /// Its state is known (kinfrad's always; a service's once probed or not running).
    pub checked: bool,
    pub json: serde_json::Value,
}

impl Component {
    pub fn reading(&self) -> Reading<'_> {
        Reading {
            name: &self.name,
            status: self.status,
            critical: self.critical,
            fallback_by_design: self.by_design,
        }
    }
}

/// A service's status from its state name (as `/__status__` shows it) and its breaker:
/// `running` is healthy (degraded while the breaker is half-open, trying the service again);
/// every other state (starting, down, unhealthy, circuit_open, stopped, crashed, …) is
/// unhealthy: requests do not reach the service.
pub fn service_status(state: &str, half_open: bool) -> Status {
    match (state, half_open) {
        ("running", false) => Status::Healthy,
        ("running", true) => Status::Degraded,
        _ => Status::Unhealthy,
    }
}

/// kinfrad's own status from its checks: no listener bound is unhealthy (it cannot serve);
/// a state file it cannot write, or a reload that failed (the previous config still runs), is
/// degraded (it serves, but operator changes cannot be persisted or applied).
pub fn own_status(listeners: usize, state_writable: bool, reload_ok: bool) -> Status {
    if listeners == 0 {
        Status::Unhealthy
    } else if !state_writable || !reload_ok {
        Status::Degraded
    } else {
        Status::Healthy
    }
}

/// The whole: unhealthy when a critical component is; degraded when any other component is not
/// healthy; healthy otherwise.
pub fn overall(readings: &[Reading<'_>]) -> Status {
    readings
        .iter()
        .map(|r| match r.status {
            Status::Unhealthy if !r.critical => Status::Degraded,
            s => s,
        })
        .max()
        .unwrap_or(Status::Healthy)
}

/// The components that keep kinfrad from being ready: critical ones that are unhealthy and
/// not answered by a fallback by design. Empty means ready.
pub fn holding_back<'a>(readings: &[Reading<'a>]) -> Vec<&'a str> {
    readings
        .iter()
        .filter(|r| r.critical && r.status == Status::Unhealthy && !r.fallback_by_design)
        .map(|r| r.name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str, status: Status, critical: bool, by_design: bool) -> Reading<'_> {
        Reading {
            name,
            status,
            critical,
            fallback_by_design: by_design,
        }
    }

    #[test]
    fn service_states_map_to_statuses() {
        assert_eq!(service_status("running", false), Status::Healthy);
        assert_eq!(service_status("running", true), Status::Degraded);
        for s in [
            "starting",
            "down",
            "unhealthy",
            "circuit_open",
            "stopped",
            "crashed",
        ] {
            assert_eq!(service_status(s, false), Status::Unhealthy, "{s}");
        }
    }

    #[test]
    fn own_status_rules() {
        assert_eq!(own_status(1, true, true), Status::Healthy);
        assert_eq!(own_status(0, true, true), Status::Unhealthy);
        assert_eq!(own_status(2, false, true), Status::Degraded);
        assert_eq!(own_status(2, true, false), Status::Degraded);
    }

    #[test]
    fn overall_combines_by_criticality() {
        assert_eq!(overall(&[]), Status::Healthy);
        let ok = r("kinfrad", Status::Healthy, true, false);
        assert_eq!(overall(&[ok]), Status::Healthy);
        let side_down = r("side", Status::Unhealthy, false, false);
        assert_eq!(overall(&[ok, side_down]), Status::Degraded);
        let main_half = r("api", Status::Degraded, true, false);
        assert_eq!(overall(&[ok, main_half]), Status::Degraded);
        let main_down = r("api", Status::Unhealthy, true, true);
        assert_eq!(overall(&[ok, side_down, main_down]), Status::Unhealthy);
    }

    #[test]
    fn readiness_is_held_back_by_critical_failures_without_a_fallback() {
        let ok = r("kinfrad", Status::Healthy, true, false);
        let side_down = r("side", Status::Unhealthy, false, false);
        let fallback = r("web", Status::Unhealthy, true, true);
        assert!(holding_back(&[ok, side_down, fallback]).is_empty());
        let bare = r("api", Status::Unhealthy, true, false);
        let degraded = r("db", Status::Degraded, true, false);
        assert_eq!(holding_back(&[ok, bare, degraded, side_down]), vec!["api"]);
    }
}
