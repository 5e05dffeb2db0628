//! Command-line arguments. Doc comments here are the `--help` text.
//!
//! ## Vocabulary (the rules every command follows; apply them to new commands)
//!
//! 1. **Targets** are given with `--target TARGET` (repeatable; a URL or a name from
//!    `sitebundle.toml`, default `[defaults] to`), in every command that talks to targets: `push`,
//!    `promote`, `rollback`, `status`, `history`, `pull`. `sitebundle-init --origin` is the same
//!    thing (the same URLs, tried in order as read-only origins) and also accepts `--target`.
//! 2. **A digest to move to or look at** is `--digest DIGEST`: a manifest digest or a bundle id,
//!    either resolves on every target (`rollback --digest`, `status --digest`,
//!    `sitebundle-init --digest`).
//! 3. **What a command acts on** is positional: a local bundle `REF` (tag, digest or prefix), a
//!    `CHANNEL`, or `FROM TO` channels (`promote`). Channels to move are `--channel`.
//! 4. Old spellings stay for one release as **hidden aliases that warn** on stderr (`--to` for
//!    targets; `rollback --to DIGEST`; `pull --from`), via [`deprecated`].
//! 5. `--json` prints one JSON object per command, with `"version": 1` and the schema of
//!    `spec/cli-json.md`; data goes to stdout, messages to stderr.
//! 6. Exit codes mean the same in every command ([`EXIT_CODES`]), and every command's `--help`
//!    ends with one example and the codes.

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

/// The `--help` tail of a command: one example, then the exit codes (the same in every command;
/// the long text is [`EXIT_CODES`], shown by `sitebundle --help`).
macro_rules! example {
    ($ex:expr) => {
        concat!(
            "Example:\n  ",
            $ex,
            "\n\nExit codes: 0 ok, 1 error, 2 usage, 3 integrity, 4 differences (diff --exit-code),\n",
            "5 targets disagree or a channel moved on some targets only, 6 local I/O (sitebundle --help)"
        )
    };
}

/// Pack a static site into a content-addressed, verifiable bundle; inspect, verify, extract;
/// replicate it to targets and move channels.
///
/// Two digests name a bundle: the bundle id (content only: what `build` prints, what a pipeline
/// compares) and the manifest digest (what registries and Kubernetes image references address).
/// Every command that reads a target accepts either.
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
    /// Machine-readable JSON on stdout instead of text: one object with "version": 1 (schemas:
    /// spec/cli-json.md).
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
    /// bundle id (with --json, stdout is one JSON object whose `id` is the bundle id).
    #[command(after_help = example!("sitebundle build _site --tag v42"))]
    Build(BuildArgs),
    /// List the entries of a bundle (from its index; no layer is read).
    #[command(after_help = example!("sitebundle ls v42"))]
    Ls(RefArg),
    /// Show a bundle's ids, layers and sizes.
    #[command(after_help = example!("sitebundle inspect v42"))]
    Inspect(RefArg),
    /// Check every blob digest, every layer diff_id and every file hash of a bundle.
    #[command(after_help = example!("sitebundle verify v42"))]
    Verify(RefArg),
    /// Show what changed between two bundles (from their indexes).
    #[command(after_help = example!("sitebundle diff v41 v42 --exit-code"))]
    Diff(DiffArgs),
    /// Extract a bundle into a directory (staged, verified, then renamed into place).
    #[command(after_help = example!("sitebundle extract v42 /srv/site"))]
    Extract(ExtractArgs),
    /// Write a bundle as an oci-archive file (readable by `skopeo copy oci-archive:FILE`).
    #[command(after_help = example!("sitebundle export v42 -o site.tar"))]
    Export(ExportArgs),
    /// Import the bundles of an oci-archive file into the local store, verifying them.
    #[command(after_help = example!("sitebundle import site.tar"))]
    Import(ImportArgs),
    /// List the bundles in the local store.
    #[command(after_help = example!("sitebundle list"))]
    List,
    /// Point a tag of the local store at a bundle.
    #[command(after_help = example!("sitebundle tag sha256:3f1c... v42"))]
    Tag(TagArgs),
    /// Remove bundles (with all their tags) from the local store; `gc` then frees their blobs.
    #[command(after_help = example!("sitebundle rm v40 v41 && sitebundle gc"))]
    Rm(RmArgs),
    /// Delete blobs of the local store that no bundle references. Waits until no build, pull,
    /// import or tag is running on the store (they hold its lock), so it never deletes what they
    /// are writing.
    #[command(after_help = example!("sitebundle gc"))]
    Gc,
    /// Make a bundle complete on every target (blobs, manifest, bundle id record), then (only
    /// then) move a channel on all of them. The last line of stdout is the manifest digest.
    #[command(after_help = example!(
        "sitebundle push v42 --target oci://ghcr.io/me/site --target s3://bucket/site --channel staging"
    ))]
    Push(PushArgs),
    /// Copy a bundle from a target into the local store, verifying every byte.
    #[command(after_help = example!("sitebundle pull prod --target https://origin.example/site --tag prod"))]
    Pull(PullArgs),
    /// Point channel TO at the bundle channel FROM points to, on every target.
    #[command(after_help = example!("sitebundle promote staging prod --target registry --target s3"))]
    Promote(PromoteArgs),
    /// Move a channel back, on every target, to a digest or N moves back in its history.
    #[command(after_help = example!("sitebundle rollback prod --steps 1 --target file:///srv/bundles/site"))]
    Rollback(RollbackArgs),
    /// Show a channel's history: when, from, to, who, message.
    #[command(after_help = example!("sitebundle history prod --target file:///srv/bundles/site"))]
    History(HistoryArgs),
    /// For every target and channel (or digest): the bundle it points to, whether it is complete,
    /// and whether all targets agree (exit 5 when not).
    #[command(after_help = example!("sitebundle status --target registry --target s3 --channel prod --verify"))]
    Status(StatusArgs),
    /// Publish a bundle's files into website targets (s3+site://, gs+site://, az+site://,
    /// file+site://): added files first, then changed ones, pages last, then the marker, then
    /// deletes.
    #[command(after_help = example!("sitebundle publish v42 --target s3+site://www-example-com --dry-run"))]
    Publish(PublishArgs),
    /// Fetch every file of a bundle from live origins and compare it with the index; exit 4 on any
    /// difference.
    #[command(after_help = example!("sitebundle audit https://www.example.com/ --channel prod --target registry"))]
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

