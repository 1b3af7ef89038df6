//! The scrape, encoded: `Scrape` is every reading `/metrics` shows, as plain values taken from
//! the counters at scrape time, and its `prometheus_client::collector::Collector` turns them
//! into metric families in the OpenMetrics text format (the crate names counters `_total`,
//! histograms `_bucket`/`_sum`/`_count`, and escapes label values). The metric names here are
//! a contract alert rules are written against.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::model::circuit::CircuitState;
use crate::model::metrics::{Answer, HistogramReading};

use super::process::Process;

/// One route's requests (`service` and `route` empty: requests that matched no route).
#[derive(Debug, Clone)]
pub struct RouteRequests {
    pub service: String,
    pub route: String,
    pub counts: Vec<(Answer, &'static str, u64)>,
}

/// One service's readings.
#[derive(Debug, Clone)]
pub struct ServiceReadings {
    pub name: String,
    pub upstream_latency: HistogramReading,
    pub probes_ok: u64,
    pub probes_failed: u64,
    pub probe_latency: HistogramReading,
    pub circuit: CircuitState,
    /// By the state entered, in `CircuitState::ALL` order.
    pub circuit_transitions: [u64; 3],
    /// Restarts and exits of the process kinfrad runs for it (`None`: it runs none).
    pub supervised: Option<(u64, u64)>,
}

/// Everything one scrape shows.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub version: &'static str,
    pub requests: Vec<RouteRequests>,
    pub services: Vec<ServiceReadings>,
    /// Components (kinfrad first): name, up, critical.
    pub components: Vec<(String, bool, bool)>,
    /// Targets of the active maintenance records ("*": global).
    pub maintenance: Vec<String>,
    /// Maintenance hits by route ("": unrouted).
    pub maintenance_hits: Vec<(String, u64)>,
    pub drain_active: bool,
    /// The drain's refusals by route ("": routes it did not know when it started).
    pub drain_refused: Vec<(String, u64)>,
    pub open_connections: u64,
    pub sse_subscribers: u64,
    pub process: Process,
    /// The fleet, when this host is part of one.
    pub fleet: Option<FleetReading>,
}

/// The fleet as one scrape shows it.
#[derive(Debug, Clone, Default)]
pub struct FleetReading {
    pub connected: bool,
    pub applied_revision: i64,
    pub hosts: u64,
}

/// The label of a circuit state (`half_open`, not the status JSON's `half-open`).
pub fn circuit_label(s: CircuitState) -> &'static str {
    match s {
        CircuitState::Closed => "closed",
        CircuitState::Open => "open",
        CircuitState::HalfOpen => "half_open",
    }
}

type Fmt = Result<(), std::fmt::Error>;

fn counter(m: &mut MetricEncoder<'_>, labels: &[(&str, &str)], v: u64) -> Fmt {
    m.encode_family(&labels)?
        .encode_counter::<NoLabelSet, _, u64>(&v, None)
}

fn gauge(m: &mut MetricEncoder<'_>, labels: &[(&str, &str)], v: i64) -> Fmt {
    m.encode_family(&labels)?.encode_gauge(&v)
}

fn histogram(m: &mut MetricEncoder<'_>, labels: &[(&str, &str)], h: &HistogramReading) -> Fmt {
    m.encode_family(&labels)?
        .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)
}

