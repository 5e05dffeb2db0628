//! Command-line arguments. Doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Exit codes, also listed in `--help`.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  error: bad input, missing bundle, network or target problem (the message says which)
  2  usage error (unknown flag, missing argument)
  3  integrity failure: a blob, layer or file does not match its digest
  4  differences found (diff --exit-code)
  5  targets disagree, or a channel moved on some targets only (status, push, promote, rollback)
  6  local I/O error: a file or directory of this machine could not be read or written (disk
     full, permission denied, I/O error; the message names it), or a site file changed while
     it was being bundled. Nothing was found corrupt: fix the machine and run again";

/// Pack a static site into a content-addressed, verifiable bundle; inspect, verify, extract.
#[derive(Debug, Parser)]
#[command(name = "sitebundle", version, after_help = EXIT_CODES, max_term_width = 100)]
pub struct Cli {
    /// Options shared by every command.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every command.
#[derive(Debug, Args)]
pub struct Global {
    /// Local store (an OCI image layout directory).
    /// [default: $XDG_DATA_HOME/sitebundle or ~/.local/share/sitebundle]
    #[arg(long, global = true, env = "SITEBUNDLE_HOME", value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars and no warnings on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a bundle from a site directory into the local store; the last line of stdout is its
    /// id (with --json, stdout is one JSON object whose `id` is the bundle id).
    Build(BuildArgs),
    /// List the entries of a bundle (from its index; no layer is read).
    Ls(RefArg),
    /// Show a bundle's ids, layers and sizes.
    Inspect(RefArg),
    /// Check every blob digest, every layer diff_id and every file hash of a bundle.
    Verify(RefArg),
    /// Show what changed between two bundles (from their indexes).
    Diff(DiffArgs),
    /// Extract a bundle into a directory (staged, verified, then renamed into place).
    Extract(ExtractArgs),
    /// Write a bundle as an oci-archive file (readable by `skopeo copy oci-archive:FILE`).
    Export(ExportArgs),
    /// Import the bundles of an oci-archive file into the local store, verifying them.
    Import(ImportArgs),
    /// List the bundles in the local store.
    List,
    /// Point a tag of the local store at a bundle.
    Tag(TagArgs),
    /// Remove bundles (with all their tags) from the local store; `gc` then frees their blobs.
    Rm(RmArgs),
    /// Delete blobs of the local store that no bundle references. Waits until no build, pull,
    /// import or tag is running on the store (they hold its lock), so it never deletes what they
    /// are writing.
    Gc,
    /// Make a bundle complete on every target, then (only then) move a channel on all of them.
    Push(PushArgs),
    /// Copy a bundle from a target into the local store, verifying every byte.
    Pull(PullArgs),
    /// Point channel TO at the bundle channel FROM points to, on every target.
    Promote(PromoteArgs),
    /// Move a channel back, on every target, to a digest or N moves back in its history.
    Rollback(RollbackArgs),
    /// Show a channel's history: when, from, to, who, message.
    History(HistoryArgs),
    /// For every target and channel: the bundle it points to, whether it is complete, and whether
    /// all targets agree (exit 5 when not).
    Status(StatusArgs),
    /// Publish a bundle's files into website targets (s3+site://, gs+site://, az+site://,
    /// file+site://): added files first, then changed ones, pages last, then the marker, then
    /// deletes.
    Publish(PublishArgs),
    /// Fetch every file of a bundle from live origins and compare it with the index; exit 4 on any
    /// difference.
    Audit(AuditArgs),
}

/// How website targets are published (push, promote, rollback and publish).
#[derive(Debug, Args, Clone, Default)]
pub struct SiteOpts {
    /// Keep the objects a publish removes until the next publish (`--keep-removed`) or for a
    /// while (`--keep-removed=24h`), so pages cached at the edge still find their old assets
    /// [default: no; [site] keep_removed].
    #[arg(
        long,
        value_name = "WHEN",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "next"
    )]
    pub keep_removed: Option<String>,
    /// Refuse a publish that deletes more objects than this: N, P% of the site, or all
    /// [default: 50%; [site] max_delete].
    #[arg(long, value_name = "N|P%")]
    pub max_delete: Option<String>,
    /// Parallel object requests per website target [default: 16; [site] jobs].
    #[arg(long, value_name = "N")]
    pub site_jobs: Option<usize>,
}

/// Targets: URLs (oci://, oci+http://, s3://, gs://, az://, file://, https://) or names from
/// sitebundle.toml; defaults from its `[defaults] to`. Credentials come from the environment only.
const TARGETS_HELP: &str =
    "Target URL or name from sitebundle.toml (repeatable) [default: [defaults] to]";