/// `--target` (rule 1 of the module docs), with `--to` as its deprecated hidden alias.
#[derive(Debug, Args)]
pub struct Targets {
    #[arg(long = "target", value_name = "TARGET", help = TARGETS_HELP)]
    pub target: Vec<String>,
    /// Deprecated spelling of --target.
    #[arg(long = "to", value_name = "TARGET", hide = true)]
    pub old_to: Vec<String>,
}

impl Targets {
    /// The targets given, warning once about a deprecated spelling.
    pub fn get(&self, g: &Global) -> Vec<String> {
        let mut v = self.target.clone();
        if !self.old_to.is_empty() {
            deprecated(g, "--to TARGET", "--target TARGET");
            v.extend(self.old_to.iter().cloned());
        }
        v
    }
}

/// Warn on stderr (unless `--quiet`) that `old` is a deprecated spelling of `new`.
pub fn deprecated(g: &Global, old: &str, new: &str) {
    if !g.quiet {
        eprintln!(
            "warning: `{old}` is deprecated and will be removed in a later release: use `{new}`"
        );
    }
}

/// `push` arguments.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The bundle in the local store (tag, digest or unique prefix).
    #[arg(value_name = "REF")]
    pub reference: String,
    #[command(flatten)]
    pub targets: Targets,
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
    /// The target to read from (URL or name) [default: the first of [defaults] to].
    #[arg(long, value_name = "TARGET")]
    pub target: Option<String>,
    /// Deprecated spelling of --target.
    #[arg(
        long = "from",
        value_name = "TARGET",
        hide = true,
        conflicts_with = "target"
    )]
    pub old_from: Option<String>,
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
    #[command(flatten)]
    pub targets: Targets,
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
    /// The manifest digest or bundle id to move it to (the manifest the channel had with that id,
    /// else what the digest names on every target).
    #[arg(long, value_name = "DIGEST", conflicts_with_all = ["steps", "old_to"])]
    pub digest: Option<String>,
    /// Deprecated spelling of --digest.
    #[arg(
        long = "to",
        value_name = "DIGEST",
        hide = true,
        conflicts_with = "steps"
    )]
    pub old_to: Option<String>,
    /// Move it to where it pointed this many moves ago [default: 1].
    #[arg(long, value_name = "N")]
    pub steps: Option<usize>,
    #[arg(long = "target", value_name = "TARGET", help = TARGETS_HELP)]
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
    #[arg(long = "target", value_name = "TARGET")]
    pub target: Vec<String>,
    /// Deprecated spelling of --target.
    #[arg(long = "to", value_name = "TARGET", hide = true)]
    pub old_to: Vec<String>,
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
    #[command(flatten)]
    pub targets: Targets,
}

/// `status` arguments.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub targets: Targets,
    /// Only these channels (repeatable) [default: every channel found, unless --digest is given].
    #[arg(long, short)]
    pub channel: Vec<String>,
    /// Where this manifest digest or bundle id resolves on each target, and whether it is
    /// complete there (repeatable).
    #[arg(long, value_name = "DIGEST")]
    pub digest: Vec<String>,
    /// Download and hash every blob of every channel (and digest).
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
