//! Turning the wire's milliseconds-since-epoch into the ISO times people read.

use std::time::{Duration, UNIX_EPOCH};

/// `2026-11-23T15:07:01.123Z` for a time in ms since the Unix epoch.
pub fn iso_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// `1h 2m 3s` for a duration in ms.
pub fn human_duration_ms(ms: u64) -> String {
    humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
}
