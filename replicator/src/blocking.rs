//! The one boundary between async I/O and CPU work (hashing, parsing, verifying): everything
//! CPU-bound runs through [`run`], on tokio's blocking pool, so hashing never stalls the network.
//! The `bundle` crate stays synchronous (it uses rayon inside).

use std::path::PathBuf;

use bundle::Digest;

use crate::error::{Error, Result};

/// Run CPU-bound `f` off the async workers.
pub async fn run<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Task(e.to_string()))
}

/// sha256 of a local file.
pub async fn hash_file(path: PathBuf) -> Result<Digest> {
    run(move || {
        let f = std::fs::File::open(&path).map_err(Error::io("open", &path))?;
        let mut w = bundle::digest::HashingWriter::new(std::io::sink());
        std::io::copy(
            &mut std::io::BufReader::with_capacity(256 * 1024, f),
            &mut w,
        )
        .map_err(Error::io("read", &path))?;
        let (_, d, _) = w.finish();
        Ok(d)
    })
    .await?
}
