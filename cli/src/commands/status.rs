//! `sitebundle status [--to T...] [--channel C...] [--verify]`.

use anyhow::Result;

use super::print_json;
use crate::args::{Global, StatusArgs};
use crate::report::EXIT_PARTIAL;
use crate::targets::{load_config, open_all, runtime};

pub fn run(g: &Global, a: StatusArgs) -> Result<u8> {
    let cfg = load_config()?;
    let (targets, sites) = open_all(&cfg, &a.to)?;
    let jobs = replicator::push::Options::from_env().jobs * 2;
    let only = (!a.channel.is_empty()).then_some(a.channel.as_slice());
    let st = runtime()?.block_on(replicator::status::status_with_sites(
        &targets, &sites, only, a.verify, jobs,
    ));
    if g.json {
        print_json(&st)?;
    } else {
        for t in &st.targets {
            println!("{}", t.target);
            if let Some(e) = &t.error {
                println!("  error: {e}");
            }
            for (c, s) in &t.channels {
                match s {
                    None => println!("  {c:<16} (absent)"),
                    Some(s) => {
                        let state = match (s.complete, s.verified) {
                            (true, Some(true)) => "complete, verified",
                            (true, None) => "complete",
                            (true, Some(false)) => "VERIFY FAILED",
                            (false, _) => "INCOMPLETE",
                        };
                        println!("  {c:<16} {}  id {}  {state}", s.manifest, s.id);
                    }
                }
            }
        }
        for s in &st.sites {
            println!("{}", s.target);
            match &s.serving {
                None => println!("  (serves nothing)"),
                Some(p) => {
                    let state = match (s.complete, s.verified) {
                        (true, Some(true)) => "complete, verified",
                        (true, None) => "complete",
                        (_, Some(false)) => "VERIFY FAILED",
                        (false, _) => "PUBLISH UNFINISHED",
                    };
                    let ch = p
                        .channel
                        .as_deref()
                        .map(|c| format!("  channel {c}"))
                        .unwrap_or_default();
                    println!("  serves {}  id {}{ch}  {state}", p.manifest, p.id);
                }
            }
        }
        if st.agrees() {
            println!("ok: {} target(s) agree", st.targets.len() + st.sites.len());
        }
    }
    for p in &st.problems {
        eprintln!("problem: {p}");
    }
    Ok(if st.agrees() { 0 } else { EXIT_PARTIAL })
}
