//! How errors reach the user: the error chain, a `hint:` line, and an exit code.

use bundle::Error;

/// Exit code for a generic error.
pub const EXIT_ERROR: u8 = 1;
/// Exit code for an integrity failure.
pub const EXIT_INTEGRITY: u8 = 3;
/// Exit code for "differences found".
pub const EXIT_DIFFERENT: u8 = 4;
/// Exit code when targets disagree or a channel moved on some targets only.
pub const EXIT_PARTIAL: u8 = 5;
/// Exit code for a local I/O error (disk full, permission denied, EIO on the store, DEST or the
/// site) or a site file that changed while it was read: the machine needs fixing, not the bundle.
pub const EXIT_LOCAL: u8 = 6;

/// What a failed local filesystem call means, in words a user acts on: from its errno, or from
/// its kind when a wrapper (tempfile, for one) kept only that.
fn local_cause(e: &std::io::Error) -> &'static str {
    use rustix::io::Errno;
    use std::io::ErrorKind as K;
    match e.raw_os_error().map(Errno::from_raw_os_error) {
        Some(Errno::NOSPC) => "disk full",
        Some(Errno::DQUOT) => "disk quota exceeded",
        Some(Errno::ACCESS) | Some(Errno::PERM) => "permission denied",
        Some(Errno::ROFS) => "read-only filesystem",
        Some(Errno::IO) => "the device reported an I/O error",
        Some(Errno::FBIG) => "file too large for this filesystem or limit",
        Some(Errno::MLINK) => "too many links",
        Some(Errno::NAMETOOLONG) => "name too long",
        Some(Errno::NOENT) => "no such file or directory",
        _ => match e.kind() {
            K::StorageFull => "disk full",
            K::QuotaExceeded => "disk quota exceeded",
            K::PermissionDenied => "permission denied",
            K::ReadOnlyFilesystem => "read-only filesystem",
            K::FileTooLarge => "file too large for this filesystem or limit",
            K::TooManyLinks => "too many links",
            K::InvalidFilename => "name too long",
            K::NotFound => "no such file or directory",
            _ => "local I/O error",
        },
    }
}

/// The hint for a failed local filesystem call on `path`.
fn local_hint(op: &str, path: &std::path::Path, source: &std::io::Error) -> String {
    let p = path.display();
    let cause = local_cause(source);
    match cause {
        "disk full" | "disk quota exceeded" => format!(
            "{cause} while trying to {op} {p}: free space on that filesystem (`df -h`) or choose \
             another directory, then run the same command again; nothing is corrupt and nothing \
             was half-installed"
        ),
        "permission denied" => format!(
            "{cause} while trying to {op} {p}: check that the user running sitebundle may use \
             it and its parent directory (ls -ld), or choose another place"
        ),
        "read-only filesystem" => {
            format!("{cause}: {p} cannot be written; choose a writable place")
        }
        "the device reported an I/O error" => format!(
            "{cause} on {p}: check the disk (dmesg); the data is not known to be corrupt, \
             only unreadable or unwritable here"
        ),
        _ => format!("{cause} while trying to {op} {p}; fix that, then run the command again"),
    }
}

/// What to do about an error, when there is something to say.
pub fn hint(e: &Error) -> Option<String> {
    Some(match e {
        Error::SourceMissing { .. } => "pass the directory your site generator writes (for example _site)".into(),
        Error::SourceEmpty { .. } => "build the site first; a bundle needs at least one file".into(),
        Error::BadSymlink { path, .. } => format!(
            "replace {path} with a relative link inside the site or a copy of its target, \
             leave it out with --exclude '{path}', or drop all such links with --drop-bad-symlinks"
        ),
        Error::SpecialFile { path, .. } => format!("remove it, or leave it out with --exclude '{path}'"),
        Error::NonUtf8Name { .. } => "rename the file to a UTF-8 name; web servers and URLs cannot address it reliably".into(),
        Error::InvalidPath { .. } => "rename the file; control characters and over-long names cannot be served".into(),
        Error::NormalizationCollision { second, .. } => format!(
            "keep one of the two names (they are the same URL on macOS and after normalization), \
             or leave one out with --exclude '{second}'"
        ),
        Error::ChangedDuringBuild { path } => format!(
            "{path} changed while it was being read (something is still writing the site): \
             wait for the generator to finish and build again"
        ),
        Error::FileMismatch { .. } | Error::DigestMismatch { .. } | Error::Corrupt { .. } => {
            "the stored or received data is damaged or was tampered with: fetch or build the bundle again".into()
        }
        Error::UnknownRef { .. } => "list the bundles with `sitebundle list`".into(),
        Error::AmbiguousRef { .. } => "give more digits of the digest".into(),
        Error::BlobMissing { .. } => "the store is incomplete: build, pull or import the bundle again".into(),
        Error::DestExists { .. } => "choose an empty or new directory, or pass --replace to swap it atomically".into(),
        Error::Io { op, path, source } => local_hint(op, path, source),
        Error::InvalidPattern { .. } => "an --exclude pattern knows `*`, `**` and `?`; other characters stand for themselves".into(),
        _ => return None,
    })
}

