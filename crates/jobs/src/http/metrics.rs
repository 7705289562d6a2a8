//! Renders the engine's counters ([`crate::observe::JobMetrics`]) and the
//! backend's queue counts in the Prometheus text exposition format 0.0.4.
//! Pure: snapshots in, text out. `observe` keeps non-cumulative histogram
//! buckets; the cumulative `le` series Prometheus expects are summed here.

use std::collections::HashMap;
use std::fmt::Write;

use crate::backend::QueueStats;
use crate::job::Priority;
use crate::observe::{Histogram, KindCounters, BUCKETS_SECONDS};

/// Reads one counter of a kind.
type CounterOf = fn(&KindCounters) -> u64;

/// The `Content-Type` of the exposition.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders every metric. `queue` is `None` when the backend did not answer;
/// the queue gauges are then left out rather than reported as zero.
pub fn render(
    kinds: &HashMap<String, KindCounters>,
    queue: Option<&QueueStats>,
    active: u64,
) -> String {
    let mut sorted: Vec<(&String, &KindCounters)> = kinds.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::with_capacity(1024 + sorted.len() * 2048);

    header(
        &mut out,
        "ironforge_jobs_submitted_total",
        "counter",
        "Jobs accepted (duplicates excluded), by kind and priority.",
    );
    for (kind, c) in &sorted {
        for priority in Priority::ALL {
            sample(
                &mut out,
                "ironforge_jobs_submitted_total",
                &[("kind", kind), ("priority", priority.as_str())],
                c.submitted[priority.rank()] as f64,
            );
        }
    }
    let counters: [(&str, &str, CounterOf); 4] = [
        (
            "ironforge_jobs_completed_total",
            "Attempts that completed successfully, by kind.",
            |c| c.completed,
        ),
        (
            "ironforge_jobs_failed_total",
            "Attempts that failed (retried or dead), by kind.",
            |c| c.failed,
        ),
        (
            "ironforge_jobs_retried_total",
            "Retries scheduled after a failed attempt, by kind.",
            |c| c.retried,
        ),
        (
            "ironforge_jobs_dlq_total",
            "Jobs sent to the dead letters, by kind.",
            |c| c.dlq,
        ),
    ];
    for (name, help, get) in counters {
        header(&mut out, name, "counter", help);
        for (kind, c) in &sorted {
            sample(&mut out, name, &[("kind", kind)], get(c) as f64);
        }
    }

    if let Some(stats) = queue {
        header(
            &mut out,
            "ironforge_queue_depth",
            "gauge",
            "Jobs ready to run, by priority.",
        );
        for priority in Priority::ALL {
            sample(
                &mut out,
                "ironforge_queue_depth",
                &[("priority", priority.as_str())],
                stats.queued.get(priority) as f64,
            );
        }
        header(
            &mut out,
            "ironforge_dlq_depth",
            "gauge",
            "Jobs waiting in the dead letters.",
        );
        sample(&mut out, "ironforge_dlq_depth", &[], stats.dead as f64);
    }
    header(
        &mut out,
        "ironforge_active_jobs",
        "gauge",
        "Jobs being handled right now by this process's workers.",
    );
    sample(&mut out, "ironforge_active_jobs", &[], active as f64);

    header(
        &mut out,
        "ironforge_job_duration_seconds",
        "histogram",
        "Run time of job attempts, by kind and outcome.",
    );
    for (kind, c) in &sorted {
        histogram(
            &mut out,
            "ironforge_job_duration_seconds",
            &[("kind", kind), ("status", "completed")],
            &c.duration_completed,
        );
        histogram(
            &mut out,
            "ironforge_job_duration_seconds",
            &[("kind", kind), ("status", "failed")],
            &c.duration_failed,
        );
    }
    header(
        &mut out,
        "ironforge_job_wait_time_seconds",
        "histogram",
        "Time from a job being due to its start, by kind.",
    );
    for (kind, c) in &sorted {
        histogram(
            &mut out,
            "ironforge_job_wait_time_seconds",
            &[("kind", kind)],
            &c.wait_time,
        );
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    write_labels(out, labels, None);
    let _ = writeln!(out, " {}", format_value(value));
}

fn histogram(out: &mut String, name: &str, labels: &[(&str, &str)], h: &Histogram) {
    let mut cumulative = 0u64;
    for (bound, count) in BUCKETS_SECONDS.iter().zip(h.buckets.iter()) {
        cumulative += count;
        let _ = write!(out, "{name}_bucket");
        write_labels(out, labels, Some(&format_value(*bound)));
        let _ = writeln!(out, " {cumulative}");
    }
    let _ = write!(out, "{name}_bucket");
    write_labels(out, labels, Some("+Inf"));
    let _ = writeln!(out, " {}", cumulative + h.overflow);
    let _ = write!(out, "{name}_sum");
    write_labels(out, labels, None);
    let _ = writeln!(out, " {}", format_value(h.sum));
    let _ = write!(out, "{name}_count");
    write_labels(out, labels, None);
    let _ = writeln!(out, " {}", h.count);
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (name, value) in labels.iter().copied().chain(le.map(|v| ("le", v))) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(name);
        out.push_str("=\"");
        escape_label_into(out, value);
        out.push('"');
    }
    out.push('}');
}

