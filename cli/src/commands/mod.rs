//! One module per command; each takes parsed arguments and returns an exit code.

mod archive;
mod audit;
mod build;
mod diff;
mod extract;
mod history;
mod inspect;
mod ls;
mod promote;
mod publish;
mod pull;
mod push;
mod rollback;
mod status;
mod store;
mod verify;

use anyhow::Result;
use bundle::{Bundle, Store};

use crate::args::{Cli, Command, Global};
use crate::progress::Bars;

/// Run the command.
pub fn run(cli: Cli) -> Result<u8> {
    let g = &cli.global;
    match cli.command {
        Command::Build(a) => build::run(g, a),
        Command::Ls(a) => ls::run(g, &a.reference),
        Command::Inspect(a) => inspect::run(g, &a.reference),
        Command::Verify(a) => verify::run(g, &a.reference),
        Command::Diff(a) => diff::run(g, a),
        Command::Extract(a) => extract::run(g, a),
        Command::Export(a) => archive::export(g, a),
        Command::Import(a) => archive::import(g, a),
        Command::List => store::list(g),
        Command::Tag(a) => store::tag(g, a),
        Command::Rm(a) => store::rm(g, a),
        Command::Gc => store::gc(g),
        Command::Push(a) => push::run(g, a),
        Command::Pull(a) => pull::run(g, a),
        Command::Promote(a) => promote::run(g, a),
        Command::Rollback(a) => rollback::run(g, a),
        Command::History(a) => history::run(g, a),
        Command::Status(a) => status::run(g, a),
        Command::Publish(a) => publish::run(g, a),
        Command::Audit(a) => audit::run(g, a),
    }
}

/// Open the local store named by `--store` / `SITEBUNDLE_HOME`, or the default.
pub fn open_store(g: &Global) -> Result<Store> {
    let root = g.store.clone().unwrap_or_else(Store::default_root);
    Ok(Store::open(root)?)
}

/// Resolve and open a bundle of the local store. A reference that names a bundle id (in full or
/// as a prefix) through `index.json`'s annotation must name the bundle opened: the annotation is
/// only a lookup aid, and a store whose `index.json` lies is refused (spec §9: a config whose
/// digest differs from the bundle id asked for).
pub fn open_bundle(store: &Store, reference: &str) -> Result<Bundle> {
    let m = store.resolve(reference)?;
    let b = Bundle::open(store, &m)?;
    let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
    let is_digestish = hex.len() >= 4 && hex.bytes().all(|c| c.is_ascii_hexdigit());
    let is_tag = store
        .list()?
        .iter()
        .any(|s| s.tags.iter().any(|t| t == reference));
    if is_digestish && !is_tag {
        let hex = hex.to_ascii_lowercase();
        if !m.hex().starts_with(&hex) && !b.id().hex().starts_with(&hex) {
            return Err(bundle::Error::corrupt(
                format!("local store {}", store.root().join("index.json").display()),
                format!(
                    "records manifest {m} under {reference}, but that manifest's bundle id is {}",
                    b.id()
                ),
            )
            .into());
        }
    }
    Ok(b)
}

/// Progress bars for this invocation.
pub fn bars(g: &Global) -> Bars {
    Bars::new(g.quiet, g.json)
}

/// The version of every `--json` schema (`spec/cli-json.md`); bumped when a field changes
/// meaning or goes away (new fields may appear without a bump).
pub const JSON_VERSION: u64 = 1;

/// Print a command's result as one pretty JSON object on stdout, with `"version"` added
/// ([`JSON_VERSION`]). Every command's `--json` goes through here, so no shape lacks it.
pub fn print_json(v: &impl serde::Serialize) -> Result<()> {
    let mut v = serde_json::to_value(v)?;
    match v.as_object_mut() {
        Some(o) => {
            o.insert("version".into(), JSON_VERSION.into());
        }
        None => anyhow::bail!("internal: a --json result must be an object"),
    }
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

/// Human-readable byte count.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