/// Print an error chain and hint to stderr; return the exit code.
pub fn report(err: &anyhow::Error) -> u8 {
    let mut msg = format!("error: {err}");
    let mut cause = err.source();
    while let Some(c) = cause {
        msg.push_str(&format!("\n  caused by: {c}"));
        cause = c.source();
    }
    eprintln!("{msg}");
    let bundle_err = err.chain().find_map(|e| e.downcast_ref::<Error>());
    if let Some(h) = bundle_err.and_then(hint) {
        eprintln!("hint: {h}");
    }
    let repl_err = err
        .chain()
        .find_map(|e| e.downcast_ref::<replicator::Error>());
    if let Some(h) = repl_err.and_then(replicator_hint) {
        eprintln!("hint: {h}");
    }
    if let (None, Some(replicator::Error::Io { op, path, source })) = (bundle_err, repl_err) {
        eprintln!("hint: {}", local_hint(op, path, source));
    }
    exit_code(bundle_err, repl_err)
}

/// The exit code of an error, from the library errors in its chain.
fn exit_code(bundle_err: Option<&Error>, repl_err: Option<&replicator::Error>) -> u8 {
    let local = |e: &Error| matches!(e, Error::Io { .. } | Error::ChangedDuringBuild { .. });
    match (bundle_err, repl_err) {
        (Some(e), _) if e.is_integrity() => EXIT_INTEGRITY,
        (_, Some(e)) if e.is_integrity() => EXIT_INTEGRITY,
        (Some(e), _) if local(e) => EXIT_LOCAL,
        (_, Some(replicator::Error::Io { .. })) => EXIT_LOCAL,
        _ => EXIT_ERROR,
    }
}

/// What to do about a website target's error.
fn site_hint(e: &replicator::site::SiteError) -> Option<String> {
    use replicator::site::SiteError as S;
    Some(match e {
        S::TooManyDeletes { .. } => "check that --to names the right bucket and REF the right \
            bundle; if the site really shrank, allow it with --max-delete N, P% or all"
            .into(),
        S::MarkerConflict { .. } => "another publish changed the target meanwhile: check \
            `sitebundle status`, then run the command again"
            .into(),
        S::BadMarker { .. } | S::TooManyUnfinished { .. } => "publish again with --reconcile: it \
            plans from a listing and the objects' metadata, and writes a new marker"
            .into(),
        S::Reserved { .. } => "remove .well-known/sitebundle.json and .well-known/sitebundle/ \
            from the site: website targets keep their marker there"
            .into(),
        S::BadRule { .. } => "fix the rule under [[site.headers]] in sitebundle.toml".into(),
        _ => return None,
    })
}

/// What to do about a replicator error.
pub fn replicator_hint(e: &replicator::Error) -> Option<String> {
    use replicator::Error as R;
    Some(match e {
        R::Incomplete { .. } => "fix the failing target(s) and run the same command again: \
            what is already uploaded is skipped"
            .into(),
        R::ChannelConflict { .. } => "someone else moved the channel meanwhile: check \
            `sitebundle status` and `sitebundle history`, then run the command again"
            .into(),
        R::Disagree { .. } => "make the targets agree first (push or promote again), \
            see `sitebundle status`"
            .into(),
        R::InvalidUrl { .. } => "targets look like oci://host/repo, oci+http://host:port/repo, \
            s3://bucket/prefix, gs://bucket/prefix, az://container/prefix, file:///path or https://origin/path"
            .into(),
        R::ReadOnly { .. } => "HTTP origins are read-only: push to the directory or bucket they serve".into(),
        R::DigestMismatch { .. } | R::Corrupt { .. } => {
            "the target holds damaged or tampered data: push the bundle to it again".into()
        }
        R::Site(s) => return site_hint(s),
        _ => return None,
    })
}
