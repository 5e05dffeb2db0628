#!/usr/bin/env python3
"""An independent reader of sitebundle format 1, written from spec/format.md alone.

It shares no code with the Rust implementation. Given an OCI image layout and a tag, it checks
every digest, requires the manifest to have only the members spec §7 lists and the config to be
in its one canonical byte form, decodes the index from layer 0's trailer (or, for a copy whose
layer 0 was re-compressed without it, rebuilds it from the layers, §7), checks every index rule
(§4), recomputes the layer grouping (§6), regenerates the canonical tar stream of every layer
(§5) and requires the decompressed layer to equal it byte for byte, with every file's BLAKE3
matching the index. With --extract DIR it then writes the tree. Memory limits (§9) are not
enforced: it reads everything into memory.

Needs: Python 3.9+, the `blake3` module (pip install blake3), and the `zstd` and `gzip` commands.
Usage: read_bundle.py LAYOUT_DIR TAG [--extract DIR]   (prints the bundle id; exit 1 on any failure)
"""
import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import tarfile

import blake3

TEXT_EXT = set("atom css csv htm html js json map md mjs rss svg txt webmanifest xhtml xml xsl yaml yml".split())
EPOCH = 946684800
MIB4 = 4 * 1024 * 1024


class Bad(Exception):
    pass


def sha256(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def blob(layout, digest):
    with open(os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1]), "rb") as f:
        data = f.read()
    if sha256(data) != digest:
        raise Bad(f"blob {digest} does not match its digest")
    return data


LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar": "tar",
    "application/vnd.docker.image.rootfs.diff.tar": "tar",
}
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = {OCI_MANIFEST: "application/vnd.oci.image.config.v1+json",
               DOCKER_MANIFEST: "application/vnd.docker.container.image.v1+json"}
LABELS = ("dev.sitebundle.bytes", "dev.sitebundle.files", "dev.sitebundle.format", "dev.sitebundle.index")


def decompress(encoding, data):
    if encoding == "tar":
        return data
    tool = ["zstd", "-dc"] if encoding == "zstd" else ["gzip", "-dc"]
    p = subprocess.run(tool, input=data, capture_output=True)
    if p.returncode != 0:
        raise Bad(f"{tool[0]} failed: {p.stderr.decode(errors='replace')}")
    return p.stdout


def zstd_frame_end(data):
    """Length of the one zstd frame at the start of `data` (RFC 8878 §3.1.1), walking its blocks."""
    if data[:4] != b"\x28\xb5\x2f\xfd":
        raise Bad("the index payload is not a zstd frame")
    fhd = data[4]
    single, checksum, dict_flag, fcs_flag = (fhd >> 5) & 1, (fhd >> 2) & 1, fhd & 3, fhd >> 6
    pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag]
    pos += (1 if single else 0, 2, 4, 8)[fcs_flag]
    while True:
        if pos + 3 > len(data):
            raise Bad("truncated zstd frame")
        h = int.from_bytes(data[pos:pos + 3], "little")
        last, btype, bsize = h & 1, (h >> 1) & 3, h >> 3
        pos += 3 + (1 if btype == 1 else bsize)
        if btype == 3:
            raise Bad("reserved zstd block type")
        if last:
            break
    return pos + (4 if checksum else 0)


def unzstd_one_frame(payload):
    """Spec §7: the index payload is exactly one zstd frame."""
    if zstd_frame_end(payload) != len(payload):
        raise Bad("the index payload holds more than one zstd frame")
    return decompress("zstd", payload)


def strict_json(raw, what):
    """Parse JSON, refusing a key given twice (readers that keep the first or the last would disagree)."""
    def pairs(kv):
        keys = [k for k, _ in kv]
        if len(keys) != len(set(keys)):
            raise Bad(f"{what}: a key appears twice")
        return dict(kv)
    try:
        return json.loads(raw, object_pairs_hook=pairs)
    except ValueError as e:
        raise Bad(f"{what}: {e}")


