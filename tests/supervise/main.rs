//! Services kinfrad runs itself (`[[service]] command`): real child processes written by the
//! tests, driven through the real kinfrad and kinfractl binaries over loopback. One file a theme;
//! the harness they share is in tests/common.

#[path = "../common/mod.rs"]
mod common;

mod metrics;
mod operator;
mod output;
mod processes;
mod startup;

/// What every theme file uses: the shared harness, with the names these tests have always
/// called its helpers by.
mod prelude {
    pub use crate::common::*;
    pub use crate::common::{
        service as status, start_config as start, wait_service_where as wait_state,
    };

    /// How long the tests wait for kinfrad or a service to get somewhere.
    pub const T: std::time::Duration = std::time::Duration::from_secs(15);
}
