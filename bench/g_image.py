"""Image group: pyimg pull/unpack against skopeo copy + umoci unpack, from a
private docker-registry on loopback."""
from __future__ import annotations

import os
import shutil
import tempfile

import harness as H
import images as I

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYIMG = os.path.join(REPO, ".venv", "bin", "pyimg")


def _umount_under(path):
    """Unmount anything (overlay bundles) left below path, deepest first."""
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        mnts = [l.split()[1].replace("\\040", " ") for l in f]
    for m in sorted((m for m in mnts if m == path or m.startswith(path + "/")), key=len, reverse=True):
        H.run(["umount", "-l", m])


def _rmtree(path):
    _umount_under(path)
    shutil.rmtree(path, ignore_errors=True)


def _scratch_fs(size_gb: int) -> str:
    """A fresh ext4 (mkfs defaults, with a journal) on a sparse file on a
    loop device, mounted on a new directory; unmounted and removed when the
    group ends. Returns the mount point."""
    img = tempfile.mktemp(prefix="pyrunc-bench-fs-", suffix=".img", dir="/var/tmp")
    with open(img, "wb") as f:
        f.truncate(size_gb << 30)
    H.CLEANUP.push(os.unlink, img)
    H.run(["mkfs.ext4", "-q", "-F", img]).check()
    mnt = tempfile.mkdtemp(prefix="pyrunc-bench-fs-", dir="/var/tmp")
    H.CLEANUP.push(os.rmdir, mnt)
    H.run(["mount", "-o", "loop", img, mnt]).check()
    H.CLEANUP.push(lambda: H.run(["umount", "-l", mnt]))
    return mnt


class Ctx:
    """Where the group's registry, stores and bundles live.

    --image-fs loop (the default): on a fresh ext4 with a journal, made for
    the group, and every measured run's store and bundle is deleted (then
    synced) right after it.  --image-fs root: under /var/tmp on the root
    filesystem; there, on this machine's ext4 without a journal, the kernel
    skips inodes freed in the last 60-360 s when it allocates new ones, and
    looks each one up in the buffer cache to do so (fs/ext4/ialloc.c,
    find_inode_bit -> recently_deleted; only without a journal).  Deleting a
    6,700-file rootfs made every file creation after it slower for minutes
    (perf: half of `tar -x`'s profile in recently_deleted; `tar -xzf` of the
    debian layer 1.1 s before, 3.2 s after deleting earlier copies), a cost
    of the harness and of whatever ran before, not of the tool measured.
    So on root the measured runs' trees are only moved aside, and deleted
    when the group ends."""

    def __init__(self, args, report):
        self.args, self.report = args, report
        base = "/var/tmp"
        if args.image_fs == "loop":
            base = _scratch_fs(32)
        self.tmp = tempfile.mkdtemp(prefix="pyrunc-bench-img-", dir=base)
        H.CLEANUP.push(_rmtree, self.tmp)
        self.trash = os.path.join(self.tmp, "trash")
        os.mkdir(self.trash)
        self.n = 0
        self.defer = args.image_fs == "root"

    def d(self, name):
        self.n += 1
        return os.path.join(self.tmp, f"{name}-{self.n}")

    def discard(self, path):
        """Done with a store or bundle of a measured run: deleted (loop) or
        moved aside (root, see the class); then a sync, so that every run
        starts with nothing dirty."""
        if not self.defer:
            _rmtree(path)
        else:
            _umount_under(path)
            if os.path.lexists(path):
                self.n += 1
                os.rename(path, os.path.join(self.trash, f"{self.n}"))
        os.sync()


class Img:
    """pull_only: only the pull case (the images that show a pull's cost
    per layer)."""

    def __init__(self, name, ref, tag, big, pull_only=False):
        self.name, self.ref, self.tag, self.big, self.pull_only = name, ref, tag, big, pull_only


def _pyimg_has(verb) -> bool:
    r = H.run([PYIMG, "--help"])
    return any(line.strip("│ ").startswith(verb + " ") for line in r.out.decode(errors="replace").splitlines())


# ---------------------------------------------------------------- operations

def py_pull(store, img, exe=PYIMG):
    return H.run([exe, "--root", store, "pull", img.ref], timeout=1800)


def sk_pull(store, img):
    return H.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{img.ref}",
                  f"oci:{store}:{img.tag}"], timeout=1800)


def py_unpack(store, img, bundle, mode, exe=PYIMG):
    return H.run([exe, "--root", store, "unpack", img.ref, bundle, "--mode", mode], timeout=1800)


def um_unpack(store, img, bundle):
    return H.run(["umoci", "unpack", "--image", f"{store}:{img.tag}", bundle], timeout=1800)