/// `push` arguments.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The bundle in the local store (tag, digest or unique prefix).
    #[arg(value_name = "REF")]
    pub reference: String,
    #[arg(long, value_name = "TARGET", help = TARGETS_HELP)]
    pub to: Vec<String>,
    /// Move this channel on every target once the bundle is complete everywhere.
    #[arg(long, short)]
    pub channel: Option<String>,
    /// Message recorded in the channel history [env: SITEBUNDLE_MESSAGE].
    #[arg(long, short)]
    pub message: Option<String>,
    /// Parallel blob uploads per target [env: SITEBUNDLE_JOBS, default 4].
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Website targets among --to.
    #[command(flatten)]
    pub site: SiteOpts,
}

/// `pull` arguments.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// A channel, a manifest digest, or a bundle id.
    #[arg(value_name = "REF")]
    pub reference: String,
    /// The target to read from (URL or name).
    #[arg(long, value_name = "TARGET")]
    pub from: String,
    /// Tag the bundle in the local store (repeatable).
    #[arg(long, short)]
    pub tag: Vec<String>,
    /// Time allowed for the whole pull from the target (e.g. 90s, 10m). A transfer slower than
    /// SITEBUNDLE_MIN_RATE bytes/s (default 1024) over SITEBUNDLE_RATE_WINDOW (30s) is cut sooner.
    #[arg(long, env = "SITEBUNDLE_TIMEOUT", default_value = "30m", value_parser = replicator::env::parse_duration)]
    pub timeout: std::time::Duration,
}

/// `promote` arguments.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The channel to copy (must point to the same bundle on every target).
    pub from: String,
    /// The channel to move.
    #[arg(value_name = "TO")]
    pub channel: String,
    #[arg(long, value_name = "TARGET", help = TARGETS_HELP)]
    pub to: Vec<String>,
    /// Message recorded in the channel history.
    #[arg(long, short)]
    pub message: Option<String>,
    /// Website targets among --to.
    #[command(flatten)]
    pub site: SiteOpts,
}

/// `rollback` arguments.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The channel to move back.
    pub channel: String,
    /// The manifest digest or bundle id to move it to.
    #[arg(long, value_name = "DIGEST", conflicts_with = "steps")]
    pub to: Option<String>,
    /// Move it to where it pointed this many moves ago [default: 1].
    #[arg(long, value_name = "N")]
    pub steps: Option<usize>,
    #[arg(long, value_name = "TARGET", help = TARGETS_HELP)]
    pub target: Vec<String>,
    /// Message recorded in the channel history.
    #[arg(long, short)]
    pub message: Option<String>,
    /// Website targets among --target.
    #[command(flatten)]
    pub site: SiteOpts,
}

/// `publish` arguments.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The bundle in the local store (tag, digest or unique prefix).
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Website target URL (s3+site://bucket/prefix, gs+site://, az+site://$web, file+site:///dir)
    /// or name from sitebundle.toml (repeatable) [default: the website targets of [defaults] to].
    #[arg(long, value_name = "TARGET")]
    pub to: Vec<String>,
    /// Print the plan (writes, deletes, bytes) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Plan from a listing and each object's BLAKE3 metadata instead of the marker (after the
    /// bucket was changed by hand).
    #[arg(long)]
    pub reconcile: bool,
    /// With --reconcile: also delete objects no sitebundle publish wrote.
    #[arg(long, requires = "reconcile")]
    pub delete_foreign: bool,
    /// Write the CDN invalidation paths here, one per line.
    #[arg(long, value_name = "FILE")]
    pub invalidation_paths: Option<PathBuf>,
    /// Most invalidation paths before folding them into wildcards [default: 1000].
    #[arg(long, value_name = "N")]
    pub invalidation_budget: Option<usize>,
    /// How to publish.
    #[command(flatten)]
    pub site: SiteOpts,
}

