"""imagetool.tarstream: the layer reader's own tar parser and its helper
thread, checked against Python's tarfile and gzip on the same bytes."""
import gzip
import hashlib
import io
import os
import random
import tarfile
import threading

import pytest

from imagetool import tarstream as ts


class _Chunks:
    """read_chunk() over bytes, in chunks of the given sizes (cycled)."""

    def __init__(self, data: bytes, sizes=(7, 512, 1000, 3)):
        self.data, self.sizes, self.pos, self.i = data, sizes, 0, 0

    def read_chunk(self):
        n = self.sizes[self.i % len(self.sizes)]
        self.i += 1
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out


def _parse(data: bytes, sizes=(7, 512, 1000, 3)):
    """[(entry, file data)] as the applier would see them."""
    r = ts.TarReader(_Chunks(data, sizes))
    out = []
    for e in ts.entries(r):
        if e.type == ts.REG and e.size:
            fd = os.memfd_create("entry")
            try:
                r.copy_to(fd, e.size)
                body = os.pread(fd, e.size + 1, 0)
            finally:
                os.close(fd)
        else:
            body = b""
        out.append((e, body))
    return out


def _sample(fmt, rnd: random.Random):
    """A tar in format fmt with every entry kind, long names and links,
    big ids, fractional times and binary xattrs (pax only)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        def add(name, kind, data=b"", **kw):
            ti = tarfile.TarInfo(name)
            ti.type = kind
            ti.mode = kw.get("mode", 0o644)
            ti.uid, ti.gid = kw.get("uid", 0), kw.get("gid", 0)
            ti.mtime = kw.get("mtime", 1_600_000_000)
            ti.linkname = kw.get("link", "")
            ti.devmajor, ti.devminor = kw.get("dev", (0, 0))
            if "pax" in kw:
                ti.pax_headers = kw["pax"]
            ti.size = len(data) if kind == tarfile.REGTYPE else 0
            t.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        add("etc", tarfile.DIRTYPE, mode=0o755)
        add("etc/motd", tarfile.REGTYPE, b"hello\n", mode=0o4755, uid=1000, gid=1001)
        add("etc/empty", tarfile.REGTYPE, b"")
        add("etc/big", tarfile.REGTYPE, bytes(rnd.getrandbits(8) for _ in range(70_000)))
        add("etc/exact", tarfile.REGTYPE, b"x" * 1024)
        add("etc/link", tarfile.SYMTYPE, link="motd")
        add("etc/hard", tarfile.LNKTYPE, link="etc/motd")
        add("dev", tarfile.DIRTYPE)
        add("dev/null", tarfile.CHRTYPE, dev=(1, 3), mode=0o666)
        add("dev/sda", tarfile.BLKTYPE, dev=(8, 0), mode=0o660)
        add("run/fifo", tarfile.FIFOTYPE)
        deep = "/".join(["d%02d" % i for i in range(30)]) + "/file-with-a-long-name"
        add(deep, tarfile.REGTYPE, b"deep")
        add("ünïcödé/日本", tarfile.REGTYPE, b"u")
        if fmt != tarfile.USTAR_FORMAT:  # GNU 'L'/'K' records or pax path/linkpath
            add("l" * 120, tarfile.SYMTYPE, link="t" * 150)
            add("h" * 130, tarfile.LNKTYPE, link="etc/" + "x" * 140)
            add("bigid", tarfile.REGTYPE, b"b", uid=3_000_000, gid=2_097_152)
        if fmt == tarfile.PAX_FORMAT:
            add("xa", tarfile.REGTYPE, b"x", pax={
                "SCHILY.xattr.user.comment": "a comment",
                "SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\xff",
                "mtime": "1600000000.123456789", "atime": "1500000000.5"})
    return buf.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT],
                         ids=["ustar", "gnu", "pax"])
@pytest.mark.parametrize("sizes", [(7, 512, 1000, 3), (1 << 20,), (511, 513)], ids=["odd", "big", "near-block"])
def test_entries_match_tarfile(fmt, sizes):
    data = _sample(fmt, random.Random(fmt))
    got = _parse(data, sizes)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as t:
        want = [(ti, t.extractfile(ti).read() if ti.isreg() else b"") for ti in t]
    assert len(got) == len(want)
    for (e, body), (ti, wbody) in zip(got, want):
        assert e.name == ti.name
        assert e.type == (ts.REG if ti.type in (tarfile.REGTYPE, tarfile.AREGTYPE) else ti.type.decode())
        assert (e.mode, e.uid, e.gid) == (ti.mode, ti.uid, ti.gid)
        assert e.linkname == ti.linkname
        assert body == wbody
        if ti.ischr() or ti.isblk():
            assert (e.devmajor, e.devminor) == (ti.devmajor, ti.devminor)
        if "mtime" in ti.pax_headers:
            assert e.mtime_ns == 1_600_000_000_123_456_789  # exact, not via a float
            assert e.atime_ns == 1_500_000_000_500_000_000
        else:
            assert e.mtime_ns == int(ti.mtime) * 10**9 == e.atime_ns
        wx = {k[13:]: v.encode("utf-8", "surrogateescape") for k, v in ti.pax_headers.items()
              if k.startswith("SCHILY.xattr.")}
        assert (e.xattrs or {}) == wx


def test_global_pax_header_changes_nothing():
    """As in Go's archive/tar under Docker and containerd: a global header
    (even one with a size) must not make the layer read differently."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"uid": "4242", "size": "0", "path": "evil",
                                   "SCHILY.xattr.user.g": "global"}) as t:
        for n in ("a", "b"):
            ti = tarfile.TarInfo(n)
            ti.size = 600
            t.addfile(ti, io.BytesIO(b"z" * 600))
    got = _parse(buf.getvalue())
    assert [(e.name, e.uid, e.xattrs, body) for e, body in got] == [("a", 0, None, b"z" * 600),
                                                                      ("b", 0, None, b"z" * 600)]


