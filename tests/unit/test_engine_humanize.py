"""imagetool.engine.humanize: docker 20.10's human strings (go-units, moby's
State.String(), docker/cli's formatter) and its parsers of human input."""
import time

import pytest

from imagetool.engine import humanize as h
from imagetool.errors import UsageError

MIN, HOUR, DAY = 60, 3600, 86400


@pytest.mark.parametrize("secs,want", [
    (0, "Less than a second"), (0.99, "Less than a second"), (1, "1 second"), (1.5, "1 second"),
    (2, "2 seconds"), (59.9, "59 seconds"), (60, "About a minute"), (119, "About a minute"),
    (120, "2 minutes"), (59 * MIN + 59, "59 minutes"), (HOUR, "About an hour"),
    (HOUR + 29 * MIN, "About an hour"), (HOUR + 30 * MIN, "2 hours"),  # hours are rounded
    (47 * HOUR, "47 hours"), (47 * HOUR + 31 * MIN, "2 days"), (13 * DAY, "13 days"), (14 * DAY, "2 weeks"),
    (59 * DAY, "8 weeks"), (60 * DAY, "2 months"), (729 * DAY, "24 months"), (730 * DAY, "2 years"),
    (3000 * DAY, "8 years"),
])
def test_duration_is_go_units_human_duration(secs, want):
    assert h.duration(secs) == want


def test_ago():
    assert h.ago(1000, now=1000 + 3 * HOUR) == "3 hours ago"
    assert h.ago("2020-01-01T00:00:00Z", now=1577836800 + 90) == "About a minute ago"
    assert h.ago(time.time() - 5) == "5 seconds ago"


NOW = 1_700_000_000.0


@pytest.mark.parametrize("state,want", [
    ({"Running": True, "StartedAt": NOW - 300}, "Up 5 minutes"),
    ({"Running": True, "Paused": True, "StartedAt": NOW - 300}, "Up 5 minutes (Paused)"),
    ({"Running": True, "Restarting": True, "StartedAt": NOW - 300, "FinishedAt": NOW - 5, "ExitCode": 1},
     "Restarting (1) 5 seconds ago"),
    ({"Running": True, "StartedAt": NOW - 300, "Health": {"Status": "healthy"}}, "Up 5 minutes (healthy)"),
    ({"Running": True, "StartedAt": NOW - 300, "Health": {"Status": "starting"}}, "Up 5 minutes (health: starting)"),
    ({"Running": False, "StartedAt": NOW - 900, "FinishedAt": NOW - 120, "ExitCode": 3}, "Exited (3) 2 minutes ago"),
    ({"Running": False, "StartedAt": "2023-11-14T22:00:00Z", "FinishedAt": "2023-11-14T22:12:59.876543211Z",
      "ExitCode": 0}, "Exited (0) 20 seconds ago"),
    ({"Running": False, "StartedAt": "0001-01-01T00:00:00Z", "FinishedAt": "0001-01-01T00:00:00Z"}, "Created"),
    ({"Running": False}, "Created"),
    ({"Running": False, "StartedAt": NOW - 9, "Status": "removing"}, "Removal In Progress"),
    ({"Running": False, "StartedAt": NOW - 9, "RemovalInProgress": True}, "Removal In Progress"),
    ({"Running": False, "StartedAt": NOW - 9, "FinishedAt": NOW - 1, "Dead": True}, "Dead"),
])
def test_status_is_mobys_state_string(state, want):
    assert h.status(state, NOW) == want


@pytest.mark.parametrize("n,want", [
    (0, "0B"), (999, "999B"), (1000, "1kB"), (1234, "1.23kB"), (1500000, "1.5MB"), (123456789, "123MB"),
    (999999, "1e+03kB"), (5 * 10 ** 12, "5TB"),
])
def test_size_is_human_size_with_3_digits(n, want):
    assert h.size(n) == want


def test_size_precision_4_is_go_units_human_size():
    assert h.size(1234567, precision=4) == "1.235MB"


@pytest.mark.parametrize("n,want", [
    (0, "0B"), (1023, "1023B"), (1024, "1KiB"), (1.5 * 2 ** 20, "1.5MiB"), (7.6 * 2 ** 30, "7.6GiB"),
    (123456789, "117.7MiB"),
])
def test_bytes_size(n, want):
    assert h.bytes_size(n) == want


@pytest.mark.parametrize("s,want", [
    ("512m", 512 << 20), ("512M", 512 << 20), ("1.5g", 3 << 29), ("100KiB", 100 << 10), ("10 kb", 10 << 10),
    ("42", 42), ("42b", 42), ("1t", 1 << 40), ("1.7k", 1740),
])
def test_parse_size_is_ram_in_bytes(s, want):
    assert h.parse_size(s) == want


@pytest.mark.parametrize("s", ["", "x", "12x", "1.", ".5m", "-1", "1.2.3", "5 mb x", "5  m", "1e3", "٣m"])
def test_parse_size_refuses_in_go_units_words(s):
    with pytest.raises(UsageError) as e:
        h.parse_size(s)
    assert str(e.value) == f"invalid size: '{s}'"


@pytest.mark.parametrize("s,want", [
    ("10m", 600), ("1h30m", 5400), ("250ms", 0.25), ("-1.5h", -5400), ("0", 0), ("+3s", 3), (".5s", 0.5),
    ("1.s", 1), ("1us", 1e-6), ("1\u00b5s", 1e-6), ("2h45m30.5s", 2 * HOUR + 45 * MIN + 30.5), ("10ns", 1e-8),
])
def test_parse_duration_is_gos(s, want):
    assert h.parse_duration(s) == pytest.approx(want)