/// `audit` arguments.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Origin base URL(s) to audit (http:// or https://), as the public fetches them.
    #[arg(value_name = "URL")]
    pub urls: Vec<String>,
    /// Another origin (repeatable); all must serve the same marker.
    #[arg(long, value_name = "URL")]
    pub origin: Vec<String>,
    /// The bundle to expect: a tag, digest or prefix in the local store.
    #[arg(
        long,
        value_name = "REF",
        conflicts_with = "channel",
        required_unless_present = "channel"
    )]
    pub digest: Option<String>,
    /// The bundle a channel points to on the bundle target(s) given with --target.
    #[arg(long, short)]
    pub channel: Option<String>,
    /// Bundle target(s) to resolve --channel on (and to pull the bundle from when the local store
    /// lacks it) [default: the bundle targets of [defaults] to].
    #[arg(long, value_name = "TARGET")]
    pub target: Vec<String>,
    /// Website target to list for extra objects, one per origin in order (repeatable).
    #[arg(long, value_name = "TARGET")]
    pub list: Vec<String>,
    /// Check only this many files, picked at random (the seed is printed).
    #[arg(long, value_name = "N")]
    pub sample: Option<usize>,
    /// Seed of --sample [default: from the clock].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Parallel requests per origin [default: 8].
    #[arg(long, short, value_name = "N")]
    pub jobs: Option<usize>,
    /// At most this many requests per second per origin.
    #[arg(long, value_name = "PER_SECOND")]
    pub rate: Option<f64>,
    /// Do not add a cache-busting query and no-cache to requests.
    #[arg(long)]
    pub no_cache_bust: bool,
    /// Re-check failures with backoff until they pass or this much time passed (`90s`, `10m`).
    #[arg(long, value_name = "DURATION")]
    pub wait: Option<String>,
    /// Headers compared with the rules: all, content-type, none (an nginx origin sets its own).
    #[arg(long, default_value = "all", value_name = "WHICH")]
    pub headers: String,
    /// Do not require a marker (an origin that was not published by sitebundle publish).
    #[arg(long)]
    pub no_marker: bool,
}

/// `history` arguments.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The channel.
    pub channel: String,
    #[arg(long, value_name = "TARGET", help = TARGETS_HELP)]
    pub to: Vec<String>,
}

/// `status` arguments.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long, value_name = "TARGET", help = TARGETS_HELP)]
    pub to: Vec<String>,
    /// Only these channels (repeatable) [default: every channel found].
    #[arg(long, short)]
    pub channel: Vec<String>,
    /// Download and hash every blob of every channel.
    #[arg(long)]
    pub verify: bool,
}

/// `build` arguments.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The site directory (for example `_site`).
    pub dir: PathBuf,
    /// Tag the bundle in the local store (repeatable).
    #[arg(long, short)]
    pub tag: Vec<String>,
    /// Layer compression: zstd, or gzip for older runtimes and Flux.
    #[arg(long, default_value = "zstd")]
    pub compression: bundle::Compression,
    /// Leave out paths matching this glob (`*`, `**`, `?`; without `/` it matches names anywhere).
    #[arg(long, short = 'x', value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Leave out symlinks that are absolute, escape the site or dangle, with a warning, instead of
    /// refusing the site.
    #[arg(long)]
    pub drop_bad_symlinks: bool,
    /// Platform written in the image config (a site runs anywhere; runtimes want one):
    /// OS/ARCH or OS/ARCH/VARIANT, as linux/arm64/v8.
    #[arg(long, default_value = "linux/amd64", value_name = "OS/ARCH[/VARIANT]")]
    pub platform: String,
    /// Do not use or update the build cache.
    #[arg(long)]
    pub no_cache: bool,
    /// No effect, kept so existing scripts keep working: since issue 8 files are always read
    /// with read(2), never through a memory map (a file truncated while mapped killed the build
    /// with SIGBUS).
    #[arg(long, hide = true)]
    pub no_mmap: bool,
}

/// A single bundle reference.
#[derive(Debug, Args)]
pub struct RefArg {
    /// A tag, a digest (bundle id or manifest digest), or a unique digest prefix.
    #[arg(value_name = "REF")]
    pub reference: String,
}

/// `diff` arguments.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The old bundle.
    pub a: String,
    /// The new bundle.
    pub b: String,
    /// Exit with 4 when the bundles differ.
    #[arg(long)]
    pub exit_code: bool,
}

/// `extract` arguments.
#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// The bundle.
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Destination directory; must not exist or be empty, unless --replace.
    pub dest: PathBuf,
    /// Replace a non-empty destination atomically (rename exchange).
    #[arg(long)]
    pub replace: bool,
    /// Skip the final syncfs (faster; the tree may be lost on power failure).
    #[arg(long)]
    pub no_sync: bool,
}

/// `export` arguments.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The bundle.
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Output file.
    #[arg(long, short)]
    pub output: PathBuf,
    /// Reference name recorded in the archive (`oci-archive:FILE:NAME`, the name `podman load`
    /// and `ctr import` give the image). Default: REF when it is a tag, else the bundle's tag
    /// when it has exactly one, else `latest`.
    #[arg(long)]
    pub name: Option<String>,
}

/// `import` arguments.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// An oci-archive file.
    pub file: PathBuf,
}

/// `tag` arguments.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// The bundle.
    #[arg(value_name = "REF")]
    pub reference: String,
    /// The tag to set.
    pub tag: String,
}

/// `rm` arguments.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Bundles to remove (tags, digests or unique prefixes).
    #[arg(value_name = "REF", required = true)]
    pub references: Vec<String>,
}