def canonical_decimal(v):
    return isinstance(v, str) and v.isdigit() and v.isascii() and (v == "0" or not v.startswith("0"))


def platform_ok(v):
    return isinstance(v, str) and 1 <= len(v) <= 32 and all(c in "abcdefghijklmnopqrstuvwxyz0123456789_" for c in v)


def check_manifest(manifest):
    """Spec §7/§9: an OCI image manifest (or its Docker schema 2 form) with only the listed members."""
    if not isinstance(manifest, dict):
        raise Bad("manifest is not an object")
    extra = set(manifest) - {"schemaVersion", "mediaType", "config", "layers", "annotations"}
    if "artifactType" in manifest or "subject" in manifest or extra:
        raise Bad(f"manifest has members the spec does not allow: {sorted(extra)}")
    mt = manifest.get("mediaType")
    if manifest.get("schemaVersion") != 2 or mt not in (OCI_MANIFEST, DOCKER_MANIFEST):
        raise Bad("not an OCI image manifest")
    fmt = manifest.get("annotations", {}).get("dev.sitebundle.format")
    if fmt != "1" and not (mt == DOCKER_MANIFEST and fmt is None):
        raise Bad("not a sitebundle format 1 manifest")
    for d in [manifest["config"]] + manifest["layers"]:
        if not isinstance(d, dict) or set(d) - {"mediaType", "digest", "size", "annotations"}:
            raise Bad("a descriptor has members other than mediaType, digest, size, annotations")
    if manifest["config"]["mediaType"] != CONFIG_TYPE[mt]:
        raise Bad("config is not an image config")
    if not 1 <= len(manifest["layers"]) <= 100:
        raise Bad("a bundle has 1 to 100 layers")
    for l in manifest["layers"]:
        if l["mediaType"] not in LAYER_TYPES:
            raise Bad(f"unsupported layer media type {l['mediaType']}")


def check_config(raw, n_layers):
    """Spec §7: the config in its one canonical byte form, exactly the four labels."""
    config = strict_json(raw, "config")
    if set(config) - {"architecture", "config", "os", "rootfs", "variant"}:
        raise Bad("config has members the spec does not list")
    labels = config["config"]["Labels"]
    if set(config["config"]) != {"Labels"} or set(labels) != set(LABELS):
        raise Bad("config must carry exactly the four dev.sitebundle labels")
    if labels["dev.sitebundle.format"] != "1":
        raise Bad("unsupported format label")
    if not (canonical_decimal(labels["dev.sitebundle.files"]) and canonical_decimal(labels["dev.sitebundle.bytes"])):
        raise Bad("files/bytes labels are not canonical decimals")
    if config["rootfs"].get("type") != "layers" or len(config["rootfs"]["diff_ids"]) != n_layers:
        raise Bad("rootfs.type is not layers, or diff_ids and layers disagree")
    if not (platform_ok(config["os"]) and platform_ok(config["architecture"])
            and ("variant" not in config or platform_ok(config["variant"]))):
        raise Bad("os/architecture/variant outside [a-z0-9_]{1,32}")
    canon = {"architecture": config["architecture"],
             "config": {"Labels": {k: labels[k] for k in sorted(labels)}},
             "os": config["os"],
             "rootfs": {"type": "layers", "diff_ids": config["rootfs"]["diff_ids"]}}
    if "variant" in config:
        canon["variant"] = config["variant"]
    if json.dumps(canon, separators=(",", ":"), ensure_ascii=False).encode() != raw:
        raise Bad("config is not in canonical form")
    return config, labels