fn flag(b: bool) -> i64 {
    i64::from(b)
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Fmt {
        {
            let mut m = enc.encode_descriptor(
                "kinfra_requests",
                "Requests answered on kinfrad's HTTP listeners, by matched service and route, status class, and how they were answered (path).",
                None,
                MetricType::Counter,
            )?;
            for r in &self.requests {
                for (how, class, n) in &r.counts {
                    let labels = [
                        ("service", r.service.as_str()),
                        ("route", r.route.as_str()),
                        ("class", class),
                        ("path", how.as_str()),
                    ];
                    counter(&mut m, &labels, *n)?;
                }
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "kinfra_upstream_response_seconds",
                "Time from sending a proxied request to the upstream to its response head.",
                None,
                MetricType::Histogram,
            )?;
            for s in &self.services {
                histogram(&mut m, &[("service", &s.name)], &s.upstream_latency)?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "kinfra_health_probes",
                "Active health probes, by result (ok or fail).",
                None,
                MetricType::Counter,
            )?;
            for s in &self.services {
                counter(
                    &mut m,
                    &[("service", &s.name), ("result", "ok")],
                    s.probes_ok,
                )?;
                counter(
                    &mut m,
                    &[("service", &s.name), ("result", "fail")],
                    s.probes_failed,
                )?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "kinfra_health_probe_seconds",
                "How long active health probes took.",
                None,
                MetricType::Histogram,
            )?;
            for s in &self.services {
                histogram(&mut m, &[("service", &s.name)], &s.probe_latency)?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "kinfra_component_up",
                "1 when a component (kinfrad or a service) is healthy or degraded, 0 when unhealthy; as the health API reports it.",
                None,
                MetricType::Gauge,
            )?;
            for (name, up, critical) in &self.components {
                let critical = if *critical { "true" } else { "false" };
                gauge(
                    &mut m,
                    &[("component", name), ("critical", critical)],
                    flag(*up),
                )?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "kinfra_circuit_state",
                "A service's circuit breaker: 1 for its current state, 0 for the others.",
                None,
                MetricType::Gauge,
            )?;
            for s in &self.services {
                for st in CircuitState::ALL {
                    let labels = [("service", s.name.as_str()), ("state", circuit_label(st))];
                    gauge(&mut m, &labels, flag(s.circuit == st))?;
                }
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "kinfra_circuit_transitions",
                "Circuit breaker state changes, by the state entered.",
                None,
                MetricType::Counter,
            )?;
            for s in &self.services {
                for st in CircuitState::ALL {
                    let labels = [("service", s.name.as_str()), ("to", circuit_label(st))];
                    counter(&mut m, &labels, s.circuit_transitions[st.index()])?;
                }
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "kinfra_maintenance_active",
                "1 for each active maintenance record, by target (* for all of kinfrad).",
                None,
                MetricType::Gauge,
            )?;
            for t in &self.maintenance {
                gauge(&mut m, &[("target", t)], 1)?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "kinfra_maintenance_hits",
                "Requests answered by maintenance, by route (empty for unrouted ones); zeroed when a record for the route is entered.",
                None,
                MetricType::Counter,
            )?;
            for (route, n) in &self.maintenance_hits {
                counter(&mut m, &[("route", route)], *n)?;
            }
        }
        enc.encode_descriptor(
            "kinfra_drain_active",
            "1 while a drain is set.",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&flag(self.drain_active))?;
        {
            let mut m = enc.encode_descriptor(
                "kinfra_drain_refused",
                "Requests the current drain refused, by route; starts at zero with each drain.",
                None,
                MetricType::Counter,
            )?;
            for (route, n) in &self.drain_refused {
                counter(&mut m, &[("route", route)], *n)?;
            }
        }
        for (name, help, pick) in [
            (
                "kinfra_supervised_restarts",
                "Restarts of a service's process kinfrad runs (after a crash, or asked for).",
                0usize,
            ),
            (
                "kinfra_supervised_exits",
                "Times a service's process kinfrad runs ended, for whatever reason.",
                1usize,
            ),
        ] {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for s in &self.services {
                if let Some((restarts, exits)) = s.supervised {
                    let v = if pick == 0 { restarts } else { exits };
                    counter(&mut m, &[("service", &s.name)], v)?;
                }
            }
        }
        enc.encode_descriptor(
            "kinfra_open_connections",
            "Open client connections on kinfrad's HTTP listeners.",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&self.open_connections)?;
        enc.encode_descriptor(
            "kinfra_sse_subscribers",
            "Live /__events__ streams (status and log followers).",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&self.sse_subscribers)?;
        if let Some(f) = &self.fleet {
            for (name, help, v) in [
                (
                    "kinfra_fleet_connected",
                    "1 while kinfrad is connected to the fleet's etcd; 0 while it serves the last fleet state it knew.",
                    flag(f.connected),
                ),
                (
                    "kinfra_fleet_applied_revision",
                    "The etcd revision of the fleet intent this host applied last.",
                    f.applied_revision,
                ),
                (
                    "kinfra_fleet_hosts",
                    "Hosts of the fleet present in etcd, as this host last saw them.",
                    i64::try_from(f.hosts).unwrap_or(i64::MAX),
                ),
            ] {
                enc.encode_descriptor(name, help, None, MetricType::Gauge)?
                    .encode_gauge(&v)?;
            }
        }
        let info = Info::new([("version", self.version)]);
        let m = enc.encode_descriptor(
            "kinfra_build",
            "kinfrad's version.",
            None,
            info.metric_type(),
        )?;
        info.encode(m)?;
        self.process.encode(&mut enc)
    }
}

