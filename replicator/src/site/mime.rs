//! `Content-Type` from a file name, from a table compiled into the binary.
//!
//! Why a bundled table: a publish from a laptop and one from a CI image must give every object the
//! same headers, so the type cannot come from the host's `/etc/mime.types` (which differs between
//! distributions: Debian says `application/javascript`, RFC 9239 says `text/javascript`). The table
//! is `mime_guess`'s (compiled in), corrected where it lags the registrations browsers rely on,
//! with `charset=utf-8` on every `text/*` type: site generators write UTF-8, and without the
//! parameter browsers guess. A rule in `sitebundle.toml` (`content_type = ...`) overrides it for
//! any path. [`TABLE_VERSION`] is recorded in the publish marker, so a new table shows up as a
//! header change and is applied by a metadata copy, not a re-upload.

/// Version of this table (and its corrections); part of the marker's header rules.
pub const TABLE_VERSION: u32 = 1;

/// Type for names with no known extension.
pub const DEFAULT_TYPE: &str = "application/octet-stream";

/// Corrections to `mime_guess`, by lowercase extension.
const OVERRIDES: &[(&str, &str)] = &[
    // RFC 9239: JavaScript is text/javascript, modules included.
    ("js", "text/javascript"),
    ("mjs", "text/javascript"),
    ("cjs", "text/javascript"),
    ("wasm", "application/wasm"),
    ("webmanifest", "application/manifest+json"),
    ("json", "application/json"),
    ("map", "application/json"),
    ("jsonld", "application/ld+json"),
    // RFC 8081: the font/ top-level type.
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("ttf", "font/ttf"),
    ("otf", "font/otf"),
    ("collection", "font/collection"),
    ("eot", "application/vnd.ms-fontobject"),
    ("svg", "image/svg+xml"),
    ("avif", "image/avif"),
    ("webp", "image/webp"),
    ("ico", "image/x-icon"),
    ("gz", "application/gzip"),
    ("br", "application/x-brotli"),
    ("zst", "application/zstd"),
    ("md", "text/markdown"),
    ("txt", "text/plain"),
    ("xml", "text/xml"),
    ("html", "text/html"),
    ("htm", "text/html"),
    ("css", "text/css"),
];

/// The `Content-Type` for a file name (the last path component, or the whole path).
pub fn content_type(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    let ext = match base.rfind('.') {
        // A leading dot starts a hidden name (`.nojekyll`), not an extension.
        Some(i) if i > 0 => base[i + 1..].to_ascii_lowercase(),
        _ => String::new(),
    };
    let t: String = if ext.is_empty() {
        DEFAULT_TYPE.to_string()
    } else if let Some((_, t)) = OVERRIDES.iter().find(|(e, _)| *e == ext) {
        (*t).to_string()
    } else {
        mime_guess::from_ext(&ext)
            .first_raw()
            .unwrap_or(DEFAULT_TYPE)
            .to_string()
    };
    with_charset(t)
}

/// Add `; charset=utf-8` to `text/*` types that have no parameter.
fn with_charset(t: String) -> String {
    if t.starts_with("text/") && !t.contains(';') {
        format!("{t}; charset=utf-8")
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_says_what_browsers_expect() {
        for (name, want) in [
            ("index.html", "text/html; charset=utf-8"),
            ("a/b/app.JS", "text/javascript; charset=utf-8"),
            ("m.mjs", "text/javascript; charset=utf-8"),
            ("x.wasm", "application/wasm"),
            ("site.webmanifest", "application/manifest+json"),
            ("f.woff", "font/woff"),
            ("f.woff2", "font/woff2"),
            ("f.otf", "font/otf"),
            ("s.css", "text/css; charset=utf-8"),
            ("sitemap.xml.gz", "application/gzip"),
            ("img.png", "image/png"),
            ("README", "application/octet-stream"),
            (".nojekyll", "application/octet-stream"),
            ("objects.inv", "application/octet-stream"),
            ("data.csv", "text/csv; charset=utf-8"),
        ] {
            assert_eq!(content_type(name), want, "{name}");
        }
    }
}