def read_index(encoding, layer0):
    """The index from layer 0's trailer, or None when layer 0 carries none (spec §7)."""
    if encoding == "zstd":
        foot = layer0[-32:]
        if len(foot) < 32 or foot[:4] != struct.pack("<I", 0x184D2A5E) or foot[8:16] != b"SBINDEX1":
            return None
        if foot[4:8] != struct.pack("<I", 24):
            raise Bad("bad zstd index footer")
        off, length = struct.unpack("<QQ", foot[16:32])
        if off + length != len(layer0) - 32:
            raise Bad("footer does not locate the index frame")
        frame = layer0[off:off + length]
        magic, n = struct.unpack("<II", frame[:8])
        if magic != 0x184D2A5E or n != len(frame) - 8:
            raise Bad("bad index frame")
        packed = frame[8:]
    elif encoding == "gzip":
        foot = layer0[-61:]
        comment = foot[10:-11]
        if len(foot) < 61 or foot[:4] != b"\x1f\x8b\x08\x10" or not comment.startswith(b"SBINDEX1"):
            return None
        off, length = int(comment[8:24], 16), int(comment[24:40], 16)
        if off + length != len(layer0) - 61:
            raise Bad("footer does not locate the index member")
        members = layer0[off:off + length]
        packed = b""
        while members:
            head = members[:16]
            if len(head) < 16 or head[:10] != b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff":
                raise Bad("bad gzip index member")
            xlen, si, n = struct.unpack("<H2sH", head[10:16])
            if si != b"SB" or xlen != n + 4 or n == 0:
                raise Bad("bad gzip index subfield")
            if members[16 + n:26 + n] != b"\x03\x00" + bytes(8):
                raise Bad("gzip index member is not empty")
            packed += members[16:16 + n]
            members = members[26 + n:]
    else:
        return None
    return unzstd_one_frame(packed)


def rebuild_index(streams):
    """Spec §7: the index of a copy without a trailer, rebuilt from the layers' tar streams."""
    lines = []
    for n, stream in enumerate(streams):
        hashes = {}
        with tarfile.open(fileobj=io.BytesIO(stream), mode="r:") as t:
            for m in t:
                if m.isdir():
                    lines.append((m.name, f"d\t755\t0\t{n}\t-\t{m.name}"))
                elif m.issym():
                    lines.append((m.name, f"l\t777\t0\t{n}\t-\t{m.name}\t{m.linkname}"))
                elif m.islnk():
                    if m.linkname not in hashes:
                        raise Bad(f"layer {n}: hard link {m.name} to a name the layer does not store")
                    mode, size, h = hashes[m.linkname]
                    lines.append((m.name, f"f\t{mode}\t{size}\t{n}\t{h}\t{m.name}"))
                elif m.isreg():
                    h = blake3.blake3(t.extractfile(m).read()).hexdigest()
                    mode = "755" if m.mode & 0o111 else "644"
                    hashes[m.name] = (mode, m.size, h)
                    lines.append((m.name, f"f\t{mode}\t{m.size}\t{n}\t{h}\t{m.name}"))
                else:
                    raise Bad(f"layer {n}: unsupported member {m.name}")
    lines.sort(key=lambda x: x[0].encode())
    return ("sitebundle-index 1\n" + "".join(l + "\n" for _, l in lines)).encode()


def control(text):
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text)


