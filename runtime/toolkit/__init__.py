"""What both command-line tools (pyrunc and pyimg) start up with.

Every pyrunc or pyimg call is a fresh interpreter, and containerd runs
several pyrunc calls per container, so start-up is most of what a small
verb costs. This package holds the pieces that keep it small, shared by
both tools (docs/performance.md has each one's measured saving, its cost
and the test that guards it):

- os_lite: the parts of `os` the tools use, without importing os.py;
- ffi: the slice of ctypes that runtime.syscalls needs, without
  ctypes/__init__.py;
- fastjson: JSON on the C accelerator, and Go's encoding for runc's output;
- cmdtable: the command-line tables, their small parser, and the garbage
  collector policy (short_lived, stays).
The module finder that loads runtime.* and imagetool.* from their pyc in
one read is runtime.install_finder (runtime/__init__.py): it has to be in
place before any of these load.

Import policy (one place for it):
- Modules import what they use at the top.
- Imports inside functions are for three cases only: a verb adapter in
  runtime/cli.py or imagetool/cli*.py importing the library that verb
  calls (so each call loads only its own verb's code, as pip's
  commands_dict does); an optional edge, loaded only when a config uses it
  (seccomp, hooks, tty, id-mapped mounts, the cgroup managers and their
  writers, TLS, compression codecs); and a cycle-free late load into a
  child process before it leaves the host's filesystem (init.preload).
- Each module names its optional edges once, in a comment at its top;
  tests/unit/test_import_policy.py lists every import inside a function
  outside the adapters, so a new one is added there deliberately.
- The cold path of each verb is checked by tests/unit/test_cold_start.py.

Public interface for other tools (imagetool uses runtime through these
names only; tests/unit/test_boundaries.py checks it):
  runtime.install_finder
  runtime.toolkit.os_lite, runtime.toolkit.fastjson,
  runtime.toolkit.cmdtable (Table, Opt, Arg, UsageError, finish, short_lived, stays)
  runtime.syscalls (mount, umount2 and the rest of its documented calls)
  runtime.specgen.default_spec, runtime.validate.validate_config,
  runtime.version
and the state file's name: imagetool reads ROOT/ID/state.json, pyrunc's
or runc's, as plain JSON (bundle.containers_using).
"""