/// Label values escape backslash, double quote and line feed.
fn escape_label_into(out: &mut String, value: &str) {
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
}

/// HELP text escapes backslash and line feed.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{AttemptOutcome, JobMetrics};

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = JobMetrics::default();
        m.record_submitted("mail", Priority::High);
        m.record_submitted("mail", Priority::High);
        m.record_started("mail", 0.002);
        m.record_finished("mail", AttemptOutcome::Completed, 0.02);
        m.record_started("mail", 0.5);
        m.record_finished("mail", AttemptOutcome::Dead, 200.0);
        let mut stats = QueueStats::default();
        stats.queued.low = 7;
        stats.dead = 1;
        let text = render(&m.snapshot(), Some(&stats), m.active_jobs());
        for line in [
            "# TYPE ironforge_jobs_submitted_total counter",
            "ironforge_jobs_submitted_total{kind=\"mail\",priority=\"high\"} 2",
            "ironforge_jobs_submitted_total{kind=\"mail\",priority=\"low\"} 0",
            "ironforge_jobs_completed_total{kind=\"mail\"} 1",
            "ironforge_jobs_failed_total{kind=\"mail\"} 1",
            "ironforge_jobs_dlq_total{kind=\"mail\"} 1",
            "ironforge_jobs_retried_total{kind=\"mail\"} 0",
            "ironforge_queue_depth{priority=\"low\"} 7",
            "ironforge_dlq_depth 1",
            "ironforge_active_jobs 0",
            "# TYPE ironforge_job_duration_seconds histogram",
            "ironforge_job_duration_seconds_bucket{kind=\"mail\",status=\"completed\",le=\"0.01\"} 0",
            "ironforge_job_duration_seconds_bucket{kind=\"mail\",status=\"completed\",le=\"0.025\"} 1",
            "ironforge_job_duration_seconds_bucket{kind=\"mail\",status=\"completed\",le=\"+Inf\"} 1",
            "ironforge_job_duration_seconds_bucket{kind=\"mail\",status=\"failed\",le=\"120\"} 0",
            "ironforge_job_duration_seconds_bucket{kind=\"mail\",status=\"failed\",le=\"+Inf\"} 1",
            "ironforge_job_duration_seconds_count{kind=\"mail\",status=\"failed\"} 1",
            "ironforge_job_wait_time_seconds_bucket{kind=\"mail\",le=\"0.005\"} 1",
            "ironforge_job_wait_time_seconds_bucket{kind=\"mail\",le=\"1\"} 2",
            "ironforge_job_wait_time_seconds_count{kind=\"mail\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
        }
    }

    #[test]
    fn label_values_are_escaped_and_missing_queue_stats_are_omitted() {
        let m = JobMetrics::default();
        m.record_submitted("a\"b\\c\nd", Priority::Low);
        let text = render(&m.snapshot(), None, 0);
        assert!(text.contains(r#"kind="a\"b\\c\nd""#), "{text}");
        assert!(!text.contains("ironforge_queue_depth"));
        assert!(text.lines().all(|l| !l.is_empty()));
    }
}