def _pax_header(records: dict):
    body = b""
    for k, v in records.items():
        rec = k.encode() + b"=" + v + b"\n"
        n = len(rec) + 2
        while len(str(n)) + 1 + len(rec) != n:
            n += 1
        body += str(n).encode() + b" " + rec
    return _header(b"././@PaxHeader", typ=b"x", size=len(body)) + body + bytes(-len(body) % 512)


def _pax_entry(records: dict, name=b"f", data=b"x"):
    return _pax_header(records) + _header(name, size=len(data)) + data + bytes(-len(data) % 512)


def test_last_of_consecutive_pax_headers_counts():
    data = _pax_header({"uid": b"7"}) + _pax_entry({"gid": b"9"})
    got = _parse(data + bytes(1024))
    assert [(e.name, e.uid, e.gid) for e, _ in got] == [("f", 0, 9)]


@pytest.mark.parametrize("records, what", [
    ({"size": b"-1536"}, "invalid size"),               # once looped forever
    ({"size": b"+7"}, "invalid size"),
    ({"uid": b"1_0"}, "invalid uid"),
    ({"uid": b" 1"}, "invalid uid"),
    ({"uid": b"4294967296"}, "uid 4294967296 out of range"),
    ({"mtime": b"99999999999999999999"}, "mtime .* out of range"),
    ({"path": b"a\0b"}, "NUL byte in path"),
    ({"linkpath": b"a\0b"}, "NUL byte in linkpath"),
    ({"SCHILY.xattr.user.a\0b": b"v"}, "NUL byte in xattr name"),
])
def test_bad_pax_values_are_errors(records, what):
    with pytest.raises(ts.TarError, match=what):
        _parse(_pax_entry(records) + bytes(1024))


def test_huge_extension_header_is_refused_before_reading_it():
    h = _header(b"././@PaxHeader", typ=b"x", size=300 << 20)
    with pytest.raises(ts.TarError, match="extension header of 314572800 bytes"):
        _parse(h + bytes(4096))


def test_base256_ids_out_of_range_are_errors():
    h = bytearray(_header(b"neg", magic=b"ustar  \0"))
    h[108:116] = b"\xff" * 8  # base-256 -1
    h[148:156] = b"        "
    h[148:156] = b"%06o\0 " % sum(h)
    with pytest.raises(ts.TarError, match="'neg': owner -1:0 out of range"):
        _parse(bytes(h) + bytes(1024))


def _header(name=b"f", typ=b"0", size=0, prefix=b"", magic=b"ustar\x0000", mode=b"0000644\0"):
    h = bytearray(512)
    h[0:len(name)] = name
    h[100:108] = mode
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    h[124:136] = b"%011o\0" % size
    h[136:148] = b"%011o\0" % 1_600_000_000
    h[156:157] = typ
    h[257:265] = magic
    h[345:345 + len(prefix)] = prefix
    h[148:156] = b"        "
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def test_v7_directory_prefix_and_base256():
    v7dir = _header(b"olddir/", typ=b"\0", magic=bytes(8))
    pref = _header(b"name", prefix=b"some/prefix")
    gnu = bytearray(_header(b"gnubig", magic=b"ustar  \0"))
    gnu[108:116] = b"\x80" + (5_000_000).to_bytes(7, "big")  # base-256 uid
    gnu[148:156] = b"        "
    gnu[148:156] = b"%06o\0 " % sum(gnu)
    got = _parse(v7dir + pref + bytes(gnu) + bytes(1024))
    assert [(e.name, e.type) for e, _ in got] == [("olddir", ts.DIR), ("some/prefix/name", ts.REG),
                                                 ("gnubig", ts.REG)]
    assert got[2][0].uid == 5_000_000


