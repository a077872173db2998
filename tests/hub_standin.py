"""A local stand-in for the Hugging Face hub's HTTP API: enough of it for create_repo and
upload_folder (files committed inline), keeping what it receives in memory."""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class HubStandIn:
    def __init__(self, token: str = "hf_test") -> None:
        self.token = token
        self.repos: dict[str, dict[str, Any]] = {}  # repo id -> {"private", "files"}
        self.calls: list[tuple[str, str]] = []
        self.cards: list[str] = []  # model cards sent for metadata validation
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HubStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                return

            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                hub.calls.append(("POST", self.path))
                if self.headers.get("Authorization") != f"Bearer {hub.token}":
                    return self._reply(401, {"error": "Invalid credentials"})
                body = self._body()
                if self.path == "/api/validate-yaml":  # the model card's metadata
                    hub.cards.append(json.loads(body).get("content", ""))
                    return self._reply(200, {})
                if self.path == "/api/repos/create":
                    data = json.loads(body)
                    repo = f"{data.get('organization') or 'me'}/{data['name']}"
                    private = data.get("private", data.get("visibility") == "private")
                    hub.repos.setdefault(repo, {"private": private, "files": {}})
                    return self._reply(200, {"url": f"{hub.url}/{repo}", "name": repo})
                match = re.fullmatch(
                    r"/api/models/([^/]+/[^/]+)/(preupload|commit)/(\w+)", self.path
                )
                if not match or match.group(1) not in hub.repos:
                    return self._reply(404, {"error": f"no route {self.path}"})
                repo, action = match.group(1), match.group(2)
                if action == "preupload":
                    files = json.loads(body)["files"]
                    modes = [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                        for f in files
                    ]
                    return self._reply(200, {"files": modes, "commitOid": "0" * 40})
                for line in body.decode().splitlines():
                    item = json.loads(line)
                    if item["key"] == "file":
                        value = item["value"]
                        hub.repos[repo]["files"][value["path"]] = base64.b64decode(value["content"])
                return self._reply(
                    200,
                    {
                        "commitUrl": f"{hub.url}/{repo}/commit/abc",
                        "commitOid": "a" * 40,
                        "pullRequestUrl": None,
                    },
                )

        return Handler
