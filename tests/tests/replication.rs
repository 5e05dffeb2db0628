//! Replication against real services (../shared/services): one conformance suite over
//! `&dyn Target`, run against the plain registry, the TLS + basic-auth registry, moto (S3),
//! Azurite, a local directory; the read side against nginx (HTTP origin) and fake-gcs-server;
//! then multi-target push / promote / rollback / status, two-phase failure, faults injected by a
//! proxy, and skopeo as a peer.
//!
//! Needs `SITEBUNDLE_TEST_*` (run through `scripts/test`, or `. /tmp/sitebundle-services/env`)
//! and `SITEBUNDLE_TEST_CORPUS`. Every client here talks to 127.0.0.1 only.

mod repl_support;

use std::sync::Arc;

use bundle::Digest;
use repl_support::fault_proxy::{Fault, FaultProxy};
use repl_support::*;
use replicator::push::{self, ChannelOutcome, RollbackTo};
use replicator::{ChannelRecord, Error, Target};

/// The conformance suite: every write-capable target must pass it.
async fn conformance(t: &dyn Target, fx: &Fixture) {
    let b = fx.bundle(0).await;
    let caps = t.capabilities();
    assert!(
        caps.writable,
        "{}: conformance needs a writable target",
        t.name()
    );

    // Nothing there yet.
    for blob in &b.blobs {
        assert!(
            !t.has_blob(&blob.digest).await.expect("has_blob"),
            "{}",
            t.name()
        );
    }
    assert!(matches!(
        t.get_manifest(&b.manifest).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        t.get_blob(&b.blobs[0].digest).await.map(|_| ()),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(t.read_channel("conf").await.expect("read_channel"), None);

    // Blobs, then manifest.
    for blob in &b.blobs {
        t.put_blob(&blob.digest, blob.size, &blob.path)
            .await
            .expect("put_blob");
        assert!(t.has_blob(&blob.digest).await.expect("has_blob"));
    }
    t.put_manifest(&b.manifest, b.manifest_bytes.clone())
        .await
        .expect("put_manifest");
    assert_eq!(
        t.get_manifest(&b.manifest).await.expect("get_manifest"),
        b.manifest_bytes
    );
    common_reads(t, fx, &b).await;

    // The id record (issue 10): written after the manifest, it makes the bundle id resolve with
    // no channel; a second write of the same manifest is a no-op.
    assert!(t.lookup_id(&b.id).await.expect("lookup_id").is_none());
    t.record_id(&b.manifest, &b.manifest_bytes)
        .await
        .expect("record_id");
    t.record_id(&b.manifest, &b.manifest_bytes)
        .await
        .expect("record_id again");
    let found = t
        .lookup_id(&b.id)
        .await
        .expect("lookup_id")
        .expect("a record");
    assert_eq!(found.manifest, b.manifest, "{}", t.name());
    for d in [b.id, b.manifest] {
        let r = replicator::resolve::resolve_digest(t, &d, None)
            .await
            .expect("resolve either digest");
        assert_eq!((r.manifest, r.id), (b.manifest, b.id), "{}: {d}", t.name());
        assert_eq!(r.bytes, b.manifest_bytes);
    }

    // Channels: create, conflict on create, conflict on a stale expectation, move.
    let r1 = b.record();
    t.swap_channel("conf", None, &r1)
        .await
        .expect("create channel");
    assert_eq!(
        t.read_channel("conf").await.expect("read"),
        Some(r1.clone())
    );
    let e = t.swap_channel("conf", None, &r1).await;
    assert!(matches!(e, Err(Error::ChannelConflict { .. })), "{e:?}");
    let b2 = fx.bundle(1).await;
    for blob in &b2.blobs {
        if !t.has_blob(&blob.digest).await.expect("has_blob") {
            t.put_blob(&blob.digest, blob.size, &blob.path)
                .await
                .expect("put_blob");
        }
    }
    t.put_manifest(&b2.manifest, b2.manifest_bytes.clone())
        .await
        .expect("put_manifest 2");
    let stale = ChannelRecord {
        manifest: b2.manifest,
        ..b2.record()
    };
    let e = t.swap_channel("conf", Some(&stale), &b2.record()).await;
    assert!(matches!(e, Err(Error::ChannelConflict { .. })), "{e:?}");
    assert_eq!(
        t.read_channel("conf").await.expect("read"),
        Some(r1.clone())
    );
    t.swap_channel("conf", Some(&r1), &b2.record())
        .await
        .expect("move channel");
    assert_eq!(
        t.read_channel("conf").await.expect("read"),
        Some(b2.record())
    );
    assert!(t
        .list_channels()
        .await
        .expect("list_channels")
        .contains(&"conf".to_string()));

    // History, where kept.
    let ev = replicator::HistoryEvent {
        seq: 0,
        at: replicator::channel::now_rfc3339(),
        channel: "conf".into(),
        action: replicator::Action::Push,
        from: Some(r1.manifest),
        to: b2.manifest,
        to_id: b2.id,
        actor: "tests".into(),
        message: None,
    };
    if caps.history {
        t.append_history(&ev).await.expect("append 1");
        t.append_history(&ev).await.expect("append 2");
        let h = t.history("conf").await.expect("history");
        assert_eq!(h.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(h[1].to, b2.manifest);
    } else {
        assert!(t.history("conf").await.is_err());
    }

    // Pull back into a fresh store, verifying every byte.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = bundle::Store::open(dir.path()).expect("store");
    let m = replicator::pull::resolve(t, "conf").await.expect("resolve");
    assert_eq!(m, b2.manifest);
    let rep = replicator::pull::pull(t, &m, &store, &["pulled".into()], 4)
        .await
        .expect("pull");
    assert_eq!(rep.id, b2.id);
    assert!(rep.files > 0);
}

/// Reads every target must serve identically.
async fn common_reads(t: &dyn Target, _fx: &Fixture, b: &push::LocalBundle) {
    // Whole blob, verified.
    let cfg = &b.blobs[0];
    let bytes = replicator::read_blob_verified(t, &cfg.digest, 1 << 20)
        .await
        .expect("read config");
    assert_eq!(bytes.len() as u64, cfg.size);
    // Download with verification.
    let dir = tempfile::tempdir().expect("tempdir");
    let l0 = &b.blobs[1];
    let dest = dir.path().join("l0");
    replicator::download_blob(t, &l0.digest, l0.size, &dest)
        .await
        .expect("download");
    assert_eq!(
        std::fs::read(&dest).expect("read"),
        std::fs::read(&l0.path).expect("read")
    );
    // A wrong size is caught and the file removed.
    let e = replicator::download_blob(t, &l0.digest, l0.size - 1, &dest).await;
    assert!(e.is_err() && !dest.exists());
    // Range read (the index trailer of layer 0).
    let local = std::fs::read(&l0.path).expect("read");
    let r = t
        .get_blob_range(&l0.digest, l0.size - 32, 32)
        .await
        .expect("range");
    assert_eq!(&r[..], &local[local.len() - 32..]);
}

/// Read-side checks for targets populated by someone else (HTTP origin, GCS).
async fn read_side(t: &dyn Target, fx: &Fixture, channel: &str, history_len: usize) {
    let b = fx.bundle(0).await;
    assert_eq!(
        t.read_channel(channel).await.expect("read_channel"),
        Some(b.record())
    );
    assert_eq!(t.read_channel("absent").await.expect("read"), None);
    assert!(t
        .list_channels()
        .await
        .expect("list")
        .contains(&channel.to_string()));
    for blob in &b.blobs {
        assert!(t.has_blob(&blob.digest).await.expect("has_blob"));
    }
    assert!(!t
        .has_blob(&Digest::of(b"not there"))
        .await
        .expect("has_blob"));
    assert_eq!(
        t.get_manifest(&b.manifest).await.expect("manifest"),
        b.manifest_bytes
    );
    common_reads(t, fx, &b).await;
    assert_eq!(
        t.history(channel).await.expect("history").len(),
        history_len
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let store = bundle::Store::open(dir.path()).expect("store");
    let rep = replicator::pull::pull(t, &b.manifest, &store, &[], 4)
        .await
        .expect("pull");
    assert_eq!(rep.id, b.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_dir() {
    let fx = fixture();
    let d = tempfile::tempdir().expect("tempdir");
    let t = dir_target(&d.path().join("target"));
    conformance(t.as_ref(), fx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_registry_plain() {
    let fx = fixture();
    let t = registry_target(&unique("conf"));
    conformance(t.as_ref(), fx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_registry_tls_basic_auth() {
    let fx = fixture();
    let t = auth_registry_target(
        &unique("conf"),
        &need("SITEBUNDLE_TEST_REGISTRY_AUTH_PASSWORD"),
    );
    conformance(t.as_ref(), fx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_wrong_password_fails_without_leaking_it() {
    let fx = fixture();
    let secret = "wrong-password-9f8e7d";
    let t = auth_registry_target(&unique("badauth"), secret);
    let b = fx.bundle(0).await;
    let e = push::push(&b, &[t], Some("x"), &opts())
        .await
        .expect_err("a wrong password must fail");
    let msg = format!("{e} {e:?}");
    assert!(msg.contains("127.0.0.1"), "{msg}");
    assert!(!msg.contains(secret), "secret leaked: {msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_s3_moto() {
    let fx = fixture();
    let t = s3_target(&unique("conf"));
    conformance(t.as_ref(), fx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_azurite() {
    let fx = fixture();
    let t = azure_target(&unique("conf"));
    conformance(t.as_ref(), fx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_origin_reads_a_directory_target() {
    let fx = fixture();
    let name = unique("http");
    let root = std::path::PathBuf::from(need("SITEBUNDLE_TEST_HTTP_ROOT")).join(&name);
    let dir = dir_target(&root);
    let b = fx.bundle(0).await;
    push::push(&b, &[dir], Some("live"), &opts())
        .await
        .expect("push to dir");
    let t = http_target(&format!("{}/{name}/", need("SITEBUNDLE_TEST_HTTP_ORIGIN")));
    assert!(!t.capabilities().writable);
    read_side(t.as_ref(), fx, "live", 1).await;
    // Writes are refused, naming the target.
    let e = push::push(&b, std::slice::from_ref(&t), Some("live"), &opts()).await;
    assert!(matches!(e, Err(Error::Usage(_))), "{e:?}");
    let e = t.swap_channel("live", None, &b.record()).await;
    assert!(matches!(e, Err(Error::ReadOnly { .. })), "{e:?}");
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_reads_seeded_objects() {
    // No emulator here accepts object_store's GCS writes (services README): push to a directory,
    // seed its files through fake-gcs-server's JSON upload API, and read them back with
    // object_store's GCS client (the same StoreTarget code that S3 and Azure prove for writes).
    let fx = fixture();
    let d = tempfile::tempdir().expect("tempdir");
    let b = fx.bundle(0).await;
    push::push(&b, &[dir_target(d.path())], Some("live"), &opts())
        .await
        .expect("push to dir");
    let prefix = unique("gcs");
    let endpoint = need("SITEBUNDLE_TEST_GCS_ENDPOINT");
    let bucket = need("SITEBUNDLE_TEST_GCS_BUCKET");
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let mut files = Vec::new();
    let mut stack = vec![d.path().to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).expect("read_dir") {
            let e = e.expect("entry");
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().expect("type").is_dir() {
                stack.push(e.path());
            } else if !name.starts_with('.') {
                files.push(e.path());
            }
        }
    }
    for f in files {
        let rel = f
            .strip_prefix(d.path())
            .expect("prefix")
            .to_string_lossy()
            .into_owned();
        let r = client
            .post(format!("{endpoint}/upload/storage/v1/b/{bucket}/o"))
            .query(&[
                ("uploadType", "media"),
                ("name", &format!("{prefix}/{rel}")),
            ])
            .body(std::fs::read(&f).expect("read"))
            .send()
            .await
            .expect("seed upload");
        assert!(r.status().is_success(), "seed {rel}: {}", r.status());
    }
    let t = gcs_target(&prefix);
    read_side(t.as_ref(), fx, "live", 1).await;
}

/// Three writable targets at once: push, idempotent re-push, second version, promote, status,
/// history, rollback by steps and by digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_promote_rollback_across_targets() {
    let fx = fixture();
    let d = tempfile::tempdir().expect("tempdir");
    let name = unique("multi");
    let targets: Vec<Arc<dyn Target>> = vec![
        dir_target(d.path()),
        registry_target(&name),
        s3_target(&name),
    ];
    let o = opts();
    let b1 = fx.bundle(0).await;
    let b2 = fx.bundle(1).await;

    let r = push::push(&b1, &targets, Some("staging"), &o)
        .await
        .expect("push 1");
    assert!(r.is_ok());
    for t in &r.targets {
        assert_eq!(t.uploaded, b1.blobs.len(), "{t:?}");
        assert!(matches!(
            t.channel,
            Some(ChannelOutcome::Moved { from: None })
        ));
    }
    // Idempotent: nothing uploaded, nothing moved.
    let r = push::push(&b1, &targets, Some("staging"), &o)
        .await
        .expect("push again");
    for t in &r.targets {
        assert_eq!(t.uploaded, 0, "{t:?}");
        assert_eq!(t.skipped, b1.blobs.len());
        assert!(matches!(t.channel, Some(ChannelOutcome::Unchanged)));
    }
    // v2 shares blobs with v1: fewer bytes go up.
    let r = push::push(&b2, &targets, Some("staging"), &o)
        .await
        .expect("push 2");
    let total2: u64 = b2.blobs.iter().map(|b| b.size).sum();
    for t in &r.targets {
        assert!(t.bytes <= total2, "{t:?}");
        assert!(
            matches!(t.channel, Some(ChannelOutcome::Moved { from: Some(f) }) if f == b1.manifest)
        );
    }

    let r = push::promote(&targets, "staging", "prod", &o)
        .await
        .expect("promote");
    assert!(r.is_ok() && r.manifest == b2.manifest);
    let st = replicator::status::status(&targets, None, true, 4).await;
    assert!(st.agrees(), "{:?}", st.problems);
    for t in &st.targets {
        assert_eq!(t.channels.len(), 2, "{t:?}");
    }

    let (from, h) = push::history(&targets, "staging").await.expect("history");
    assert!(from.starts_with("file://"));
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].from, None);
    assert_eq!(h[1].from, Some(b1.manifest));
    assert_eq!(h[1].actor, "sitebundle-tests");

    // Rollback one step: staging goes back to v1 everywhere.
    let r = push::rollback(&targets, "staging", RollbackTo::Steps(1), &o)
        .await
        .expect("rollback");
    assert!(r.is_ok() && r.manifest == b1.manifest);
    for t in &targets {
        assert_eq!(
            t.read_channel("staging")
                .await
                .expect("read")
                .map(|r| r.manifest),
            Some(b1.manifest),
            "{}",
            t.name()
        );
    }
    // Rollback by bundle id.
    let r = push::rollback(&targets, "staging", RollbackTo::Digest(b2.id), &o)
        .await
        .expect("rollback to id");
    assert_eq!(r.manifest, b2.manifest);
    let (_, h) = push::history(&targets, "staging").await.expect("history");
    assert_eq!(h.len(), 4);
    assert_eq!(h[2].action, replicator::Action::Rollback);
    // The same history is kept on every target, registries included.
    let moves = |h: &[replicator::HistoryEvent]| {
        h.iter()
            .map(|e| (e.seq, e.from, e.to, e.action))
            .collect::<Vec<_>>()
    };
    for t in &targets[1..] {
        let th = t.history("staging").await.expect("history");
        assert_eq!(moves(&th), moves(&h), "{}", t.name());
    }

    // Status notices disagreement: move prod on one target only.
    targets[0]
        .swap_channel("prod", Some(&b2.record()), &b1.record())
        .await
        .expect("swap one");
    let st = replicator::status::status(&targets, None, false, 4).await;
    assert!(!st.agrees());
    assert!(
        st.problems.iter().any(|p| p.contains("prod")),
        "{:?}",
        st.problems
    );
    // Promote refuses to copy a channel the targets disagree on.
    let e = push::promote(&targets, "prod", "other", &o).await;
    assert!(matches!(e, Err(Error::Disagree { .. })), "{e:?}");
}

/// Phase 1 fails on one target: no channel moves anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_target_down_moves_no_channel() {
    let fx = fixture();
    let d = tempfile::tempdir().expect("tempdir");
    let name = unique("down");
    let dead = format!("127.0.0.1:{}", dead_port());
    let good: Vec<Arc<dyn Target>> = vec![dir_target(d.path()), s3_target(&name)];
    let b1 = fx.bundle(0).await;
    let b2 = fx.bundle(1).await;
    push::push(&b1, &good, Some("prod"), &opts())
        .await
        .expect("push v1");

    let mut all = good.clone();
    all.push(registry_target_at(&dead, &name));
    let e = push::push(&b2, &all, Some("prod"), &opts())
        .await
        .expect_err("a dead target must fail the push");
    let msg = e.to_string();
    assert!(matches!(e, Error::Incomplete { .. }), "{e:?}");
    assert!(
        msg.contains(&dead),
        "the error names the failing target: {msg}"
    );
    for t in &good {
        assert_eq!(
            t.read_channel("prod")
                .await
                .expect("read")
                .map(|r| r.manifest),
            Some(b1.manifest),
            "{} moved although phase 1 failed",
            t.name()
        );
        assert_eq!(t.history("prod").await.expect("history").len(), 1);
    }
}

/// 503s and cut connections are retried; the push converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_retried() {
    let fx = fixture();
    let name = unique("faults");
    let b = fx.bundle(0).await;
    // Three faults in a row on one request: `opts()` allows four attempts. (oci-client used to
    // make an extra `GET /v2/` per request, which absorbed half of a longer plan.)
    let plan = vec![Fault::Http503, Fault::Cut, Fault::Http503];
    let reg = FaultProxy::start(&need("SITEBUNDLE_TEST_REGISTRY"), plan.clone()).await;
    let s3_up = need("SITEBUNDLE_TEST_S3_ENDPOINT")
        .trim_start_matches("http://")
        .to_string();
    let s3 = FaultProxy::start(&s3_up, plan).await;
    let targets: Vec<Arc<dyn Target>> = vec![
        registry_target_at(&reg.host(), &name),
        s3_target_at(&format!("http://{}", s3.host()), &name),
    ];
    let r = push::push(&b, &targets, Some("live"), &opts())
        .await
        .expect("push through faults");
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(reg.faults_served(), 3);
    assert_eq!(s3.faults_served(), 3);
    let st = replicator::status::status(&targets, None, true, 4).await;
    assert!(st.agrees(), "{:?}", st.problems);
}

/// The service dies in the middle of a push: every target is as it was; a re-run converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_push_leaves_targets_unchanged_and_rerun_converges() {
    let fx = fixture();
    let d = tempfile::tempdir().expect("tempdir");
    let name = unique("kill");
    let b1 = fx.bundle(0).await;
    let b3 = fx.bundle(2).await;
    let proxy = FaultProxy::start(&need("SITEBUNDLE_TEST_REGISTRY"), vec![]).await;
    let targets: Vec<Arc<dyn Target>> = vec![
        dir_target(d.path()),
        registry_target_at(&proxy.host(), &name),
    ];
    push::push(&b1, &targets, Some("prod"), &opts())
        .await
        .expect("push v1");
    // Let ~1 MB through, then the "registry" is gone.
    proxy.cut_after(1_000_000);
    let e = push::push(&b3, &targets, Some("prod"), &opts())
        .await
        .expect_err("push must fail when the registry dies");
    assert!(e.to_string().contains(&proxy.host()), "{e}");
    for t in &targets[..1] {
        assert_eq!(
            t.read_channel("prod")
                .await
                .expect("read")
                .map(|r| r.manifest),
            Some(b1.manifest)
        );
    }
    proxy.set_down(false);
    assert_eq!(
        targets[1]
            .read_channel("prod")
            .await
            .expect("read")
            .map(|r| r.manifest),
        Some(b1.manifest)
    );
    let r = push::push(&b3, &targets, Some("prod"), &opts())
        .await
        .expect("re-run converges");
    assert!(r.is_ok());
    let st = replicator::status::status(&targets, None, true, 4).await;
    assert!(st.agrees(), "{:?}", st.problems);
    assert_eq!(
        targets[1]
            .read_channel("prod")
            .await
            .expect("read")
            .map(|r| r.manifest),
        Some(b3.manifest)
    );
}

/// Two writers race for the same channel from the same expectation: exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_swaps_one_wins() {
    let fx = fixture();
    let d = tempfile::tempdir().expect("tempdir");
    let name = unique("race");
    let b1 = fx.bundle(0).await;
    let b2 = fx.bundle(1).await;
    let b3 = fx.bundle(2).await;
    for t in [dir_target(d.path()), s3_target(&name), azure_target(&name)] {
        for b in [&b1, &b2, &b3] {
            push::push(b, std::slice::from_ref(&t), None, &opts())
                .await
                .expect("push");
        }
        t.swap_channel("c", None, &b1.record())
            .await
            .expect("create");
        let (r1, r2, r3) = (b1.record(), b2.record(), b3.record());
        let (x, y) = tokio::join!(
            t.swap_channel("c", Some(&r1), &r2),
            t.swap_channel("c", Some(&r1), &r3)
        );
        assert!(
            x.is_ok() != y.is_ok(),
            "{}: exactly one must win: {x:?} {y:?}",
            t.name()
        );
        let now = t.read_channel("c").await.expect("read").map(|r| r.manifest);
        let winner = if x.is_ok() { b2.manifest } else { b3.manifest };
        assert_eq!(now, Some(winner), "{}", t.name());
    }
}

fn run(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().expect("run peer tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Unpack an OCI layout's `tag` with zstd + tar, layer by layer (no sitebundle code involved).
fn unpack_with_tar(layout: &std::path::Path, tag: &str, dest: &std::path::Path) {
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index"))
            .expect("json");
    let m = idx["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .expect("tag in index.json");
    let hex = |d: &serde_json::Value| {
        d.as_str()
            .expect("digest")
            .trim_start_matches("sha256:")
            .to_string()
    };
    let mf: serde_json::Value = serde_json::from_slice(
        &std::fs::read(layout.join("blobs/sha256").join(hex(&m["digest"]))).expect("manifest"),
    )
    .expect("json");
    std::fs::create_dir_all(dest).expect("mkdir");
    for l in mf["layers"].as_array().expect("layers") {
        let blob = layout.join("blobs/sha256").join(hex(&l["digest"]));
        run(std::process::Command::new("sh").arg("-c").arg(format!(
            "zstd -dc '{}' | tar -x -C '{}'",
            blob.display(),
            dest.display()
        )));
    }
}

/// skopeo reads what we pushed to the registry and to a directory target; the tree unpacked
/// with zstd + tar equals the site.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_reads_registry_and_dir_targets() {
    let fx = fixture();
    let d = tempfile::tempdir().expect("tempdir");
    let name = unique("peer");
    let reg = need("SITEBUNDLE_TEST_REGISTRY");
    let dir = d.path().join("target");
    let targets: Vec<Arc<dyn Target>> = vec![dir_target(&dir), registry_target(&name)];
    let b = fx.bundle(0).await;
    push::push(&b, &targets, Some("live"), &opts())
        .await
        .expect("push");

    let out = run(std::process::Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reg}/sbtest/{name}:live"),
    ]));
    assert_eq!(Digest::of(&out.stdout), b.manifest);

    let from_reg = d.path().join("from-reg");
    run(std::process::Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{reg}/sbtest/{name}:live"),
        &format!("oci:{}:live", from_reg.display()),
    ]));
    let from_dir = d.path().join("from-dir");
    run(std::process::Command::new("skopeo").args([
        "copy",
        &format!("oci:{}:live", dir.display()),
        &format!("oci:{}:live", from_dir.display()),
    ]));
    for (layout, out) in [(&from_reg, "tree-reg"), (&from_dir, "tree-dir")] {
        let dest = d.path().join(out);
        unpack_with_tar(layout, "live", &dest);
        assert_eq!(
            tree(&dest),
            tree(&fx.site[0]),
            "{out} differs from the site"
        );
    }
}

/// The registry process is killed (SIGKILL) in the middle of a push: no channel moves anywhere;
/// after a restart, the same push converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_killed_mid_push_then_rerun_converges() {
    let fx = fixture();
    let d = tempfile::tempdir().expect("tempdir");
    let reg = PrivateRegistry::start(&d.path().join("registry")).await;
    let proxy = FaultProxy::start(&reg.host, vec![]).await;
    let targets: Vec<Arc<dyn Target>> = vec![
        dir_target(&d.path().join("dir")),
        registry_target_at(&proxy.host(), "killed"),
    ];
    let b1 = fx.bundle(0).await;
    let b3 = fx.bundle(2).await;
    push::push(&b1, &targets, Some("prod"), &opts())
        .await
        .expect("push v1");
    // Kill the registry once ~300 kB of the next push went through.
    proxy.on_down(reg.killer());
    proxy.cut_after(300_000);
    let e = push::push(&b3, &targets, Some("prod"), &opts())
        .await
        .expect_err("push must fail when the registry is killed");
    assert!(!reg.is_running(), "the registry was not killed mid-push");
    assert!(matches!(e, Error::Incomplete { .. }), "{e:?}");
    assert_eq!(
        targets[0]
            .read_channel("prod")
            .await
            .expect("read")
            .map(|r| r.manifest),
        Some(b1.manifest),
        "the directory's channel moved although the registry died"
    );
    reg.restart().await;
    proxy.set_down(false);
    assert_eq!(
        targets[1]
            .read_channel("prod")
            .await
            .expect("read")
            .map(|r| r.manifest),
        Some(b1.manifest)
    );
    let r = push::push(&b3, &targets, Some("prod"), &opts())
        .await
        .expect("re-run converges");
    assert!(r.is_ok());
    let st = replicator::status::status(&targets, None, true, 4).await;
    assert!(st.agrees(), "{:?}", st.problems);
}

/// Two repositories of one registry in one push: blobs go up once and are mounted into the
/// second repository.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_repository_mounts_blobs() {
    let fx = fixture();
    let name = unique("mount");
    let targets: Vec<Arc<dyn Target>> = vec![
        registry_target(&format!("{name}-a")),
        registry_target(&format!("{name}-b")),
    ];
    let b = fx.bundle(0).await;
    let r = push::push(&b, &targets, Some("live"), &opts())
        .await
        .expect("push");
    assert_eq!(r.targets[0].uploaded, b.blobs.len());
    assert_eq!(r.targets[1].uploaded, 0, "{:?}", r.targets[1]);
    assert_eq!(r.targets[1].bytes, 0);
    let st = replicator::status::status(&targets, None, true, 4).await;
    assert!(st.agrees(), "{:?}", st.problems);
}

/// A re-run repairs what is derived from a channel (index.json, which skopeo reads), even when
/// the channel itself already points at the bundle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_repairs_derived_index() {
    let fx = fixture();
    let d = tempfile::tempdir().expect("tempdir");
    let name = unique("repair");
    let b = fx.bundle(0).await;
    let dir = d.path().join("dir");
    let targets: Vec<Arc<dyn Target>> = vec![dir_target(&dir), s3_target(&name)];
    push::push(&b, &targets, Some("live"), &opts())
        .await
        .expect("push");
    std::fs::remove_file(dir.join("index.json")).expect("remove index.json");
    let r = push::push(&b, &targets, Some("live"), &opts())
        .await
        .expect("re-push");
    assert!(r
        .targets
        .iter()
        .all(|t| matches!(t.channel, Some(ChannelOutcome::Unchanged))));
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).expect("index.json"))
            .expect("json");
    assert_eq!(
        idx["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "live"
    );
    assert_eq!(idx["manifests"][0]["digest"], b.manifest.to_string());
}