def test_end_marker_stops_and_missing_marker_is_accepted():
    one = _header(b"a")
    assert [e.name for e, _ in _parse(one + bytes(1024) + _header(b"after"))] == ["a"]
    assert [e.name for e, _ in _parse(one)] == ["a"]  # no end blocks at all, as Go's reader


@pytest.mark.parametrize("cut, what", [(300, "header cut short"), (512 + 100, "bytes of data missing")])
def test_truncated_tar_is_an_error(cut, what):
    data = _header(b"f", size=1000) + b"x" * 1024 + bytes(1024)
    with pytest.raises(ts.TarError, match=what):
        _parse(data[:cut])


def test_bad_checksum_names_the_offset():
    good = _header(b"a")
    bad = bytearray(_header(b"b"))
    bad[0] = ord("c")
    with pytest.raises(ts.TarError, match="byte 512: checksum mismatch"):
        _parse(good + bytes(bad) + bytes(1024))


@pytest.mark.parametrize("record", [b"5 a=b\n", b"99 path=x\n", b"x path=y\n", b"12 pathxyz\n\n\n"])
def test_corrupt_pax_record_is_an_error(record):
    data = _header(b"././@PaxHeader", typ=b"x", size=len(record))
    data += record + bytes(-len(record) % 512) + _header(b"f") + bytes(1024)
    with pytest.raises(ts.TarError, match="corrupt pax header"):
        _parse(data)


def test_sparse_entries_are_refused_by_name():
    with pytest.raises(ts.TarError, match="'holes': sparse files are not supported"):
        _parse(_header(b"holes", typ=b"S", magic=b"ustar  \0") + bytes(1024))


# ---------------------------------------------------------------- the helper thread

def _stream(tmp_path, raw: bytes, media_type=None):
    p = tmp_path / "blob"
    p.write_bytes(raw)
    return ts.LayerStream(str(p), media_type)


def _drain(s):
    out = b""
    while chunk := s.read_chunk():
        out += chunk
    return out


@pytest.mark.parametrize("kind", ["gzip", "zstd", "none"])
def test_stream_yields_and_hashes_everything(tmp_path, kind):
    data = random.Random(1).randbytes(3 << 20) + bytes(5000)  # several chunks, then padding
    raw = {"gzip": lambda d: gzip.compress(d, 1), "none": lambda d: d,
           "zstd": lambda d: __import__("zstandard").ZstdCompressor().compress(d)}[kind](data)
    with _stream(tmp_path, raw) as s:
        assert s.kind == kind
        assert _drain(s) == data
        assert s.finish() == (hashlib.sha256(data).hexdigest(), len(data))


def test_multi_member_gzip_with_zero_padding(tmp_path):
    raw = gzip.compress(b"first ") + bytes(100) + gzip.compress(b"second") + bytes(7)
    with _stream(tmp_path, raw, "application/vnd.oci.image.layer.v1.tar+gzip") as s:
        assert _drain(s) == gzip.decompress(gzip.compress(b"first ") + gzip.compress(b"second"))


@pytest.mark.parametrize("damage, what", [
    (lambda r: r[: len(r) // 2], "truncated gzip stream"),
    (lambda r: r[:-8] + bytes(8), "corrupt gzip stream"),        # CRC/length trailer wrong
    (lambda r: r + b"garbage", "corrupt gzip stream"),
    (lambda r: b"", "empty gzip stream"),
])
def test_damaged_gzip_is_an_error(tmp_path, damage, what):
    raw = damage(gzip.compress(random.Random(2).randbytes(200_000)))
    with _stream(tmp_path, raw, "application/vnd.oci.image.layer.v1.tar+gzip") as s:
        with pytest.raises(ts.StreamError, match=what):
            _drain(s)


def test_close_stops_the_helper_midway(tmp_path):
    data = random.Random(3).randbytes(32 << 20)
    before = set(threading.enumerate())
    s = _stream(tmp_path, gzip.compress(data, 1))
    assert s.read_chunk()  # the helper is now blocked on a full queue
    assert set(threading.enumerate()) - before  # it runs on a thread of its own
    s.close()
    s.close()  # idempotent
    # (compared by identity: threads of earlier tests may end meanwhile)
    assert not set(threading.enumerate()) - before
    assert s.size < len(data)  # it stopped instead of inflating the rest
