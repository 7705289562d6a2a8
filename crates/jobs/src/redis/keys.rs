//! Key names. Every key of one partition starts with
//! `<namespace>:{p<N>}:` so it carries the hash tag `{p<N>}`: a Redis
//! Cluster keeps a partition in one slot, which is what lets one Lua script
//! touch all of a partition's keys. Pure.
//!
//! | key                                | type   | holds                                   |
//! |------------------------------------|--------|-----------------------------------------|
//! | `…:{pN}:stream:<priority>`         | stream | batches of ready jobs (id → immutable record); group `workers` |
//! | `…:{pN}:meta`                      | hash   | job id → mutable state (status, attempts, times, error, result) |
//! | `…:{pN}:entries`                   | hash   | `rank:entry` → jobs still queued in it, lease |
//! | `…:{pN}:completions`               | hash   | `rank:entry` → completion records of its jobs |
//! | `…:{pN}:parked`                    | hash   | records of jobs submitted delayed       |
//! | `…:{pN}:delayed`                   | zset   | delayed jobs and retries by `run_at`    |
//! | `…:{pN}:dead`                      | stream | dead letters                            |
//! | `…:{pN}:counts`                    | hash   | jobs per status                         |
//! | `…:{pN}:idem:<key>`                | string | id of the job submitted with the key    |
//! | `…:{pN}:finished:cancelled`        | list   | newest cancelled ids                    |

use crate::error::BackendError;

/// The key prefix of partition `partition`: `<namespace>:{p<partition>}:`.
pub(crate) fn partition_prefix(namespace: &str, partition: u32) -> String {
    format!("{namespace}:{{p{partition}}}:")
}

/// The counts hash of a partition (the key every script is routed by).
pub(crate) fn counts_key(prefix: &str) -> String {
    format!("{prefix}counts")
}

/// The meta hash of a partition: one field per job.
pub(crate) fn meta_key(prefix: &str) -> String {
    format!("{prefix}meta")
}

/// A namespace must be non-empty and must not contain braces (they would
/// change the hash tag) or whitespace.
pub(crate) fn check_namespace(namespace: &str) -> Result<(), BackendError> {
    if namespace.is_empty()
        || namespace.len() > 64
        || namespace
            .chars()
            .any(|c| c == '{' || c == '}' || c.is_whitespace())
    {
        return Err(BackendError::Storage(format!(
            "invalid redis namespace {namespace:?}: 1 to 64 characters, no braces or spaces"
        )));
    }
    Ok(())
}

/// The hash tag of a key (the part Redis Cluster hashes), if any.
#[cfg(test)]
pub(crate) fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let close = key[open + 1..].find('}')? + open + 1;
    (close > open + 1).then(|| &key[open + 1..close])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_a_partition_share_its_hash_tag() {
        let prefix = partition_prefix("staging", 7);
        assert_eq!(prefix, "staging:{p7}:");
        assert_eq!(hash_tag(&counts_key(&prefix)), Some("p7"));
        assert_eq!(hash_tag(&format!("{prefix}job:abc")), Some("p7"));
        assert_eq!(hash_tag("no-tag"), None);
        assert_eq!(hash_tag("empty{}tag"), None);
    }

    #[test]
    fn namespaces_that_would_break_the_tag_are_refused() {
        assert!(check_namespace("ironforge").is_ok());
        for bad in ["", "a{b", "a}b", "a b", &"x".repeat(65)] {
            assert!(check_namespace(bad).is_err(), "{bad}");
        }
    }
}
