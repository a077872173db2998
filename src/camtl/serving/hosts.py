"""Which ``Host`` headers the server answers: a defence against DNS rebinding.

A web page on ``evil.example`` can re-point its own name at 127.0.0.1 and then read a server
on localhost as if it were its own origin; the browser still sends ``Host: evil.example``.
A server bound to a loopback address therefore answers only requests that name it by a
loopback name (``localhost``, ``*.localhost``, 127.0.0.0/8, ``::1``) or by a name the user
allows with ``--allowed-hosts``; one bound elsewhere answers any name unless told otherwise.

Starlette's TrustedHostMiddleware does the same job, but cuts the port at the first colon,
which refuses every IPv6 literal (``[::1]:8000``) and cannot tell loopback addresses apart;
hence this small check of our own.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import socket
from typing import Any

from camtl.validation import flag, invalid

log = logging.getLogger("camtl")

ANY = "*"


def is_loopback(name: str) -> bool:
    """``localhost``, a name under it, or a loopback IP address (``127.0.0.2``, ``::1``)."""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _canonical(name: str) -> str:
    """An IP address in the one form browsers send (``2001:db8::1``, not
    ``2001:DB8:0:0:0:0:0:1``); a name as it is."""
    return str(ipaddress.ip_address(name)) if _is_ip(name) else name


def _resolves_to_loopback(name: str) -> bool:
    """A name that is not ``localhost`` but whose every address is a loopback one: the
    machine's own name on Debian (127.0.1.1), ``localhost.localdomain``, ``ip6-localhost``."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, None)}
    except (OSError, UnicodeError):  # unknown: the server cannot bind it either
        return False
    return bool(addresses) and all(is_loopback(str(address).split("%")[0]) for address in addresses)


def parse_allowed_hosts(value: str | None, bind_host: str) -> tuple[str, ...] | None:
    """The names ``--allowed-hosts VALUE`` allows beside the loopback ones; None: any name.

    Unset: none beside the loopback ones when the server binds a loopback address, any
    otherwise (a server bound to every interface was meant to be reached by other names).
    """
    if value is None:
        bind = bind_host.strip("[]").lower().rstrip(".")
        if is_loopback(bind):
            return ()
        if not _is_ip(bind) and _resolves_to_loopback(bind):
            return (bind,)  # loopback by another name, which requests may then use
        return None
    what = flag("--allowed-hosts", value)
    names = []
    for entry in value.split(","):
        name = entry.strip().lower()
        if name.startswith("[") and name.endswith("]"):
            name = name[1:-1]
        if not name:
            raise invalid(what, "an empty name (separate names with single commas)")
        if "/" in name or "@" in name:
            raise invalid(what, f"{name!r}: a host name, not a URL")
        if ":" in name and not _is_ip(name):
            raise invalid(what, f"{name!r}: give the name without a port")
        names.append(_checked_name(name, what))
    return None if ANY in names else tuple(names)


_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")


def _checked_name(name: str, what: str) -> str:
    """``*``, ``*.`` and a domain, a domain (an internationalised one as browsers send it,
    in punycode) or an IP address; anything else is refused (a name that could never match,
    or one that would silently allow every Host)."""
    if name == ANY or _is_ip(name):
        return _canonical(name)
    wildcard = name.startswith("*.")
    domain = name[2:] if wildcard else name
    try:
        domain = domain.rstrip(".").encode("idna").decode("ascii")
    except UnicodeError:
        raise invalid(what, f"{name!r}: not a host name") from None
    if not all(_LABEL.fullmatch(label) for label in domain.split(".")):
        message = (
            "'*' stands alone or starts '*.example.com'"
            if "*" in domain
            else "not a host name (letters, digits and hyphens between dots)"
        )
        raise invalid(what, f"{name!r}: {message}")
    return f"*.{domain}" if wildcard else domain


def host_name(header: str) -> str | None:
    """The name in a ``Host`` header without its port, lower case; None when malformed."""
    header = header.strip().lower()
    if header.startswith("["):  # an IPv6 literal: [::1] or [::1]:8000
        end = header.find("]")
        name, rest = header[1:end], header[end + 1 :]
        if end < 0 or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return name
    name, colon, port = header.partition(":")
    if not name or (colon and not port.isdigit()):
        return None
    return name.rstrip(".")  # "localhost." names localhost too


def host_allowed(name: str, allowed: tuple[str, ...]) -> bool:
    if is_loopback(name):
        return True
    name = _canonical(name)
    return any(
        name.endswith(pattern[1:]) if pattern.startswith("*.") else name == pattern
        for pattern in allowed
    )


class AllowedHosts:
    """ASGI middleware: a request whose ``Host`` is not allowed gets a 400 and reaches no
    route (a request without one, HTTP/1.0's, passes: browsers always send it)."""

    def __init__(self, app: Any, allowed: tuple[str, ...]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            header = next((value for key, value in scope["headers"] if key == b"host"), None)
            if header is not None:
                text = header.decode("latin-1")
                name = host_name(text)
                if name is None or not host_allowed(name, self.allowed):
                    log.info("refused a request for Host %r", text)
                    if scope["type"] == "websocket":  # closed before it is accepted: 403
                        await send({"type": "websocket.close", "code": 1008})
                        return
                    message = (
                        f"Host: {text!r} is not a name this server answers to (localhost"
                        f"{''.join(', ' + name for name in self.allowed)}); "
                        "start it with --allowed-hosts NAME to add one"
                    )
                    await _answer_400(send, message)
                    return
        await self.app(scope, receive, send)


async def _answer_400(send: Any, message: str) -> None:
    """A JSON error in plain ASGI (this module is imported before the serving extras are
    known to be installed, so it needs nothing of FastAPI's)."""
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 400, "headers": headers})
    await send({"type": "http.response.body", "body": body})