/// The whole exposition, `# EOF` included.
pub fn render(scrape: Scrape) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::metrics::{Histogram, RequestCounts};

    fn sample() -> Scrape {
        let c = RequestCounts::default();
        c.count(Answer::Proxied, 200);
        c.count(Answer::Proxied, 201);
        c.count(Answer::Fallback, 503);
        let h = Histogram::default();
        h.observe(std::time::Duration::from_millis(20));
        Scrape {
            version: "1.2.3",
            requests: vec![RouteRequests {
                service: "web".into(),
                route: "example.com/\"q\"".into(),
                counts: c.readings(),
            }],
            services: vec![ServiceReadings {
                name: "web".into(),
                upstream_latency: h.reading(),
                probes_ok: 4,
                probes_failed: 1,
                probe_latency: Histogram::default().reading(),
                circuit: CircuitState::Open,
                circuit_transitions: [0, 1, 0],
                supervised: Some((2, 3)),
            }],
            components: vec![("kinfrad".into(), true, true), ("web".into(), false, false)],
            maintenance: vec!["*".into()],
            maintenance_hits: vec![(String::new(), 7)],
            drain_active: false,
            drain_refused: vec![],
            open_connections: 2,
            sse_subscribers: 0,
            process: Process::default(),
            fleet: Some(FleetReading {
                connected: false,
                applied_revision: 42,
                hosts: 3,
            }),
        }
    }

    #[test]
    fn families_carry_the_contract_names_and_labels() {
        let text = render(sample()).expect("encodes");
        for line in [
            "# TYPE kinfra_requests counter",
            "kinfra_requests_total{service=\"web\",route=\"example.com/\\\"q\\\"\",class=\"2xx\",path=\"proxied\"} 2",
            "kinfra_requests_total{service=\"web\",route=\"example.com/\\\"q\\\"\",class=\"5xx\",path=\"fallback\"} 1",
            "kinfra_upstream_response_seconds_bucket{le=\"0.025\",service=\"web\"} 1",
            "kinfra_upstream_response_seconds_count{service=\"web\"} 1",
            "kinfra_health_probes_total{service=\"web\",result=\"ok\"} 4",
            "kinfra_health_probes_total{service=\"web\",result=\"fail\"} 1",
            "kinfra_component_up{component=\"kinfrad\",critical=\"true\"} 1",
            "kinfra_component_up{component=\"web\",critical=\"false\"} 0",
            "kinfra_circuit_state{service=\"web\",state=\"open\"} 1",
            "kinfra_circuit_state{service=\"web\",state=\"half_open\"} 0",
            "kinfra_circuit_transitions_total{service=\"web\",to=\"open\"} 1",
            "kinfra_maintenance_active{target=\"*\"} 1",
            "kinfra_maintenance_hits_total{route=\"\"} 7",
            "kinfra_drain_active 0",
            "kinfra_supervised_restarts_total{service=\"web\"} 2",
            "kinfra_supervised_exits_total{service=\"web\"} 3",
            "kinfra_open_connections 2",
            "kinfra_sse_subscribers 0",
            "kinfra_fleet_connected 0",
            "kinfra_fleet_applied_revision 42",
            "kinfra_fleet_hosts 3",
            "kinfra_build_info{version=\"1.2.3\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        // HELP texts need no escaping (the encoder does not escape them).
        for l in text.lines().filter(|l| l.starts_with("# HELP")) {
            assert!(!l.contains('"') && !l.contains('\\'), "{l}");
        }
        // Unreadable process facts are absent, not zero.
        assert!(!text.contains("process_cpu_seconds_total "), "{text}");
    }
}
