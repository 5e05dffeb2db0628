//! `sitebundle history CHANNEL [--target T...]`.

use anyhow::Result;

use super::print_json;
use crate::args::{Global, HistoryArgs};
use crate::targets::{open_targets, runtime};

pub fn run(g: &Global, a: HistoryArgs) -> Result<u8> {
    let targets = open_targets(&a.targets.get(g))?;
    let (from, events) = runtime()?.block_on(replicator::push::history(&targets, &a.channel))?;
    if g.json {
        print_json(&serde_json::json!({"channel": a.channel, "target": from, "events": events}))?;
    } else {
        println!("# history of {} from {from}", a.channel);
        for e in &events {
            let before = e
                .from
                .map_or_else(|| "(new)".to_string(), |d| d.to_string());
            let msg = e
                .message
                .as_deref()
                .map(|m| format!("  {m}"))
                .unwrap_or_default();
            println!(
                "{:>4}  {}  {:<8}  {} -> {}  by {}{msg}",
                e.seq,
                e.at,
                serde_json::to_value(e.action)?.as_str().unwrap_or(""),
                before,
                e.to,
                e.actor
            );
        }
    }
    Ok(0)
}
