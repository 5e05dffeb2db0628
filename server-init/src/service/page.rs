//! `GET /`: one HTML page for the person on call. Every site with its channel, digest, bundle
//! id, age of its last success and its last error; failing sites first-class visible (a red row
//! and a `FAILING` badge, `class="site failing"`); the config error, if any; recent swaps. No
//! script, no external asset (it works from a `kubectl port-forward` with no internet), every
//! value HTML-escaped (site names are restricted, but errors quote what origins sent).

use std::fmt::Write;

use super::{unix_now, State};

/// Escape text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// "3m ago", "2h ago", "never".
pub fn age(then: Option<u64>, now: u64) -> String {
    let Some(t) = then else {
        return "never".into();
    };
    let s = now.saturating_sub(t);
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86_399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

fn short(d: Option<&str>) -> String {
    match d {
        Some(d) => d
            .strip_prefix("sha256:")
            .unwrap_or(d)
            .chars()
            .take(12)
            .collect(),
        None => "-".into(),
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #ddd;vertical-align:top}\
tr.failing{background:#fde2e2}.badge{display:inline-block;padding:0 .4em;border-radius:.3em;font-weight:bold;font-size:.85em}\
.bad{background:#c62828;color:#fff}.good{background:#2e7d32;color:#fff}code{font-size:.9em}\
.err{color:#b71c1c;white-space:pre-wrap;word-break:break-word}.banner{padding:.6em;background:#c62828;color:#fff;font-weight:bold}";

/// The page.
pub fn render(st: &State) -> String {
    let now = unix_now();
    let failing = st.sites.values().filter(|s| !s.ok).count();
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"30\">\
         <title>sitebundle sync: {} sites, {} failing</title><style>{STYLE}</style></head><body>",
        st.sites.len(),
        failing
    );
    let _ = write!(
        o,
        "<h1>sitebundle sync</h1><p id=\"summary\">{} sites, <strong>{} failing</strong>; {}; last pass: {}</p>",
        st.sites.len(),
        failing,
        if st.ready() { "ready" } else { "not ready" },
        st.last_pass
            .as_ref()
            .map(|p| escape(&format!("{} ({} ms, {}, {} failed)", p.started_at, p.duration_ms, p.trigger, p.failed)))
            .unwrap_or_else(|| "none yet".into())
    );
    if let Some(e) = &st.config_error {
        let _ = write!(
            o,
            "<p class=\"banner\" id=\"config-error\">Config refused, the last good one is in use: {}</p>",
            escape(e)
        );
    }
    o.push_str("<table id=\"sites\"><thead><tr><th>site</th><th>state</th><th>channel</th><th>digest</th><th>bundle id</th><th>last success</th><th>last error</th></tr></thead><tbody>");
    for (name, s) in &st.sites {
        let _ = write!(
            o,
            "<tr class=\"site{}\" data-site=\"{}\"><td><code>{}</code>{}</td><td>{}</td><td>{}</td>\
             <td><code title=\"{}\">{}</code></td><td><code title=\"{}\">{}</code></td><td title=\"{}\">{}</td><td class=\"err\">{}</td></tr>",
            if s.ok { "" } else { " failing" },
            escape(name),
            escape(name),
            s.preview_of
                .as_ref()
                .map(|p| format!(" <small>(preview of {})</small>", escape(p)))
                .unwrap_or_default(),
            if s.ok {
                "<span class=\"badge good\">OK</span>"
            } else {
                "<span class=\"badge bad\">FAILING</span>"
            },
            escape(s.channel.as_deref().unwrap_or(if s.pinned { "(pinned)" } else { "-" })),
            escape(s.manifest.as_deref().unwrap_or("")),
            escape(&short(s.manifest.as_deref())),
            escape(s.id.as_deref().unwrap_or("")),
            escape(&short(s.id.as_deref())),
            escape(s.last_success.as_deref().unwrap_or("")),
            escape(&age(s.last_success_unix, now)),
            escape(s.error.as_deref().unwrap_or("")),
        );
    }
    o.push_str("</tbody></table>");
    if !st.previews.is_empty() {
        o.push_str("<h2>Previews</h2><ul id=\"previews\">");
        for (site, p) in &st.previews {
            let _ = write!(
                o,
                "<li><code>{}</code> follows <code>{}</code>: {} channel(s){}{}</li>",
                escape(site),
                escape(&p.pattern),
                p.channels.len(),
                if p.pending_removal.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; to be removed: {}",
                        escape(
                            &p.pending_removal
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    )
                },
                p.error
                    .as_ref()
                    .map(|e| format!(" <span class=\"err\">{}</span>", escape(e)))
                    .unwrap_or_default()
            );
        }
        o.push_str("</ul>");
    }
    o.push_str("<h2>Recent swaps</h2><table id=\"swaps\"><thead><tr><th>when</th><th>site</th><th>from</th><th>to</th></tr></thead><tbody>");
    for w in st.swaps.iter().rev() {
        let _ = write!(
            o,
            "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td><code>{}</code></td></tr>",
            escape(&w.at),
            escape(&w.site),
            escape(&short(w.from.as_deref())),
            escape(&short(Some(&w.to)))
        );
    }
    o.push_str("</tbody></table><p><a href=\"/status\">status JSON</a> · <a href=\"/metrics\">metrics</a></p></body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_ages() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(age(None, 10), "never");
        assert_eq!(age(Some(0), 125), "2m ago");
    }

    #[test]
    fn failing_sites_are_flagged_and_errors_escaped() {
        let mut st = State::default();
        st.sites.insert(
            "blog".into(),
            super::super::SiteState {
                ok: false,
                error: Some("<script>alert(1)</script>".into()),
                ..Default::default()
            },
        );
        let html = render(&st);
        assert!(
            html.contains("class=\"site failing\" data-site=\"blog\""),
            "{html}"
        );
        assert!(!html.contains("<script>"), "{html}");
    }
}
