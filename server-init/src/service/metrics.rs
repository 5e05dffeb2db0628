//! `GET /metrics`: the service's state in the Prometheus text format (version 0.0.4).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `sitebundle_sync_site_up` | gauge: 1 when the site's last sync succeeded | `site`, `channel` |
//! | `sitebundle_sync_site_last_success_timestamp_seconds` | gauge | `site` |
//! | `sitebundle_sync_site_duration_seconds` | gauge: the last sync's time | `site` |
//! | `sitebundle_sync_site_syncs_total`, `_failures_total`, `_swaps_total` | counter | `site` |
//! | `sitebundle_sync_site_bytes_fetched_total` | counter (bytes downloaded by syncs) | `site` |
//! | `sitebundle_sync_site_info` | gauge 1, the bundle id and digest served | `site`, `bundle_id`, `digest` |
//! | `sitebundle_sync_pass_duration_seconds` | histogram | |
//! | `sitebundle_sync_passes_total`, `sitebundle_sync_config_reloads_total`, `sitebundle_sync_config_errors_total` | counter | |
//! | `sitebundle_sync_config_ok`, `sitebundle_sync_ready`, `sitebundle_sync_sites` | gauge | |

use std::fmt::Write;

use super::{State, PASS_BUCKETS};

/// Escape a label value (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The metrics text.
pub fn render(st: &State) -> String {
    let mut o = String::new();
    head(&mut o, "sitebundle_sync_site_up", "gauge", "1 when the site's last sync succeeded, 0 when it failed (it keeps serving what it served).");
    for (name, s) in &st.sites {
        let _ = writeln!(
            o,
            "sitebundle_sync_site_up{{site=\"{}\",channel=\"{}\"}} {}",
            label(name),
            label(s.channel.as_deref().unwrap_or("")),
            u8::from(s.ok)
        );
    }
    head(
        &mut o,
        "sitebundle_sync_site_info",
        "gauge",
        "The bundle id and manifest digest a site serves (value 1).",
    );
    for (name, s) in &st.sites {
        let _ = writeln!(
            o,
            "sitebundle_sync_site_info{{site=\"{}\",bundle_id=\"{}\",digest=\"{}\"}} 1",
            label(name),
            label(s.id.as_deref().unwrap_or("")),
            label(s.manifest.as_deref().unwrap_or(""))
        );
    }
    head(
        &mut o,
        "sitebundle_sync_site_last_success_timestamp_seconds",
        "gauge",
        "When the site last synced successfully (seconds since the epoch; absent if never).",
    );
    for (name, s) in &st.sites {
        if let Some(t) = s.last_success_unix {
            let _ = writeln!(
                o,
                "sitebundle_sync_site_last_success_timestamp_seconds{{site=\"{}\"}} {t}",
                label(name)
            );
        }
    }
    head(
        &mut o,
        "sitebundle_sync_site_duration_seconds",
        "gauge",
        "Time the site's last sync took.",
    );
    for (name, s) in &st.sites {
        let _ = writeln!(
            o,
            "sitebundle_sync_site_duration_seconds{{site=\"{}\"}} {:.3}",
            label(name),
            s.duration_ms as f64 / 1000.0
        );
    }
    for (metric, help, get) in [
        (
            "sitebundle_sync_site_syncs_total",
            "Syncs of the site attempted.",
            (|s: &super::SiteState| s.syncs) as fn(&super::SiteState) -> u64,
        ),
        (
            "sitebundle_sync_site_failures_total",
            "Syncs of the site that failed.",
            |s| s.failures,
        ),
        (
            "sitebundle_sync_site_swaps_total",
            "Times the site's current moved.",
            |s| s.swaps,
        ),
        (
            "sitebundle_sync_site_bytes_fetched_total",
            "Bytes fetched for the site (0 until the installer reports them).",
            |s| s.bytes_fetched_total,
        ),
    ] {
        head(&mut o, metric, "counter", help);
        for (name, s) in &st.sites {
            let _ = writeln!(o, "{metric}{{site=\"{}\"}} {}", label(name), get(s));
        }
    }
    head(
        &mut o,
        "sitebundle_sync_pass_duration_seconds",
        "histogram",
        "Time a sync pass took.",
    );
    let mut cum = 0u64;
    for (i, b) in PASS_BUCKETS.iter().enumerate() {
        cum += st.pass_hist.get(i).copied().unwrap_or(0);
        let _ = writeln!(
            o,
            "sitebundle_sync_pass_duration_seconds_bucket{{le=\"{b}\"}} {cum}"
        );
    }
    let _ = writeln!(
        o,
        "sitebundle_sync_pass_duration_seconds_bucket{{le=\"+Inf\"}} {}",
        st.passes
    );
    let _ = writeln!(
        o,
        "sitebundle_sync_pass_duration_seconds_sum {:.3}",
        st.pass_seconds
    );
    let _ = writeln!(
        o,
        "sitebundle_sync_pass_duration_seconds_count {}",
        st.passes
    );
    for (metric, help, v) in [
        (
            "sitebundle_sync_passes_total",
            "Sync passes run.",
            st.passes,
        ),
        (
            "sitebundle_sync_config_reloads_total",
            "Config changes taken into use.",
            st.config_reloads,
        ),
        (
            "sitebundle_sync_config_errors_total",
            "Config changes refused (the last good config stayed).",
            st.config_errors,
        ),
    ] {
        head(&mut o, metric, "counter", help);
        let _ = writeln!(o, "{metric} {v}");
    }
    for (metric, help, v) in [
        (
            "sitebundle_sync_config_ok",
            "1 when the newest config file is the one in use.",
            u64::from(st.config_error.is_none()),
        ),
        (
            "sitebundle_sync_ready",
            "1 once a config is loaded and a first pass is done.",
            u64::from(st.ready()),
        ),
        (
            "sitebundle_sync_sites",
            "Site folders synced.",
            st.sites.len() as u64,
        ),
    ] {
        head(&mut o, metric, "gauge", help);
        let _ = writeln!(o, "{metric} {v}");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
