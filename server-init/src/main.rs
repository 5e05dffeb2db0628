//! `sitebundle-init`: parse the flags, set up logs, run one install or the sync loop, and turn
//! the result into an exit code (see [`server_init::error`]). All logic is in the library.

use std::process::ExitCode;

use clap::Parser;
use server_init::args::Args;
use server_init::error::{chain, ExitStatus};
use server_init::fetch::Timeouts;
use server_init::run::{self, Request, Want};
use server_init::{logging, service, InitError};

fn main() -> ExitCode {
    let args = Args::parse();
    logging::init(args.log_format);
    // One runtime for the life of the process: targets may share HTTP clients (one certificate
    // load and one keep-alive pool per origin host for every site of a sync pass).
    replicator::clients::enable();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitStatus::Local.into();
        }
    };
    match runtime.block_on(dispatch(args)) {
        Ok(code) => code.into(),
        Err(e) => {
            let code = e.exit_status();
            if e.dest_unchanged() {
                tracing::error!(code = code as u8, error = %chain(&e), hint = hint(&e), "failed; DEST is unchanged");
            } else {
                tracing::error!(code = code as u8, error = %chain(&e), hint = hint(&e), "failed; DEST could not be fully restored (see the error)");
            }
            code.into()
        }
    }
}

async fn dispatch(args: Args) -> Result<ExitStatus, InitError> {
    let timeouts = Timeouts {
        total: args.timeout,
        io: args.connect_timeout,
        lock: args.lock_timeout,
    };
    // Refuse bad rate settings before touching anything.
    replicator::net::Pace::from_env().map_err(|e| InitError::Usage(chain(&e)))?;
    if let Some(config) = &args.sync {
        let token = match (
            &args.token_file,
            std::env::var(service::SITEBUNDLE_SYNC_TOKEN),
        ) {
            (Some(p), _) => service::TokenSource::File(p.clone()),
            (None, Ok(v)) if !v.trim().is_empty() => service::TokenSource::Value(v),
            _ => service::TokenSource::None,
        };
        return service::run(service::Options {
            config: config.clone(),
            root: args.dest.clone(),
            status_file: args.status_file.clone(),
            interval: args.interval,
            timeouts,
            listen: args.listen,
            token,
            allowed_hosts: args.allowed_hosts.clone(),
        })
        .await;
    }
    let want = match (&args.digest, &args.channel) {
        (Some(d), _) => Want::Digest(run::parse_digest(d)?),
        (None, Some(c)) => Want::Channel(c.clone()),
        (None, None) => {
            return Err(InitError::Usage(
                "nothing to install: pass --digest, --channel or --sync".into(),
            ))
        }
    };
    let origins: Vec<String> = args
        .origins
        .iter()
        .map(|o| o.trim().to_string())
        .filter(|o| !o.is_empty())
        .collect();
    let started = std::time::Instant::now();
    let out = run::install_one(Request {
        want,
        origins,
        dest: args.dest.clone(),
        timeouts,
        keep: args.keep,
    })
    .await?;
    tracing::info!(
        id = %out.id,
        manifest = %run::show(out.manifest),
        changed = out.changed,
        fetched_bytes = out.fetched_bytes,
        layers_fetched = out.layers_fetched,
        layers_reused = out.layers_reused,
        origin = %out.origin.as_deref().unwrap_or("none (already installed)"),
        ms = started.elapsed().as_millis() as u64,
        dest = %args.dest.display(),
        "done"
    );
    Ok(ExitStatus::Ok)
}

/// What a user can do about an error (logged beside it).
fn hint(e: &InitError) -> &'static str {
    match e.exit_status() {
        ExitStatus::Usage => "check the flags and SITEBUNDLE_* variables (sitebundle-init --help)",
        ExitStatus::Origins => {
            "check that the origins are reachable and hold the digest (sitebundle status), and the credentials in the environment"
        }
        ExitStatus::Integrity => {
            "an origin served bytes that do not match the digest: re-push the bundle there, and check what sits between you and it"
        }
        ExitStatus::Local => {
            "a local problem (not the origins'): check that DEST is writable by this user, has free space, and that DEST/current is sitebundle-init's symlink"
        }
        ExitStatus::Ok => "",
    }
}
