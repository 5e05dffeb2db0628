//! `sitebundle build DIR`.

use anyhow::Result;
use bundle::manifest::Platform;
use bundle::{BuildOptions, WalkOptions};

use super::{bars, human, open_store, print_json};
use crate::args::{BuildArgs, Global};

pub fn run(g: &Global, a: BuildArgs) -> Result<u8> {
    let store = open_store(g)?;
    let platform: Platform = a.platform.parse()?;
    let opts = BuildOptions {
        compression: a.compression,
        os: platform.os,
        architecture: platform.architecture,
        variant: platform.variant,
        walk: WalkOptions {
            exclude: a.exclude,
            drop_bad_symlinks: a.drop_bad_symlinks,
        },
        use_cache: !a.no_cache,
        tags: a.tag,
    };
    let r = bundle::build(&a.dir, &store, &opts, &bars(g))?;
    if g.json {
        print_json(&r)?;
    } else if !g.quiet {
        eprintln!(
            "built {} files ({}) into {} layers ({} reused, {} compressed; {} of {} frames compressed); manifest {}",
            r.files,
            human(r.bytes),
            r.layers,
            r.layers_reused,
            human(r.compressed_bytes),
            r.frames_compressed,
            r.frames,
            r.manifest
        );
    }
    if !g.json {
        // The contract: the last line of stdout is the bundle id. With --json, stdout is one
        // JSON object instead (its `id` field), so that it parses.
        println!("{}", r.id);
    }
    Ok(0)
}
