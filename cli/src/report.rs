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
        Error::ChangedDuringBuild { .. } => "something is still writing the site: wait for the generator to finish and build again".into(),
        Error::FileMismatch { .. } | Error::DigestMismatch { .. } | Error::Corrupt { .. } => {
            "the stored or received data is damaged or was tampered with: fetch or build the bundle again".into()
        }
        Error::UnknownRef { .. } => "list the bundles with `sitebundle list`".into(),
        Error::AmbiguousRef { .. } => "give more digits of the digest".into(),
        Error::BlobMissing { .. } => "the store is incomplete: build, pull or import the bundle again".into(),
        Error::DestExists { .. } => "choose an empty or new directory, or pass --replace to swap it atomically".into(),
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            "check the file's permissions for the user running sitebundle".into()
        }
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
    match (bundle_err, repl_err) {
        (Some(e), _) if e.is_integrity() => EXIT_INTEGRITY,
        (_, Some(e)) if e.is_integrity() => EXIT_INTEGRITY,
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
