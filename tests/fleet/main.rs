//! End-to-end tests of fleet mode: several kinfrads sharing maintenance, drain and stop intent
//! through a real etcd cluster that each test starts itself (tests/common/etcd.rs). One file a
//! theme; [`cluster`] checks the etcd fixture itself, so a fleet failure is never the fixture's.

#[path = "../common/mod.rs"]
mod common;

mod cluster;
mod status;