def parse_index(raw, n_layers):
    """Spec §4: every rule, each line in its one canonical form."""
    text = raw.decode("utf-8")
    lines = text.split("\n")
    if lines[0] != "sitebundle-index 1" or lines[-1] != "":
        raise Bad("bad index header or unterminated last line")
    entries = []
    for line in lines[1:-1]:
        f = line.split("\t")
        t = f[0]
        if len(f) < 6 or not all(canonical_decimal(x) for x in (f[2], f[3])):
            raise Bad(f"bad line {line!r}")
        e = {"type": t, "mode": f[1], "size": int(f[2]), "layer": int(f[3]), "hash": f[4], "path": f[5]}
        if t == "l" and len(f) == 7:
            e["target"] = f[6]
            if f[6] == "" or f[6].startswith("/") or control(f[6]) or len(f[6].encode()) > 4096:
                raise Bad(f"bad symlink target {f[6]!r}")
            canon = ("777", 0, "-")
        elif t == "d" and len(f) == 6:
            canon = ("755", 0, "-")
        elif t == "f" and len(f) == 6:
            hexdigits = len(f[4]) == 64 and all(c in "0123456789abcdef" for c in f[4])
            canon = (f[1] if f[1] in ("644", "755") else "644", e["size"], f[4] if hexdigits else "-x")
        else:
            raise Bad(f"bad line {line!r}")
        if (e["mode"], e["size"], e["hash"]) != canon:
            raise Bad(f"line {line!r}: mode, size or hash not canonical")
        p = e["path"]
        if (p.startswith("/") or control(p) or len(p.encode()) > 4096
                or any(c in ("", ".", "..") or len(c.encode()) > 255 for c in p.split("/"))):
            raise Bad(f"bad path {p!r}")
        if (t == "f") != (e["layer"] >= 1) or e["layer"] >= n_layers:
            raise Bad(f"{p}: in layer {e['layer']}")
        entries.append(e)
    paths = [e["path"].encode() for e in entries]
    if paths != sorted(set(paths)) or len(paths) != len(set(paths)):
        raise Bad("index not sorted or has duplicates")
    dirs = {e["path"] for e in entries if e["type"] == "d"}
    for e in entries:
        parent = e["path"].rsplit("/", 1)[0] if "/" in e["path"] else None
        if parent is not None and parent not in dirs:
            raise Bad(f"parent of {e['path']} missing")
    check_links(entries)
    return entries


MAX_LINK_FOLLOWS = 32


def check_links(entries):
    """Spec §3: every symlink resolves physically, through the bundle's own links, to a directory
    or file of the site (or its root), following at most 32 links in all."""
    by_path = {e["path"]: e for e in entries}

    def resolve(link, budget, active):
        # Returns (path of what it resolves to, "" for the root; is_file; links followed).
        if budget < 1 or link["path"] in active:
            raise Bad(f"symlink {link['path']}: loops or follows more than {MAX_LINK_FOLLOWS} links")
        target = link["target"]
        if target == "" or target.startswith("/"):
            raise Bad(f"symlink {link['path']}: empty or absolute target")
        here = link["path"].rsplit("/", 1)[0] if "/" in link["path"] else ""
        is_file, used = False, 1
        for comp in target.split("/"):
            if is_file:
                raise Bad(f"symlink {link['path']}: goes through a regular file")
            if comp in ("", "."):
                continue
            if comp == "..":
                if here == "":
                    raise Bad(f"symlink {link['path']}: points outside the site")
                here = here.rsplit("/", 1)[0] if "/" in here else ""
                continue
            cand = f"{here}/{comp}" if here else comp
            e = by_path.get(cand)
            if e is None:
                raise Bad(f"symlink {link['path']}: target does not exist")
            if e["type"] == "l":
                here, is_file, n = resolve(e, budget - used, active | {link["path"]})
                used += n
                if used > budget:
                    raise Bad(f"symlink {link['path']}: loops or follows more than {MAX_LINK_FOLLOWS} links")
            else:
                here, is_file = cand, e["type"] == "f"
        return here, is_file, used

    for e in entries:
        if e["type"] == "l":
            resolve(e, MAX_LINK_FOLLOWS, frozenset())


def ext(name):
    dot = name.rfind(".")
    return name[dot + 1:].lower() if dot >= 0 else None


def is_text(path):
    name = path.rsplit("/", 1)[-1]
    e = ext(name)
    if e in ("br", "gz", "zst"):
        e = ext(name[:-len(e) - 1])
    return e in TEXT_EXT