def py_rm_bundle(ctx, store, bundle):
    if not ctx.defer:  # (rm-bundle deletes a copy-mode rootfs: see Ctx)
        H.run([PYIMG, "--root", store, "rm-bundle", "--force", bundle])
    ctx.discard(bundle)


def _m(res: H.Result, what):
    if res.rc != 0:
        raise RuntimeError(f"{what}: exit {res.rc}: {res.err.decode(errors='replace').strip()[-400:]}")
    return {"wall": res.wall, "rss": res.maxrss_kb}


# ---------------------------------------------------------------- benchmarks

def _fmt(s):
    """Seconds, with a third decimal below 1 s (a pull of a small image
    takes tens of milliseconds)."""
    return "-" if s is None else f"{s:.3f}" if s < 1 else f"{s:.2f}"


def _rows(series, variants, ref):
    rows = []
    for v in variants:
        w = series["wall"]
        vals = w.values(v)
        rows.append([v, _fmt(w.med(v)), _fmt(min(vals)) if vals else "-",
                     _fmt(max(vals)) if vals else "-",
                     "-" if v == ref else H.fmt_ratio(w.ratio(v, ref)), H.fmt_mb(series["rss"].med(v))])
    return rows


HEADER = ["tool", "median s", "min", "max", "ratio vs last tool of the case", "peak RSS MB"]


def _safe(fn):
    """Run a measurement; a failing variant yields None values (and prints why)."""
    errors = []

    def wrapped():
        try:
            return fn()
        except Exception as e:  # noqa: BLE001
            if not errors:
                print(f"  failed: {e}", flush=True)
            errors.append(str(e))
            return {"wall": None, "rss": None}
    wrapped.errors = errors
    return wrapped


def run_case(ctx, title, variants: dict, ref: str, rounds, warmup, notes=()):
    wrapped = {k: _safe(fn) for k, fn in variants.items()}
    s = H.interleaved(wrapped, rounds, warmup, metrics=("wall", "rss"))
    notes = list(notes)
    for k, w in wrapped.items():
        if w.errors:
            notes.append(f"{k} failed: {w.errors[-1][:300]}")
    rows = _rows(s, variants, ref)
    return [[title] + r for r in rows], notes


