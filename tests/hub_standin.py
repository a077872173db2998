"""A local stand-in for the Hugging Face hub's HTTP API, keeping what it receives in memory:
enough of it for create_repo and upload_folder (files committed inline) and for
snapshot_download and hf_hub_download (model info at a revision, the file tree, file
resolution with the headers huggingface_hub reads: X-Repo-Commit, ETag, Content-Length,
X-Error-Code on a miss).

Every commit gets its own sha; a revision is a branch name (``main``, or one committed to)
or a commit's sha. A private repository is found only with the token."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

REPO = r"([^/]+/[^/]+)"


class HubStandIn:
    def __init__(self, token: str = "hf_test") -> None:
        self.token = token
        # repo id -> {"private", "files" (the main branch's), "branches" (name -> sha),
        # "commits" (sha -> {path: bytes})}
        self.repos: dict[str, dict[str, Any]] = {}
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

    def add_repo(self, repo: str, private: bool = False) -> None:
        self.repos.setdefault(
            repo, {"private": private, "files": {}, "branches": {}, "commits": {}}
        )

    def commit(self, repo: str, files: dict[str, bytes], branch: str = "main") -> str:
        """Commit ``files`` (added or replaced) on ``branch``; returns the commit's sha."""
        data = self.repos[repo]
        parent = data["branches"].get(branch) or data["branches"].get("main")
        tree = {**(data["commits"][parent] if parent else {}), **files}
        sha = hashlib.sha1(f"{repo}:{len(data['commits'])}".encode()).hexdigest()
        data["commits"][sha] = tree
        data["branches"][branch] = sha
        if branch == "main":
            data["files"] = tree
        return sha

    def tree(self, repo: str, revision: str) -> tuple[str, dict[str, bytes]] | None:
        """(commit sha, files) of ``repo`` at a branch or commit; None if there is none."""
        data = self.repos[repo]
        sha = data["branches"].get(revision, revision)
        return (sha, data["commits"][sha]) if sha in data["commits"] else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                return

            def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _miss(self, code: str, message: str, commit: str | None = None) -> None:
                headers = {"X-Error-Code": code, "X-Error-Message": message}
                if commit:
                    headers["X-Repo-Commit"] = commit
                self._reply(404, {"error": message}, headers)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _visible(self, repo: str) -> bool:
                """The repository exists and the caller may see it."""
                if repo not in hub.repos:
                    return False
                token = self.headers.get("Authorization")
                return not hub.repos[repo]["private"] or token == f"Bearer {hub.token}"

            def _revision(self, repo: str, revision: str) -> tuple[str, dict[str, bytes]] | None:
                """The repository's commit and files at ``revision``; None (a 404 sent)
                when the repository or the revision is not there."""
                if not self._visible(repo):
                    self._miss("RepoNotFound", "Repository not found")
                    return None
                found = hub.tree(repo, revision)
                if found is None:
                    self._miss("RevisionNotFound", f"Invalid rev id: {revision}")
                return found

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                hub.calls.append((self.command, self.path))
                path = urlsplit(self.path).path
                info = re.fullmatch(rf"/api/models/{REPO}(?:/revision/([^/]+))?", path)
                if info:  # model_info / repo_info
                    repo, revision = info.group(1), unquote(info.group(2) or "main")
                    found = self._revision(repo, revision)
                    if found is not None:
                        sha, files = found
                        siblings = [{"rfilename": name} for name in sorted(files)]
                        body = {"id": repo, "sha": sha, "private": hub.repos[repo]["private"]}
                        self._reply(200, {**body, "siblings": siblings})
                    return
                tree = re.fullmatch(rf"/api/models/{REPO}/tree/([^/]+)(/.*)?", path)
                if tree:  # list_repo_tree (recursive: every file, in one page)
                    repo, revision = tree.group(1), unquote(tree.group(2))
                    prefix = unquote(tree.group(3) or "/").lstrip("/")
                    found = self._revision(repo, revision)
                    if found is not None:
                        entries = [
                            {"type": "file", "path": name, "size": len(data), "oid": _git_sha(data)}
                            for name, data in sorted(found[1].items())
                            if name.startswith(prefix)
                        ]
                        self._reply(200, entries)
                    return
                resolve = re.fullmatch(rf"/{REPO}/resolve/([^/]+)/(.+)", path)
                if not resolve:
                    return self._reply(404, {"error": f"no route {self.path}"})
                repo, revision, name = resolve.group(1), unquote(resolve.group(2)), resolve.group(3)
                found = self._revision(repo, revision)
                if found is None:
                    return
                sha, files = found
                name = unquote(name)
                if name not in files:
                    return self._miss("EntryNotFound", f"{name} does not exist", commit=sha)
                data = files[name]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", f'"{_git_sha(data)}"')
                self.send_header("X-Repo-Commit", sha)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_HEAD = do_GET  # noqa: N815 (the same answer without a body)

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
                    hub.add_repo(repo, private)
                    return self._reply(200, {"url": f"{hub.url}/{repo}", "name": repo})
                match = re.fullmatch(rf"/api/models/{REPO}/(preupload|commit)/([^/]+)", self.path)
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
                added: dict[str, bytes] = {}
                for line in body.decode().splitlines():
                    item = json.loads(line)
                    if item["key"] == "file":
                        value = item["value"]
                        added[value["path"]] = base64.b64decode(value["content"])
                sha = hub.commit(repo, added, branch=unquote(match.group(3)))
                return self._reply(
                    200,
                    {
                        "commitUrl": f"{hub.url}/{repo}/commit/{sha}",
                        "commitOid": sha,
                        "pullRequestUrl": None,
                    },
                )

        return Handler


def _git_sha(data: bytes) -> str:
    """A file's git blob id, what the hub gives as the ETag of a file not stored in LFS."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
