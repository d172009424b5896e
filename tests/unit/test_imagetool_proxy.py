"""The proxy settings a registry client reads from the environment, checked
against Python's urllib (the reading curl and pip share) as the oracle."""
import urllib.request

import pytest

from imagetool.registry import _no_proxy, proxies_from_environment

ENVS = [
    {},
    {"HTTP_PROXY": "http://up:3128"},
    {"http_proxy": "http://low:1", "HTTP_PROXY": "http://up:2"},
    {"http_proxy": "", "HTTP_PROXY": "http://up:2"},
    {"HTTPS_PROXY": "http://p:8080", "NO_PROXY": "example.com, .corp.local,127.0.0.1:5000"},
    {"https_proxy": "http://p", "no_proxy": "*"},
    {"Http_Proxy": "http://mixed:1", "ALL_PROXY": "socks5://x"},
    {"_proxy": "x", "PROXY": "y", "HTTP_PROXY": ""},
]


@pytest.mark.parametrize("env", ENVS)
def test_proxies_are_read_as_urllib_reads_them(env, monkeypatch):
    for k in list(__import__("os").environ):
        if k.lower().endswith("_proxy") or k == "REQUEST_METHOD":
            monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert proxies_from_environment(dict(env)) == urllib.request.getproxies_environment()


HOSTS = [("example.com", "example.com:443"), ("reg.example.com", "reg.example.com:5000"),
         ("notexample.com", "notexample.com:80"), ("x.corp.local", "x.corp.local:443"),
         ("127.0.0.1", "127.0.0.1:5000"), ("127.0.0.1", "127.0.0.1:5001"), ("EXAMPLE.COM", "EXAMPLE.COM:1")]
LISTS = ["", "*", "example.com, .corp.local,127.0.0.1:5000", ".example.com", "127.0.0.1", " , ,"]


@pytest.mark.parametrize("no_proxy", LISTS)
@pytest.mark.parametrize("host,hostport", HOSTS)
def test_no_proxy_exempts_what_urllib_exempts(no_proxy, host, hostport):
    # (a registry is reached as host:port or host, and either may be listed)
    want = any(urllib.request.proxy_bypass_environment(h, {"no": no_proxy}) for h in (hostport, host))
    assert _no_proxy(no_proxy, host, hostport) == want
