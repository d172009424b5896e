"""runtime.log: runc's (logrus') line formats for --log, --log-format and --debug."""
import json
import os
import re
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from runtime import log  # noqa: E402

# logrus' text formatter without a terminal: RFC 3339 to the second
STAMP = r'"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)"'


@pytest.fixture
def logfile(tmp_path):
    yield tmp_path / "log.out"
    log.configure(None, "text", False)


def test_text_debug_line_goes_to_the_file_only(logfile, capsys):
    log.configure(str(logfile), "text", True)
    log.debug("child process in init()")
    log.debug("process exited", pid=42, status=0)
    assert capsys.readouterr().err == ""
    a, b = logfile.read_text().splitlines()
    assert re.fullmatch(rf'time={STAMP} level=debug msg="child process in init\(\)"', a), a
    assert re.fullmatch(rf'time={STAMP} level=debug msg="process exited" pid=42 status=0', b), b


def test_json_debug_line_is_go_s_compact_sorted_object(logfile):
    log.configure(str(logfile), "json", True)
    log.debug("=> nsexec container setup", pid=7)
    line = logfile.read_text()
    assert re.fullmatch(r'\{"level":"debug","msg":"=\\u003e nsexec container setup","pid":7,'
                        rf'"time":{STAMP}\}}\n', line), line
    assert json.loads(line)["msg"] == "=> nsexec container setup"


def test_debug_lines_need_debug_and_go_to_stderr_without_a_file(capsys):
    log.configure(None, "text", False)
    log.debug("nothing")
    assert capsys.readouterr().err == ""
    log.configure(None, "text", True)
    log.debug("something")
    err = capsys.readouterr().err
    log.configure(None, "text", False)
    assert re.fullmatch(rf"time={STAMP} level=debug msg=something\n", err), err


def test_error_line_in_the_log_file_and_bare_message_on_stderr(logfile, capsys):
    log.configure(str(logfile), "json", False)
    log.error('container "x" does not exist')
    assert capsys.readouterr().err == 'container "x" does not exist\n'
    d = json.loads(logfile.read_text())
    assert list(d) == ["level", "msg", "time"] and d["level"] == "error"


@pytest.mark.parametrize("value,text", [
    ("plain", "plain"), ("a-b.c_d/e@f^g+h", "a-b.c_d/e@f^g+h"), ("two words", '"two words"'),
    ("", '""'), ('say "hi"\n', r'"say \"hi\"\n"'), ("tab\there", r'"tab\there"'), ("\x01", r'"\x01"'),
    ("é", '"é"'), ("\u00a0", r'"\u00a0"'),
])
def test_text_values_are_quoted_as_logrus_does(value, text):
    assert log._text_value(value) == text


def test_unknown_log_format_is_runc_s_error():
    with pytest.raises(ValueError, match="^invalid log-format: xml$"):
        log.configure(None, "xml", False)