@pytest.mark.parametrize("s,msg", [
    ("", 'time: invalid duration ""'),
    ("10", 'time: missing unit in duration "10"'),
    ("10x", 'time: unknown unit "x" in duration "10x"'),
    ("m", 'time: invalid duration "m"'),
    ("-", 'time: invalid duration "-"'),
    ("1d", 'time: unknown unit "d" in duration "1d"'),
])
def test_parse_duration_errors_in_gos_words(s, msg):
    with pytest.raises(UsageError) as e:
        h.parse_duration(s)
    assert str(e.value) == msg


@pytest.mark.parametrize("value,want", [
    ("10m", 1_699_999_400.0),                      # durations: back from now, whole seconds
    ("1699999000", 1_699_999_000.0),               # Unix seconds
    ("1699999000.25", 1_699_999_000.25),
    ("0", 0.0),
    ("2023-11-14T22:13:20Z", 1_700_000_000.0),
    ("2023-11-14T22:13:20.5Z", 1_700_000_000.5),
    ("2023-11-14T22:13:20+01:00", 1_700_000_000.0 - HOUR),
    ("2023-11-14T22:13:20-01:00", 1_700_000_000.0 + HOUR),
    ("2023-11-14T22Z", 1_699_999_200.0),
])
def test_parse_since_follows_get_timestamp(value, want):
    assert h.parse_since(value, NOW + 0.5) == want


def test_parse_since_reads_zoneless_times_as_local_time():
    off = time.localtime(NOW).tm_gmtoff
    assert h.parse_since("2023-11-14", NOW) == 1_699_920_000.0 - off
    assert h.parse_since("2023-11-14T22:13", NOW) == 1_699_999_980.0 - off
    assert h.parse_since("2023-11-14T22:13:20.25", NOW) == 1_700_000_000.25 - off


@pytest.mark.parametrize("value,msg", [
    ("2023-13-01", 'parsing time "2023-13-01": month out of range'),
    ("2023-02-30", 'parsing time "2023-02-30": day out of range'),
    ("2023-11-14T25:00Z", 'parsing time "2023-11-14T25:00Z": hour out of range'),
    ("bogus", 'failed to parse value as time or duration: "bogus"'),
    ("12ab", 'failed to parse value as time or duration: "12ab"'),
])
def test_parse_since_errors(value, msg):
    with pytest.raises(UsageError) as e:
        h.parse_since(value, NOW)
    assert str(e.value) == msg


def test_parse_time_of_the_engine_api():
    assert h.parse_time("2023-11-14T22:13:20.123456789Z") == pytest.approx(1_700_000_000.123456789)
    assert h.parse_time("0001-01-01T00:00:00Z") is None
    with pytest.raises(UsageError, match="2023-11-14"):
        h.parse_time("2023-11-14")


def P(private, public=None, ip="", proto="tcp"):
    d = {"PrivatePort": private, "Type": proto}
    if public is not None:
        d.update(IP=ip or "0.0.0.0", PublicPort=public)
    return d


@pytest.mark.parametrize("plist,want", [
    ([], ""),
    ([P(80)], "80/tcp"),
    ([P(80, 8080)], "0.0.0.0:8080->80/tcp"),
    ([P(8000, 8000, "127.0.0.1")], "127.0.0.1:8000->8000/tcp"),
    ([P(8001, 8001), P(8000, 8000)], "0.0.0.0:8000-8001->8000-8001/tcp"),
    ([P(80), P(81), P(83)], "80-81/tcp, 83/tcp"),
    ([P(53, proto="udp"), P(53)], "53/tcp, 53/udp"),
    ([P(80, 8080), P(81, 8081)], "0.0.0.0:8080->80/tcp, 0.0.0.0:8081->81/tcp"),
    ([P(80, 8080), P(443), P(22, 22)], "0.0.0.0:22->22/tcp, 443/tcp, 0.0.0.0:8080->80/tcp"),
    ([P(80, 80, "::")], "[::]:80->80/tcp"),
])
def test_ports_column(plist, want):
    assert h.ports(plist) == want


@pytest.mark.parametrize("args,trunc,want", [
    (["nginx", "-g", "daemon off;"], True, "\"nginx -g 'daemon of…\""),
    (["nginx", "-g", "daemon off;"], False, "\"nginx -g 'daemon off;'\""),
    (["sh"], True, '"sh"'),
    ([], True, '""'),
    (["/bin/sh", "-c", 'echo "hi"'], False, "\"/bin/sh -c 'echo \\\"hi\\\"'\""),
    (["/bin/sh", "-c", 'echo "hi"'], True, "\"/bin/sh -c 'echo \\\"h…\""),
    (["12345678901234567890"], True, '"12345678901234567890"'),
    (["123456789012345678901"], True, '"1234567890123456789…"'),
    (["sh", "-c", "a\tb"], False, '"sh -c a\\tb"'),
])
def test_command_column(args, trunc, want):
    assert h.command(args, trunc) == want


def test_ellipsis_counts_wide_characters_twice():
    assert h.ellipsis("日本語のテキスト", 5) == "日本…"
    assert h.ellipsis("日本", 4) == "日本"
    assert h.ellipsis("abc", 1) == "a"
    assert h.ellipsis("abc", 0) == ""
