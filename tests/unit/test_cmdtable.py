"""runtime.toolkit.cmdtable: the table-driven parser both command lines use."""
import pytest

from runtime.toolkit.cmdtable import Arg, Opt, Table, UsageError


def _table(style="posix"):
    t = Table("prog", "help", [Opt("--root", "root", str, lambda: "/default")], style=style)
    t.verb("run", Arg("ref"), Arg("cmd", required=False, many=True),
           Opt("-i,--interactive", "interactive", bool, False), Opt("-t,--tty", "tty", bool, False),
           Opt("-e,--env", "env", list), Opt("--limit", "limit", int, 25), raw_rest=True)(lambda g, a: 0)
    t.verb("login", Arg("registry", required=False),
           Opt("-u,--username", "username", str, None, required=True))(lambda g, a: 0)
    t.verb("rm", Arg("items", many=True), Opt("-f,--force", "force", bool, False))(lambda g, a: 0)
    return t


def test_globals_defaults_and_callable_default():
    g, v, a = _table().parse(["rm", "x"])
    assert g == {"root": "/default"} and v == "rm" and a == {"force": False, "items": ["x"]}
    g, _, _ = _table().parse(["--root=/r", "rm", "x"])
    assert g["root"] == "/r"


def test_bundled_short_flags_and_attached_value():
    _, _, a = _table().parse(["run", "-it", "-eA=1", "--env", "B=2", "img"])
    assert a["interactive"] and a["tty"] and a["env"] == ["A=1", "B=2"] and a["ref"] == "img"


def test_raw_rest_keeps_the_command_s_options():
    _, _, a = _table().parse(["run", "-i", "img", "sh", "-c", "echo -n hi", "--limit"])
    assert a["cmd"] == ["sh", "-c", "echo -n hi", "--limit"] and a["interactive"] and not a["tty"]


def test_optional_and_many_positionals():
    _, _, a = _table().parse(["login", "-u", "bob"])
    assert a == {"username": "bob", "registry": None}
    with pytest.raises(UsageError, match="at least 1 ITEMS"):
        _table().parse(["rm", "-f"])
    _, _, a = _table().parse(["rm", "a", "-f", "b"])
    assert a["items"] == ["a", "b"] and a["force"]


@pytest.mark.parametrize("argv,msg", [
    (["run"], "requires 1 argument"),
    (["login"], "required flag --username"),
    (["run", "--limit", "x", "img"], "invalid value 'x' for flag --limit"),
    (["run", "--nope", "img"], "unknown flag: --nope"),
    (["run", "img", "--limit"], None),            # raw rest: not an option any more
    (["nosuch"], "unknown command 'nosuch'"),
    (["rm", "--force=false", "a", "extra"], None),
])
def test_usage_errors_name_the_problem(argv, msg):
    if msg is None:
        _table().parse(argv)
        return
    with pytest.raises(UsageError, match=msg):
        _table().parse(argv)


def test_go_style_takes_single_dash_long_names():
    g, v, a = _table("go").parse(["-root", "/x", "rm", "-force", "a"])
    assert g["root"] == "/x" and a["force"]
    with pytest.raises(UsageError, match="flag provided but not defined: -nope"):
        _table("go").parse(["rm", "-nope", "a"])


def test_help_and_version_requests():
    assert _table().parse(["--help"])[1] == "--help"
    assert _table().parse(["rm", "x", "-h"])[1] == "--help"
    assert _table().parse([])[1] is None


@pytest.mark.parametrize("argv,enabled", [
    (["images"], False),
    (["run", "-d", "busybox"], False),
    (["run", "busybox"], True),
])
def test_pyimg_runs_without_the_cyclic_gc_except_a_foreground_run(argv, enabled):
    # (pyrunc's side is in test_cli.py)
    import os
    import subprocess
    import sys
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    prog = (f"import gc, sys; sys.path.insert(0, {repo!r})\n"
            "from imagetool import cli, cli_engine\n"
            "def probe(*a, **k):\n"
            "    sys.stdout.write('gc=%s' % gc.isenabled())\n"
            "    sys.stdout.flush()\n"
            "    raise SystemExit(0)\n"
            "cli.T.verbs['images'].func = probe\n"
            "cli_engine._engine = probe  # (run checks its options, then sets the gc policy, then asks for it)\n"
            f"sys.argv = ['pyimg', '--root', '/nonexistent'] + {argv!r}\n"
            "cli.main()\n")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", prog], capture_output=True, text=True)
    assert out.stdout.startswith(f"gc={enabled}"), (out.stdout, out.stderr)


def test_records_have_named_fields():
    o = Opt("--all, -a", "all", bool, False, "every one", required=True)
    assert (o.names, o.dest, o.kind, o.default, o.help, o.required) == (("--all", "-a"), "all", bool, False,
                                                                        "every one", True)
    assert Opt("--root", "root", str, lambda: "/r").initial() == "/r" and Opt("-e", "env", list).initial() == []
    x = Arg("cmd", "the command", required=False, many=True)
    assert (x.name, x.help, x.required, x.many) == ("cmd", "the command", False, True)
    t = _table()
    v = t.verbs["rm"]
    assert v.func({}, {}) == 0 and not v.raw_rest and t.verbs["run"].raw_rest
    opts, args = t.split("run")
    assert [o.dest for o in opts] == ["interactive", "tty", "env", "limit"] and [a.name for a in args] == ["ref", "cmd"]


@pytest.mark.parametrize("prog", ["runtime.cli", "imagetool.cli"])
def test_both_programs_declare_only_records(prog):
    import importlib
    t = importlib.import_module(prog).T
    assert all(type(o) is Opt for o in t.global_opts)
    for name, v in t.verbs.items():
        assert callable(v.func) and isinstance(v.help, str), name
        assert all(type(x) in (Opt, Arg) for x in v.items), name
        assert all(n.startswith("-") for o in t.split(name)[0] for n in o.names), name
