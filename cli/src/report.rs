//! How errors reach the user: the error chain, a `hint:` line, and an exit code.

use bundle::Error;

/// Exit code for a generic error.
pub const EXIT_ERROR: u8 = 1;
/// Exit code for an integrity failure.
pub const EXIT_INTEGRITY: u8 = 3;
/// Exit code for "differences found".
pub const EXIT_DIFFERENT: u8 = 4;

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
    match bundle_err {
        Some(e) if e.is_integrity() => EXIT_INTEGRITY,
        _ => EXIT_ERROR,
    }
}
