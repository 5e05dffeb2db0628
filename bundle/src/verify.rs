//! `verify`: every blob against its digest, every layer against its `diff_id`, every file against
//! the index. Layers are checked in parallel on rayon.

use crate::check::{check_layer, run_layers, VerifyOnly};
use crate::error::Result;
use crate::progress::Progress;
use crate::reader::Bundle;
use crate::store::BlobSource;

/// What a successful verification covered.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    /// Bundle id.
    pub id: crate::digest::Digest,
    /// Layers checked.
    pub layers: usize,
    /// Files checked (hardlinked duplicates count once per path).
    pub files: usize,
    /// Content bytes hashed.
    pub bytes: u64,
}

/// Verify every byte of `bundle` as stored in `source`.
pub fn verify(
    source: &dyn BlobSource,
    bundle: &Bundle,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    let n = bundle.meta.manifest.layers.len();
    progress.start("verify", bundle.index.total_bytes());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&k| std::cmp::Reverse(bundle.meta.manifest.layers[k].size));
    let bytes = run_layers(source, bundle, &order, |k, lines| {
        check_layer(source, bundle, k, lines, &mut VerifyOnly, progress)
    })?;
    progress.finish();
    Ok(VerifyReport {
        id: bundle.id(),
        layers: n,
        files: bundle.index.file_count(),
        bytes: bytes.iter().sum(),
    })
}
