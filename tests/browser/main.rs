//! End-to-end tests of the maintenance, landing and fallback pages in a real headless Chromium,
//! driven through ChromeDriver: the live countdown, in-place updates, the automatic reload when
//! maintenance ends or a proxied upstream comes back (and not before), the operator's message,
//! hostile text, a phone-sized viewport; and the dashboard's Fleet panel.
//! Screenshots go to `artifacts/browser/`. One file a theme; the harness they share is in
//! tests/common, the WebDriver client in webdriver.rs beside this file.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (scripts/test.sh installs them); without
//! them the tests fail, unless `KINFRA_SKIP_BROWSER=1`.

#[path = "../common/mod.rs"]
mod common;
mod webdriver;

mod app;
mod fallback_look;
mod fallback_return;
mod fleet;
mod maintenance;
mod operator_message;
mod page;

use std::time::Duration;

/// Generous: the browser polls every 2 s, and CI machines can be slow.
const LIVE: Duration = Duration::from_secs(5);