def group(entries):
    """Spec §6: returns {(hash, exec): layer} for every content."""
    canon = {}
    for e in entries:  # sorted: first seen is the smallest path
        if e["type"] == "f":
            canon.setdefault((e["hash"], e["mode"]), e)
    files = list(canon.values())
    total = sum(e["size"] for e in files)
    target = 1
    while target < max(1, total // 64):
        target *= 2
    target = max(target, MIB4)
    while True:
        groups = []
        for cls in (True, False):
            cur, acc = [], 0
            for e in (x for x in files if is_text(x["path"]) == cls):
                if e["size"] >= target and cur:
                    groups.append(cur)
                    cur, acc = [], 0
                cur.append(e)
                acc += e["size"]
                h = int.from_bytes(blake3.blake3(e["path"].encode()).digest()[:8], "little")
                if acc >= 4 * target or h % target < e["size"]:
                    groups.append(cur)
                    cur, acc = [], 0
            if cur:
                groups.append(cur)
        if len(groups) < 100:
            break
        target *= 2
    return {(e["hash"], e["mode"]): n + 1 for n, g in enumerate(groups) for e in g}


def octal(v, width):
    return b"%0*o\0" % (width - 1, v)


def pax_record(key, value):
    rest = len(key) + len(value) + 3
    n = rest + 1
    while len(str(n)) + rest > n:
        n += 1
    n = len(str(n)) + rest
    return str(n).encode() + b" " + key.encode() + b"=" + value + b"\n"


def ustar(name, flag, mode, size, mtime, link):
    b = bytearray(512)
    b[0:len(name)] = name
    b[100:108] = octal(mode, 8)
    b[108:116] = octal(0, 8)
    b[116:124] = octal(0, 8)
    b[124:136] = octal(size, 12)
    b[136:148] = octal(mtime, 12)
    b[156:157] = flag
    b[157:157 + len(link)] = link
    b[257:263] = b"ustar\0"
    b[263:265] = b"00"
    b[329:337] = octal(0, 8)
    b[337:345] = octal(0, 8)
    b[148:156] = b" " * 8
    b[148:156] = b"%06o\0 " % sum(b)
    return bytes(b)


def pad(n):
    return b"\0" * ((512 - n % 512) % 512)


def header(path, flag, mode, size, mtime, link=b""):
    name = path.encode() + (b"/" if flag == b"5" else b"")
    pax = b""
    need_path = len(name) > 100 or not name.isascii()
    need_link = len(link) > 100 or not link.isascii()
    need_size = size > 0o77777777777
    if need_link:
        pax += pax_record("linkpath", link)
    if need_path:
        pax += pax_record("path", name)
    if need_size:
        pax += pax_record("size", str(size).encode())
    out = b""
    if pax:
        out += ustar(b"././@PaxHeader", b"x", 0o644, len(pax), mtime, b"") + pax + pad(len(pax))
    out += ustar(b"" if need_path else name, flag, mode, 0 if need_size else size, mtime, b"" if need_link else link)
    return out


def file_mtime(hexhash):
    return EPOCH + (int.from_bytes(bytes.fromhex(hexhash)[:4], "little") >> 4)


def check_layer(n, entries, stream, files_out):
    """Regenerate layer n from the index, splicing contents from `stream`; compare."""
    pos = 0
    first = {}
    for e in (x for x in entries if x["layer"] == n):
        if e["type"] == "d":
            h = header(e["path"], b"5", 0o755, 0, EPOCH)
        elif e["type"] == "l":
            h = header(e["path"], b"2", 0o777, 0, EPOCH, e["target"].encode())
        else:
            key = (e["hash"], e["mode"])
            mt = file_mtime(e["hash"])
            if key in first:
                h = header(e["path"], b"1", int(e["mode"], 8), 0, mt, first[key].encode())
            else:
                first[key] = e["path"]
                h = header(e["path"], b"0", int(e["mode"], 8), e["size"], mt)
        if stream[pos:pos + len(h)] != h:
            raise Bad(f"layer {n}: header of {e['path']} differs from the canonical one")
        pos += len(h)
        if e["type"] == "f" and e["path"] == first.get((e["hash"], e["mode"])):
            content = stream[pos:pos + e["size"]]
            if len(content) != e["size"] or blake3.blake3(content).hexdigest() != e["hash"]:
                raise Bad(f"file {e['path']}: content does not match its BLAKE3")
            files_out[e["path"]] = content
            pos += e["size"]
            if stream[pos:pos + len(pad(e["size"]))] != pad(e["size"]):
                raise Bad(f"layer {n}: bad padding after {e['path']}")
            pos += len(pad(e["size"]))
    if stream[pos:] != b"\0" * 1024:
        raise Bad(f"layer {n}: does not end with exactly two zero blocks")


def read(layout, tag, extract=None):
    index = json.load(open(os.path.join(layout, "index.json")))
    descs = [d for d in index["manifests"] if d.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
    if len(descs) != 1:
        raise Bad(f"tag {tag!r} not found once in index.json")
    manifest = strict_json(blob(layout, descs[0]["digest"]), "manifest")
    check_manifest(manifest)
    layers = manifest["layers"]
    config_bytes = blob(layout, manifest["config"]["digest"])
    if len(config_bytes) != manifest["config"]["size"]:
        raise Bad("config size differs from the descriptor")
    config, labels = check_config(config_bytes, len(layers))
    encodings = [LAYER_TYPES[l["mediaType"]] for l in layers]
    blobs = [blob(layout, l["digest"]) for l in layers]
    for l, b in zip(layers, blobs):
        if len(b) != l["size"]:
            raise Bad(f"layer {l['digest']}: size differs from the descriptor")
    streams = [decompress(enc, b) for enc, b in zip(encodings, blobs)]
    raw_index = read_index(encodings[0], blobs[0])
    if raw_index is None:
        raw_index = rebuild_index(streams)
    if sha256(raw_index) != labels["dev.sitebundle.index"]:
        raise Bad("index digest differs from the config label")
    entries = parse_index(raw_index, len(layers))
    files_ = [e for e in entries if e["type"] == "f"]
    if (str(len(files_)), str(sum(e["size"] for e in files_))) != (
            labels["dev.sitebundle.files"], labels["dev.sitebundle.bytes"]):
        raise Bad("files/bytes labels differ from the index")
    layer_of = group(entries)
    for e in entries:
        want = 0 if e["type"] in "dl" else layer_of[(e["hash"], e["mode"])]
        if e["layer"] != want:
            raise Bad(f"{e['path']}: in layer {e['layer']}, grouping rule says {want}")
    if max(e["layer"] for e in entries) + 1 != len(layers):
        raise Bad("index and manifest disagree on the number of layers")
    files = {}
    for n, (stream, diff_id) in enumerate(zip(streams, config["rootfs"]["diff_ids"])):
        if sha256(stream) != diff_id:
            raise Bad(f"layer {n}: diff_id mismatch")
        check_layer(n, entries, stream, files)
    if extract:
        os.makedirs(extract)
        for e in entries:
            p = os.path.join(extract, e["path"])
            if e["type"] == "d":
                os.mkdir(p)
        canon = {}
        for e in entries:
            if e["type"] == "f":
                p = os.path.join(extract, e["path"])
                key = (e["hash"], e["mode"])
                with open(p, "wb") as f:
                    f.write(files[canon.setdefault(key, e["path"])])
                os.chmod(p, int(e["mode"], 8))
        for e in entries:
            if e["type"] == "l":
                os.symlink(e["target"], os.path.join(extract, e["path"]))
    return manifest["config"]["digest"]


if __name__ == "__main__":
    args = sys.argv[1:]
    out = None
    if "--extract" in args:
        i = args.index("--extract")
        out = args[i + 1]
        del args[i:i + 2]
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    try:
        print(read(args[0], args[1], out))
    except Exception as e:  # any failure on hostile input is a refusal, never a traceback
        print(f"read_bundle: {e}", file=sys.stderr)
        sys.exit(1)
