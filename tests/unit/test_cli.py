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
    assert a["all"] and a["signal"] == ["9"]


@pytest.mark.parametrize("argv,msg", [
    (["create"], "requires 1 argument"),
    (["create", "--bogus", "x"], "flag provided but not defined: --bogus"),
    (["nosuchverb"], "nosuchverb"),
    (["create", "--bundle"], "flag needs an argument"),
    (["run", "--preserve-fds", "x", "c"], "invalid value"),
    (["state", "a", "b"], "unexpected argument"),
])
def test_usage_errors(argv, msg):
    with pytest.raises(cli.UsageError) as e:
        cli.parse(argv)
    assert msg in str(e.value)


def test_help_goes_to_typer():
    assert cli.parse(["--help"])[1] == "--help"
    assert cli.parse(["create", "--help"])[1] == "--help"
    assert cli.parse([])[1] is None


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
    assert "--process" in p.stdout and "--console-socket" in p.stdout


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