def bench_image(ctx: Ctx, img: Img, has_pull, has_unpack, base_img: Img | None = None):
    a = ctx.args
    rounds = a.long_rounds if img.big else a.rounds
    warm = 1
    rows, notes = [], []

    def new_store():
        return ctx.d("store")

    base = a.pyimg_base  # another pyimg launcher, measured beside this one
    cases = {c.strip() for c in (a.image_cases or "pull,unpack,both,second,shared").split(",")}

    # pull alone
    def v_py_pull(exe=PYIMG):
        def f():
            s = new_store()
            try:
                return _m(py_pull(s, img, exe), "pyimg pull")
            finally:
                ctx.discard(s)
        return f

    def v_sk_pull():
        s = new_store()
        try:
            return _m(sk_pull(s, img), "skopeo copy")
        finally:
            ctx.discard(s)
    vs = {}
    if has_pull:
        vs["pyimg pull"] = v_py_pull()
        if base:
            vs["pyimg pull (base)"] = v_py_pull(base)
    vs["skopeo copy"] = v_sk_pull
    if "pull" in cases:
        r, n = run_case(ctx, "pull", vs, "skopeo copy", rounds, warm)
        rows += r
        notes += n
    if img.pull_only:
        ctx.report.section(f"Image: {img.name} ({rounds} rounds, {warm} warm-up, fresh store each round)",
                           ["case"] + HEADER, rows, notes)
        return

    # unpack alone, from stores filled once
    py_store = sk_store = None
    if has_pull and cases & {"unpack", "second"}:
        py_store = new_store()
        py_pull(py_store, img).check()
    if cases & {"unpack", "second"}:
        sk_store = new_store()
        sk_pull(sk_store, img).check()

    def fresh_copy(src):
        """A copy of a freshly pulled store, so nothing unpacked earlier is reused."""
        d = ctx.d("store-copy")
        H.run(["cp", "-a", src, d]).check()
        return d

    def v_py_unpack(mode, fresh=True):
        def f():
            s = fresh_copy(py_store) if fresh else py_store
            b = ctx.d("bundle")
            try:
                return _m(py_unpack(s, img, b, mode), f"pyimg unpack --mode {mode}")
            finally:
                py_rm_bundle(ctx, s, b)
                if fresh:
                    ctx.discard(s)
        return f

    def v_um_unpack(fresh=True):
        def f():
            s = fresh_copy(sk_store) if fresh else sk_store
            b = ctx.d("bundle")
            try:
                return _m(um_unpack(s, img, b), "umoci unpack")
            finally:
                ctx.discard(b)
                if fresh:
                    ctx.discard(s)
        return f
    vs = {}
    if has_pull and has_unpack:
        vs["pyimg unpack --mode copy"] = v_py_unpack("copy")
        vs["pyimg unpack --mode overlay"] = v_py_unpack("overlay")
    vs["umoci unpack"] = v_um_unpack()
    if "unpack" in cases:
        r, n = run_case(ctx, "unpack (a copy of a freshly pulled store each round)", vs, "umoci unpack",
                        rounds, warm)
        rows += r
        notes += n

    # pull + unpack
    def v_py_both(mode, exe=PYIMG):
        def f():
            s, b = new_store(), ctx.d("bundle")
            try:
                p = _m(py_pull(s, img, exe), "pyimg pull")
                u = _m(py_unpack(s, img, b, mode, exe), f"pyimg unpack --mode {mode}")
                return {"wall": p["wall"] + u["wall"], "rss": max(p["rss"], u["rss"])}
            finally:
                py_rm_bundle(ctx, s, b)
                ctx.discard(s)
        return f

    def v_sk_both():
        s, b = new_store(), ctx.d("bundle")
        try:
            p = _m(sk_pull(s, img), "skopeo copy")
            u = _m(um_unpack(s, img, b), "umoci unpack")
            return {"wall": p["wall"] + u["wall"], "rss": max(p["rss"], u["rss"])}
        finally:
            ctx.discard(b)
            ctx.discard(s)
    vs = {}
    if has_pull and has_unpack:
        vs["pyimg pull + unpack (copy)"] = v_py_both("copy")
        vs["pyimg pull + unpack (overlay)"] = v_py_both("overlay")
        if base:
            vs["pyimg pull + unpack (copy, base)"] = v_py_both("copy", base)
            vs["pyimg pull + unpack (overlay, base)"] = v_py_both("overlay", base)
    vs["skopeo copy + umoci unpack"] = v_sk_both
    if "both" in cases:
        r, n = run_case(ctx, "pull + unpack", vs, "skopeo copy + umoci unpack", rounds, warm)
        rows += r
        notes += n

    # a second bundle of an already unpacked image
    if has_pull and has_unpack and "second" in cases:
        first = ctx.d("bundle-first")
        py_unpack(py_store, img, first, "overlay").check()
        um_first = ctx.d("bundle-first")
        um_unpack(sk_store, img, um_first).check()
        vs = {"pyimg unpack --mode overlay (2nd bundle)": v_py_unpack("overlay", fresh=False),
              "pyimg unpack --mode copy (2nd bundle)": v_py_unpack("copy", fresh=False),
              "umoci unpack (2nd bundle)": v_um_unpack(fresh=False)}
        r, n = run_case(ctx, "second bundle, image already unpacked", vs, "umoci unpack (2nd bundle)",
                        rounds, warm, ["umoci has no shared-layer mode: its second bundle is a full unpack"])
        rows += r
        notes += n
        py_rm_bundle(ctx, py_store, first)
        ctx.discard(um_first)

    # a second image sharing the base layers (pull into a store that has the base)
    if base_img is not None and "shared" in cases:
        def v_py_second():
            s = new_store()
            try:
                py_pull(s, base_img).check()
                return _m(py_pull(s, img), "pyimg pull (2nd image)")
            finally:
                ctx.discard(s)

        def v_sk_second():
            s = new_store()
            try:
                sk_pull(s, base_img).check()
                return _m(sk_pull(s, img), "skopeo copy (2nd image)")
            finally:
                ctx.discard(s)
        vs = {}
        if has_pull:
            vs["pyimg pull"] = v_py_second
        vs["skopeo copy"] = v_sk_second
        r, n = run_case(ctx, f"pull with {base_img.name} already in the store (shared base layer)", vs,
                        "skopeo copy", rounds, warm)
        rows += r
        notes += n
        if has_pull and has_unpack:
            def v_py_second_unpack():
                s, b1, b2 = new_store(), ctx.d("bundle"), ctx.d("bundle")
                try:
                    py_pull(s, base_img).check()
                    py_unpack(s, base_img, b1, "overlay").check()
                    p = _m(py_pull(s, img), "pyimg pull")
                    u = _m(py_unpack(s, img, b2, "overlay"), "pyimg unpack --mode overlay")
                    return {"wall": p["wall"] + u["wall"], "rss": max(p["rss"], u["rss"])}
                finally:
                    py_rm_bundle(ctx, s, b2)
                    py_rm_bundle(ctx, s, b1)
                    ctx.discard(s)

            def v_sk_second_unpack():
                s, b1, b2 = new_store(), ctx.d("bundle"), ctx.d("bundle")
                try:
                    sk_pull(s, base_img).check()
                    um_unpack(s, base_img, b1).check()
                    p = _m(sk_pull(s, img), "skopeo copy")
                    u = _m(um_unpack(s, img, b2), "umoci unpack")
                    return {"wall": p["wall"] + u["wall"], "rss": max(p["rss"], u["rss"])}
                finally:
                    ctx.discard(b2)
                    ctx.discard(b1)
                    ctx.discard(s)
            r, n = run_case(ctx, f"pull + unpack with {base_img.name} already pulled and unpacked",
                            {"pyimg pull + unpack (overlay)": v_py_second_unpack,
                             "skopeo copy + umoci unpack": v_sk_second_unpack},
                            "skopeo copy + umoci unpack", rounds, warm)
            rows += r
            notes += n

    if py_store:
        ctx.discard(py_store)
    if sk_store:
        ctx.discard(sk_store)
    ctx.report.section(f"Image: {img.name} ({rounds} rounds, {warm} warm-up, fresh store/bundle each round)",
                       ["case"] + HEADER, rows, notes)


