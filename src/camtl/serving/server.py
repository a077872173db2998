"""Starting the server: load the model first, then listen (uvicorn)."""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Mapping
from pathlib import Path

from camtl.device import resolve_device
from camtl.errors import ConfigError
from camtl.serving.hosts import parse_allowed_hosts
from camtl.validation import flag, positive, require

log = logging.getLogger("camtl")


def check_flags(
    port: int,
    max_batch_tokens: int,
    max_wait_ms: float,
    max_body_bytes: int,
    max_inputs: int,
    max_queue: int,
) -> None:
    """Refuse a bad limit in one line naming its flag (before a model is read or fetched)."""
    for name, value in (
        ("--port", port),
        ("--max-batch-tokens", max_batch_tokens),
        ("--max-body-bytes", max_body_bytes),
        ("--max-inputs", max_inputs),
        ("--max-queue", max_queue),
    ):
        positive(flag(name, value), value)
    require(port <= 65535, flag("--port", port), "must be at most 65535")
    require(max_wait_ms >= 0, flag("--max-wait-ms", max_wait_ms), "must be >= 0")


API_KEY_VARIABLE = "CAMTL_API_KEY"


def resolve_api_key(given: str | None, environ: Mapping[str, str]) -> str | None:
    """The bearer token: ``--api-key``, else ``$CAMTL_API_KEY``.

    A blank key (``--api-key "$KEY"`` or ``CAMTL_API_KEY=$KEY`` with KEY unset) would serve
    without any check, and one with a space or a character outside printable ASCII could
    never match (an HTTP header carries only those): both are refused, without echoing the
    secret. No key at all: the flag left out and the variable unset."""
    if given is not None:
        check_api_key(given, "--api-key", "leave the flag out")
        return given
    from_environment = environ.get(API_KEY_VARIABLE)
    if from_environment is not None:
        check_api_key(from_environment, f"${API_KEY_VARIABLE}", "unset it")
    return from_environment


def check_api_key(key: str, where: str, instead: str = "leave it out") -> None:
    require(key.strip(), where, f"empty; {instead} to serve without a bearer token")
    require(
        all("!" <= character <= "~" for character in key),
        where,
        "must be printable ASCII without spaces (what an Authorization header can carry)",
    )


def check_can_listen(host: str, port: int) -> None:
    """Refuse a port that is taken (or a host not of this machine) before the model is read:
    a try at binding, released at once (uvicorn binds the same way, SO_REUSEADDR)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        raise ConfigError(
            f"--host {host!r} --port {port}: cannot listen there ({exc.strerror or exc})"
        ) from None


def serve(
    run_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_batch_tokens: int = 8192,
    max_wait_ms: float = 5.0,
    max_body_bytes: int = 1_000_000,
    max_inputs: int = 256,
    max_queue: int = 256,
    api_key: str | None = None,
    device: str = "cpu",
    allowed_hosts: str | None = None,
) -> None:
    """Serve ``run_dir`` until SIGTERM or Ctrl-C: in-flight requests are answered first.
    ``device``: a ``--device`` value (camtl.device); ``allowed_hosts``: an
    ``--allowed-hosts`` value (camtl.serving.hosts)."""
    try:
        import uvicorn

        from camtl.serving.app import ServeSettings, create_app
    except ImportError as exc:
        raise ConfigError(
            f"camtl serve needs the serving extras ({exc.name} is missing): "
            "pip install 'camtl[serve]'"
        ) from None
    from camtl.serving.engine import InferenceEngine

    check_flags(port, max_batch_tokens, max_wait_ms, max_body_bytes, max_inputs, max_queue)
    hosts = parse_allowed_hosts(allowed_hosts, host)
    if api_key is not None:
        check_api_key(api_key, "--api-key")
    check_can_listen(host, port)
    device = resolve_device(device)
    # ready before listening
    engine = InferenceEngine(run_dir, device=device, max_batch_tokens=max_batch_tokens)
    settings = ServeSettings(
        max_batch_tokens, max_wait_ms, max_body_bytes, max_inputs, max_queue, api_key, hosts
    )
    log.info(
        "serving %d tasks of %s (%s, precision %s) on http://%s:%d%s%s",
        len(engine.specs),
        run_dir,
        device,
        engine.precision,
        host,
        port,
        " (bearer token required)" if api_key else "",
        "" if hosts is None else f" (Host: localhost{''.join(', ' + name for name in hosts)})",
    )
    # uvicorn answers SIGTERM gracefully (stop accepting, answer what is in flight), then
    # raises the signal again with the handler it found; finding this no-op one, the
    # process ends normally with status 0, as a service manager expects of a clean stop
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uvicorn.run(
        create_app(engine, settings),
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=30,
    )
