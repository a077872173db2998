"""Which Host headers `camtl serve` answers (camtl.serving.hosts), as a table; the server
itself is tested over HTTP in test_serve_robust."""

from __future__ import annotations

import re

import pytest

from camtl.serving.hosts import host_allowed, host_name, parse_allowed_hosts

ALLOWED = ("api.example.com", "*.corp.example", "10.0.0.5")


@pytest.mark.parametrize(
    ("header", "name", "allowed"),
    [
        ("localhost", "localhost", True),
        ("localhost:8000", "localhost", True),
        ("LocalHost.", "localhost", True),
        ("app.localhost:8000", "app.localhost", True),
        ("127.0.0.1:8000", "127.0.0.1", True),
        ("127.0.0.2", "127.0.0.2", True),
        ("[::1]:8000", "::1", True),
        ("[::1]", "::1", True),
        ("api.example.com", "api.example.com", True),
        ("API.example.com:443", "api.example.com", True),
        ("a.b.corp.example", "a.b.corp.example", True),
        ("10.0.0.5:80", "10.0.0.5", True),
        ("corp.example", "corp.example", False),  # '*.corp.example' names what is under it
        ("evilcorp.example", "evilcorp.example", False),
        ("api.example.com.evil.example", "api.example.com.evil.example", False),
        ("localhost.evil.example", "localhost.evil.example", False),
        ("10.0.0.6", "10.0.0.6", False),
        ("[::2]:80", "::2", False),
        ("", None, False),
        (":8000", None, False),
        ("localhost:http", None, False),
        ("a:b:c", None, False),
        ("[::1", None, False),
        ("[::1]8000", None, False),
    ],
)
def test_host_names_and_whether_they_are_answered(
    header: str, name: str | None, allowed: bool
) -> None:
    assert host_name(header) == name
    assert (name is not None and host_allowed(name, ALLOWED)) is allowed


@pytest.mark.parametrize(
    ("value", "bind", "parsed"),
    [
        (None, "127.0.0.1", ()),  # bound to loopback: loopback names only
        (None, "localhost", ()),
        (None, "::1", ()),
        (None, "0.0.0.0", None),  # bound to every interface: any name
        (None, "10.0.0.5", None),
        ("api.example.com, B.example.", "0.0.0.0", ("api.example.com", "b.example")),
        ("[::1],*.corp.example", "127.0.0.1", ("::1", "*.corp.example")),
        ("a.example,*", "127.0.0.1", None),
        ("bücher.example", "127.0.0.1", ("xn--bcher-kva.example",)),  # as browsers send it
        ("*.Bücher.example.", "127.0.0.1", ("*.xn--bcher-kva.example",)),
        ("2001:DB8:0:0:0:0:0:1", "0.0.0.0", ("2001:db8::1",)),  # the form browsers send
        (None, "localhost.", ()),
    ],
)
def test_allowed_hosts_by_flag_and_by_bound_address(
    value: str | None, bind: str, parsed: tuple[str, ...] | None
) -> None:
    assert parse_allowed_hosts(value, bind) == parsed


def test_an_ipv6_host_is_matched_in_any_spelling() -> None:
    allowed = parse_allowed_hosts("2001:db8:0:0:0:0:0:1", "0.0.0.0")
    assert allowed is not None
    for header in ("[2001:db8::1]:8000", "[2001:0DB8::0001]"):
        name = host_name(header)
        assert name is not None and host_allowed(name, allowed), header
    assert not host_allowed("2001:db8::2", allowed)


@pytest.mark.parametrize(
    ("addresses", "parsed"),
    [
        (["127.0.1.1"], ("myhost",)),  # Debian's own name: loopback, and answered by name
        (["::1", "127.0.0.1"], ("myhost",)),
        (["127.0.1.1", "10.0.0.5"], None),  # reachable from elsewhere too: any name
        ([], None),
    ],
)
def test_a_bound_name_that_resolves_to_loopback_is_guarded(
    monkeypatch: pytest.MonkeyPatch, addresses: list[str], parsed: tuple[str, ...] | None
) -> None:
    import socket

    def resolve(name: str, port: object) -> list[tuple]:
        assert name == "myhost"
        if not addresses:
            raise socket.gaierror("unknown")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0)) for a in addresses]

    monkeypatch.setattr("camtl.serving.hosts.socket.getaddrinfo", resolve)
    assert parse_allowed_hosts(None, "MyHost.") == parsed


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("*.", "'*.': not a host name"),  # stripped of its dot it would have allowed any
        ("*..", "'*..': not a host name"),
        (".", "'.': not a host name"),
        ("a b.example", "'a b.example': not a host name (letters, digits and hyphens"),
        ("a..example", "'a..example': not a host name"),
        ("-a.example", "'-a.example': not a host name"),
        ("a*.example", "'a*.example': '*' stands alone or starts '*.example.com'"),
        ("*.*.example", "'*.*.example': '*' stands alone or starts '*.example.com'"),
    ],
)
def test_allowed_hosts_that_could_never_match_or_would_allow_any_are_refused(
    value: str, message: str
) -> None:
    from camtl.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(f"--allowed-hosts {value!r}: {message}")):
        parse_allowed_hosts(value, "127.0.0.1")


def test_the_middleware_closes_a_websocket_for_a_host_not_allowed_and_passes_lifespan() -> None:
    import asyncio

    from camtl.serving.hosts import AllowedHosts

    reached: list[str] = []

    async def app(scope: dict, receive: object, send: object) -> None:
        reached.append(scope["type"])

    async def run(scope: dict) -> list[dict]:
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        await AllowedHosts(app, ())(scope, None, send)
        return sent

    evil = [(b"host", b"evil.example")]
    assert asyncio.run(run({"type": "websocket", "headers": evil})) == [
        {"type": "websocket.close", "code": 1008}
    ]
    sent = asyncio.run(run({"type": "http", "headers": evil}))
    assert sent[0]["status"] == 400 and reached == []
    asyncio.run(run({"type": "lifespan"}))
    asyncio.run(run({"type": "websocket", "headers": [(b"host", b"localhost:8000")]}))
    assert reached == ["lifespan", "websocket"]
