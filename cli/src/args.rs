//! Command-line arguments. Doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Exit codes, also listed in `--help`.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  error: bad input, missing bundle, I/O or network problem (the message says which)
  2  usage error (unknown flag, missing argument)
  3  integrity failure: a blob, layer or file does not match its digest
  4  differences found (diff --exit-code)";

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
    /// Platform written in the image config (a site runs anywhere; runtimes want one).
    #[arg(long, default_value = "linux/amd64", value_name = "OS/ARCH")]
    pub platform: String,
    /// Do not use or update the build cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Read files with read(2) only, never through a memory map.
    #[arg(long)]
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
    /// Reference name recorded in the archive (`oci-archive:FILE:NAME`).
    #[arg(long, default_value = "latest")]
    pub name: String,
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