def run(args, report: H.Report):
    ctx = Ctx(args, report)
    free = shutil.disk_usage(ctx.tmp).free
    if ctx.defer and not args.no_debian and free < 30e9:
        ctx.defer = False
        report.note(f"only {free / 1e9:.0f} GB free under /var/tmp: stores and bundles are deleted after "
                    "each run")
    report.note("filesystem: " + ("a fresh ext4 with a journal on a loop device (--image-fs loop); each "
                                  "measured run's store and bundle deleted right after it"
                                  if args.image_fs == "loop" else
                                  "the root filesystem (--image-fs root); measured runs' stores and bundles "
                                  + ("kept until the group ends" if ctx.defer else "deleted after each run")))
    has_pull = _pyimg_has("pull")
    has_unpack = _pyimg_has("unpack")
    if not has_pull:
        report.note("skipped: pyimg pull not available")
    if not has_unpack:
        report.note("skipped: pyimg unpack not available")
    reg = I.Registry(ctx.tmp)
    work = os.path.join(ctx.tmp, "build")
    os.makedirs(work)
    layout = os.path.join(ctx.tmp, "layout")
    lay = I.Layout(layout)
    print("  building busybox image ...", flush=True)
    bb = I.busybox_layer(work)
    lay.add_image("busybox", [bb])
    imgs = [Img("busybox (1 layer, ~1 MB)", reg.push_layout(layout, "busybox", "bench/busybox:latest"),
                "busybox", False)]
    sizes = {"busybox": bb.size}
    for n in (1, 20):
        layers = I.spread_layers(work, n)
        lay.add_image(f"spread{n}", layers)
        sizes[f"spread{n}"] = sum(l.size for l in layers)
        imgs.append(Img(f"the same 10 MB of files in {n} layer{'s' if n > 1 else ''}",
                        reg.push_layout(layout, f"spread{n}", f"bench/spread{n}:latest"), f"spread{n}",
                        False, pull_only=True))
    base = None
    if not args.no_debian:
        deb = I.debian_layer(report)
        if deb is not None:
            print("  building debian + whiteout images ...", flush=True)
            lay.add_image("debian", [deb], cmd=("/bin/bash",))
            wl = I.whiteout_layers(work)
            lay.add_image("layered", [deb] + wl, cmd=("/bin/bash",))
            sizes["debian"] = deb.size
            sizes["layered"] = deb.size + sum(l.size for l in wl)
            base = Img("debian bookworm minbase (1 layer)", reg.push_layout(layout, "debian", "bench/debian:bookworm"),
                       "debian", True)
            imgs.append(base)
            imgs.append(Img("debian + 5 layers with whiteouts/opaque dir (6 layers)",
                            reg.push_layout(layout, "layered", "bench/layered:latest"), "layered", True))
    report.note("image sizes (compressed): " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items()))
    if args.images:
        want = {t.strip() for t in args.images.split(",") if t.strip()}
        imgs = [i for i in imgs if i.tag in want]
    for img in imgs:
        print(f"-- image/{img.tag} ...", flush=True)
        try:
            bench_image(ctx, img, has_pull, has_unpack, base_img=base if img.tag == "layered" else None)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001
            import traceback
            traceback.print_exc()
            report.note(f"image/{img.tag} failed: {type(e).__name__}: {str(e)[:400]}")
