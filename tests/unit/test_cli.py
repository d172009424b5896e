"""The runc-compatible argument parser (the fast path containerd uses)."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from runtime import cli  # noqa: E402
from runtime.lifecycle import parse_signal  # noqa: E402


def test_containerd_create_call():
    g, v, a = cli.parse(["--root", "/run/containerd/runc/default", "--log", "/b/log.json", "--log-format",
                         "json", "create", "--bundle", "/b", "--pid-file", "/b/init.pid",
                         "--console-socket", "/tmp/c.sock", "--no-pivot", "abc"])
    assert g["root"] == "/run/containerd/runc/default" and g["log"] == "/b/log.json"
    assert g["log_format"] == "json"
    assert v == "create"
    assert a == {"bundle": "/b", "console_socket": "/tmp/c.sock", "pid_file": "/b/init.pid",
                 "no_pivot": True, "no_new_keyring": False, "preserve_fds": 0, "id": "abc"}


def test_go_style_single_dash_and_equals():
    g, v, a = cli.parse(["-root=/r", "run", "-bundle=/x", "-d", "--preserve-fds=2", "c1"])
    assert g["root"] == "/r" and a["bundle"] == "/x" and a["detach"] and a["preserve_fds"] == 2


def test_exec_rest_keeps_command_flags():
    _, v, a = cli.parse(["exec", "-t", "-e", "A=1", "-e", "B=2", "c1", "sh", "-c", "ls -l"])
    assert a["tty"] and a["env"] == ["A=1", "B=2"]
    assert a["id"] == "c1" and a["command"] == ["sh", "-c", "ls -l"]


def test_kill_signal_positional():
    _, v, a = cli.parse(["kill", "--all", "c1", "9"])
    assert a["all"] and a["signal"] == "9"
    assert cli.parse(["kill", "c1"])[2]["signal"] is None


@pytest.mark.parametrize("argv,msg", [
    # runc's argument checks and Go's flag package, word for word
    (["create"], 'pyrunc: "create" requires exactly 1 argument(s)'),
    (["state", "a", "b"], 'pyrunc: "state" requires exactly 1 argument(s)'),
    (["list", "x"], 'pyrunc: "list" requires exactly 0 argument(s)'),
    (["exec"], 'pyrunc: "exec" requires a minimum of 1 argument(s)'),
    (["kill"], 'pyrunc: "kill" requires a minimum of 1 argument(s)'),
    (["kill", "a", "b", "c"], 'pyrunc: "kill" requires a maximum of 2 argument(s)'),
    (["create", "--bogus", "x"], "flag provided but not defined: -bogus"),
    (["--bogus", "state", "x"], "flag provided but not defined: -bogus"),
    (["nosuchverb"], "No help topic for 'nosuchverb'"),
    (["help", "nosuchverb"], "No help topic for 'nosuchverb'"),
    (["create", "--bundle"], "flag needs an argument: -bundle"),
    (["run", "--preserve-fds", "x", "c"], 'invalid value "x" for flag -preserve-fds: parse error'),
    (["run", "--detach=maybe", "c"], 'invalid boolean value "maybe" for -detach: parse error'),
])
def test_usage_errors(argv, msg):
    with pytest.raises(cli.UsageError) as e:
        cli.parse(argv)
    assert str(e.value) == msg


@pytest.mark.parametrize("argv,topic", [
    (["--help"], None), (["-h"], None), (["-help"], None), (["--debug", "-h", "run"], None),
    (["help"], None), (["h"], None), (["help", "run"], "run"), (["h", "kill"], "kill"),
    (["create", "--help"], "create"), (["state", "-h"], "state"), (["state", "x", "-h"], "state"),
    (["list", "--help=1"], "list"), (["help", "help"], "help"), (["help", "-h"], "help"),
])
def test_help_requests(argv, topic):
    _, v, a = cli.parse(argv)
    assert (v, a) == ("--help", topic)
    assert cli.parse([])[1] is None


def test_help_flag_after_exec_s_command_belongs_to_the_command():
    # runc's exec skips argument reordering: -h after the id is the command's
    _, v, a = cli.parse(["exec", "c1", "ls", "-h"])
    assert v == "exec" and a["command"] == ["ls", "-h"]


def test_exec_cgroup_option_repeats():
    _, _, a = cli.parse(["exec", "--cgroup", "memory:sub", "--cgroup", "cpu,cpuacct:sub", "c1", "true"])
    assert a["cgroup"] == ["memory:sub", "cpu,cpuacct:sub"]


def _pyrunc(*argv):
    return subprocess.run([sys.executable, "-I", "-S", "-c", f"import sys; sys.path.insert(0, {REPO!r}); "
                           f"sys.argv = ['pyrunc', *{list(argv)!r}]; from runtime.cli import main; main()"],
                          capture_output=True, text=True)


@pytest.mark.parametrize("argv", [["-h"], ["--help"], ["help"], ["h"], []])
def test_program_help_as_runc_s_help_bats_reads_it(argv):
    p = _pyrunc(*argv)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "NAME:"
    assert "runc - Open Container Initiative runtime" in lines[1]
    for section in ("USAGE:", "VERSION:", "COMMANDS:", "GLOBAL OPTIONS:"):
        assert section in lines
    # every verb is listed, aligned in one column
    cmds = lines[lines.index("COMMANDS:") + 1:lines.index("GLOBAL OPTIONS:") - 1]
    assert {c.split()[0] for c in cmds} == set(cli.T.verbs) | {"help,"}

    def desc_col(c):  # where the text after the name (and its padding) starts
        end = c.index("  ", 3)
        return len(c) - len(c[end:].lstrip())
    assert len({desc_col(c) for c in cmds}) == 1


@pytest.mark.parametrize("verb", sorted(cli.T.verbs))
@pytest.mark.parametrize("form", ["-h", "--help", "help"])
def test_verb_help_as_runc_s_help_bats_reads_it(verb, form):
    p = _pyrunc("help", verb) if form == "help" else _pyrunc(verb, form)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "NAME:" and f"runc {verb} - " in lines[1]
    assert f"pyrunc {verb}" in lines[lines.index("USAGE:") + 1]


def test_verb_help_lists_options_with_values_and_defaults():
    out = _pyrunc("run", "-h").stdout
    assert "   --bundle value, -b value  " in out and '(default: ".")' in out
    assert "   --keep  " in out and "   --detach, -d  " in out
    assert "(default: 0)" in out  # --preserve-fds


def test_unknown_help_topic_fails_like_runc():
    for argv in (["foo", "-h"], ["help", "foo"], ["foo"]):
        p = _pyrunc(*argv)
        assert p.returncode == 3 and "No help topic for 'foo'" in p.stderr, argv
        assert p.stdout == ""


def test_usage_error_prints_the_verb_s_help_and_exits_1():
    p = _pyrunc("state")
    assert p.returncode == 1
    assert p.stdout.startswith("Incorrect Usage.\n\nNAME:\n   pyrunc state - ")
    assert p.stderr == 'pyrunc: "state" requires exactly 1 argument(s)\n'
    p = _pyrunc("state", "--nope", "x")
    assert p.returncode == 1
    assert p.stdout.startswith("Incorrect Usage: flag provided but not defined: -nope\n\nNAME:\n   pyrunc state")
    p = _pyrunc("--nope", "state", "x")
    assert p.returncode == 1
    assert p.stdout.startswith("Incorrect Usage. flag provided but not defined: -nope\n\nNAME:\n   pyrunc - ")


def test_help_does_not_load_typer():
    code = (f"import sys; sys.path.insert(0, {REPO!r})\n"
            "from runtime import cli\n"
            "import io, contextlib\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    rc = cli._dispatch(['--help']) + cli._dispatch(['run', '-h'])\n"
            "print(rc, 'typer' in sys.modules, 'click' in sys.modules)")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True)
    assert out.stdout.split() == ["0", "False", "False"], out.stderr


@pytest.mark.parametrize("text,secs", [
    ("5s", 5.0), ("100ms", 0.1), ("1m30s", 90.0), ("1.5h", 5400.0), ("0", 0.0), ("-1s", -1.0), ("250us", 0.00025),
    ("x", None), ("5", None), ("", None), ("s", None), ("1d", None),
])
def test_events_interval_is_a_go_duration(text, secs):
    got = cli.parse_duration(text)
    assert got == secs if secs is None else abs(got - secs) < 1e-12


@pytest.mark.parametrize("s,n", [("TERM", 15), ("SIGKILL", 9), ("9", 9), ("0", 0), ("hup", 1), ("SIGRTMIN+1", 35)])
def test_parse_signal(s, n):
    assert parse_signal(s) == n


def test_parse_signal_invalid():
    from runtime.errors import RuntimeFailure
    with pytest.raises(RuntimeFailure):
        parse_signal("SIGBOGUS")
    with pytest.raises(RuntimeFailure):
        parse_signal("99")


def test_help_renders():
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p = subprocess.run([sys.executable, "-c", "import sys; sys.argv=['pyrunc','exec','--help'];"
                        "from runtime.cli import main; main()"], capture_output=True, text=True, cwd=here)
    assert p.returncode == 0
    assert "--process" in p.stdout and "--console-socket" in p.stdout and "--cgroup value" in p.stdout


@pytest.mark.parametrize("argv,target,enabled", [
    (["features"], "manage.features", False),
    (["state", "x"], "lifecycle.state", False),
    (["run", "-d", "x"], "container.run", False),
    (["run", "x"], "container.run", True),
    (["exec", "x", "true"], "execproc.exec_process", True),
    (["exec", "-d", "x", "true"], "execproc.exec_process", False),
    (["events", "x"], "manage.events", True),
    (["events", "--stats", "x"], "manage.events", False),
])
def test_cyclic_gc_is_off_for_a_call_and_back_on_for_verbs_that_stay(argv, target, enabled):
    mod, fn = target.split(".")
    prog = (f"import gc, sys; sys.path.insert(0, {REPO!r})\n"
            f"from runtime import cli, {mod}\n"
            f"def probe(*a, **k):\n"
            f"    sys.stdout.write('gc=%s' % gc.isenabled())\n"
            f"    return {{}} if {fn!r} in ('features', 'state') else 0\n"
            f"{mod}.{fn} = probe\n"
            f"sys.argv = ['pyrunc', '--root', '/nonexistent'] + {argv!r}\n"
            f"cli.main()\n")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", prog], capture_output=True, text=True)
    assert out.stdout.startswith(f"gc={enabled}"), (out.stdout, out.stderr)
