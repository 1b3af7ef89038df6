//! End-to-end tests of fleet mode: several kinfrads sharing maintenance, drain and stop intent
//! through a real etcd cluster that each test starts itself (tests/common/etcd.rs). One file a
//! theme; [`cluster`] checks the etcd fixture itself, so a fleet failure is never the fixture's;
//! [`hosts`] is the fleet's own fixture.

#[path = "../common/mod.rs"]
mod common;

mod cluster;
mod conflict;
mod hostile;
mod hosts;
mod propagation;
mod resilience;
mod status;
mod tls;
