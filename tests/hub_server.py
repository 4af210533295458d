"""A small Hugging Face Hub-compatible HTTP server for the tests, on 127.0.0.1.

It serves the endpoints `huggingface_hub` 2.x calls to create a repository, upload a commit and download from it:

* `POST /api/repos/create`, `POST /api/validate-yaml`
* `POST /api/models/{repo}/preupload/{rev}` (upload mode per file: "regular", or "lfs" in `lfs` mode)
* `POST /{repo}.git/info/lfs/objects/batch`, then `PUT` / `POST` of the upload and verify actions it hands out
* `POST /api/models/{repo}/commit/{rev}` (NDJSON: header, file, lfsFile, deletedFile)
* `GET /api/models/{repo}[/revision/{rev}]`, `GET /api/models/{repo}/tree/{rev}[/{path}]`
* `HEAD` / `GET /{repo}/resolve/{rev}/{path}` with the Hub's headers (`X-Repo-Commit`, `ETag`, and for LFS files
  `X-Linked-Etag` / `X-Linked-Size` and a redirect to a second, CDN-like origin that must not receive the token).

Writes (and reads of private repositories) need `Authorization: Bearer <token>`. Every request is logged with its
headers and body, so tests can check where a token travelled. Xet storage is not served: clients must run with
`HF_HUB_DISABLE_XET=1`. Revisions are branch names or commit ids; there are no tags or pull requests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

MAX_BODY_BYTES = 512 * 1024 * 1024
MAX_CHUNKS = 1_000_000
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".npy", ".parquet")
LFS_MIN_SIZE = 10 * 1024  # like a .gitattributes rule: big files go to LFS in "lfs" mode


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob (what the Hub reports as `oid` / `ETag` of a regular file)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


@dataclass
class StoredFile:
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def blob_id(self) -> str:
        # An LFS file's git blob is its pointer file.
        return git_blob_sha1(lfs_pointer(self.sha256, len(self.data)) if self.lfs else self.data)


@dataclass
class Commit:
    oid: str
    message: str
    files: dict[str, StoredFile]


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit oid

    def resolve(self, revision: str) -> Commit | None:
        oid = self.branches.get(revision, revision)
        return self.commits.get(oid)


@dataclass
class LoggedRequest:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    origin: str  # "hub" or "cdn"


class HubState:
    """What the server holds: repositories, LFS objects and the request log. Thread-safe through one lock."""

    def __init__(self, token: str, upload_mode: str = "regular"):
        if upload_mode not in ("regular", "lfs"):
            raise ValueError(f"upload_mode must be 'regular' or 'lfs', got {upload_mode!r}")
        self.token = token
        self.upload_mode = upload_mode
        self.repos: dict[str, Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.requests: list[LoggedRequest] = []
        self.lock = threading.Lock()


_REPO = r"(?P<repo>[^/]+/[^/]+)"
_ROUTES = [
    ("POST", re.compile(r"/api/repos/create"), "create_repo"),
    ("POST", re.compile(r"/api/validate-yaml"), "validate_yaml"),
    ("POST", re.compile(rf"/api/models/{_REPO}/preupload/(?P<rev>[^/]+)"), "preupload"),
    ("POST", re.compile(rf"/api/models/{_REPO}/commit/(?P<rev>[^/]+)"), "create_commit"),
    ("POST", re.compile(rf"/{_REPO}\.git/info/lfs/objects/batch"), "lfs_batch"),
    ("PUT", re.compile(r"/lfs-upload/(?P<oid>[0-9a-f]{64})"), "lfs_upload"),
    ("POST", re.compile(r"/lfs-verify/(?P<oid>[0-9a-f]{64})"), "lfs_verify"),
    ("GET", re.compile(rf"/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?"), "tree"),
    ("GET", re.compile(rf"/api/models/{_REPO}(?:/revision/(?P<rev>[^/]+))?"), "repo_info"),
    ("HEAD", re.compile(rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)"), "resolve"),
    ("GET", re.compile(rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)"), "resolve"),
]
_CDN_ROUTE = re.compile(r"/lfs-objects/(?P<oid>[0-9a-f]{64})")


class HubError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's pooled connections expect
    server: _Server

    # -------------------------------------------------------------------------------------------- plumbing

    def log_message(self, format, *args):  # the request log replaces stderr lines
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts, total = [], 0
            for _ in range(MAX_CHUNKS):
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    for _ in range(100):  # trailer lines up to the blank line
                        if self.rfile.readline() in (b"\r\n", b"\n", b""):
                            break
                    return b"".join(parts)
                total += size
                if total > MAX_BODY_BYTES:
                    raise HubError(413, "TooLarge", "request body too large")
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            raise HubError(413, "TooLarge", "too many chunks")
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise HubError(413, "TooLarge", "request body too large")
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head_only: bool = False):
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head_only and body:
            self.wfile.write(body)

    def _json(self, status: int, payload, headers: dict[str, str] | None = None):
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _handle(self, method: str):
        state = self.server.state
        url = urlsplit(self.path)
        try:
            body = self._read_body()
        except HubError as error:
            self._json(error.status, {"error": error.message})
            return
        with state.lock:
            state.requests.append(
                LoggedRequest(method, self.path, list(self.headers.items()), body, self.server.origin_name)
            )
        try:
            if self.server.origin_name == "cdn":
                match = _CDN_ROUTE.fullmatch(url.path)
                if method not in ("GET", "HEAD") or match is None:
                    raise HubError(404, "EntryNotFound", f"no object at {url.path}")
                data = state.lfs_objects.get(match["oid"])
                if data is None:
                    raise HubError(404, "EntryNotFound", "no such LFS object")
                self._send(200, data, {"Content-Type": "application/octet-stream", "ETag": f'"{match["oid"]}"'},
                           head_only=method == "HEAD")
                return
            for route_method, pattern, name in _ROUTES:
                match = pattern.fullmatch(url.path)
                if match and route_method == method:
                    params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    getattr(self, f"_{name}")(body=body, query=parse_qs(url.query), head_only=method == "HEAD",
                                              **params)
                    return
            raise HubError(404, "NotFound", f"{method} {url.path} is not served by the test Hub")
        except HubError as error:
            headers = {"X-Error-Code": error.code, "X-Error-Message": error.message, **error.headers}
            self._send(error.status, json.dumps({"error": error.message}).encode(),
                       {"Content-Type": "application/json", **headers}, head_only=method == "HEAD")

    def do_GET(self):
        self._handle("GET")

    def do_HEAD(self):
        self._handle("HEAD")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    # -------------------------------------------------------------------------------------------- auth and lookup

    def _authorised(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {self.server.state.token}"

    def _require_auth(self):
        if not self._authorised():
            raise HubError(401, "Unauthorized", "Invalid credentials in Authorization header")

    def _repo(self, repo_id: str, write: bool = False) -> Repo:
        repo = self.server.state.repos.get(repo_id)
        if write:
            self._require_auth()
        # Like the Hub: a private repository is indistinguishable from a missing one without the right token.
        if repo is None or (repo.private and not self._authorised()):
            raise HubError(401 if not self._authorised() else 404, "RepoNotFound", f"Repository {repo_id} not found")
        return repo

    def _commit_at(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return commit

    def _base(self) -> str:
        return self.server.base_url

    # -------------------------------------------------------------------------------------------- uploads

    def _create_repo(self, body: bytes, **_):
        self._require_auth()
        payload = json.loads(body)
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        if payload.get("type", "model") != "model":
            raise HubError(400, "BadRequest", "only model repositories are served")
        state = self.server.state
        with state.lock:
            if repo_id in state.repos:
                # The Hub's conflict answer carries the URL: `create_repo(exist_ok=True)` reads it.
                self._json(409, {"error": "You already created this model repo", "url": f"{self._base()}/{repo_id}"})
                return
            repo = Repo(repo_id, private=payload.get("visibility") == "private")
            # A new repository starts with one commit holding .gitattributes, as on the Hub.
            initial = _make_commit({".gitattributes": StoredFile(b"*.safetensors filter=lfs diff=lfs merge=lfs "
                                                                        b"-text\n", lfs=False)}, "initial commit")
            repo.commits[initial.oid] = initial
            repo.branches["main"] = initial.oid
            state.repos[repo_id] = repo
        self._json(200, {"url": f"{self._base()}/{repo_id}", "name": repo_id, "id": initial.oid})

    def _validate_yaml(self, body: bytes, **_):
        import yaml

        content = json.loads(body)["content"]
        errors = []
        if content.startswith("---\n"):
            try:
                metadata = yaml.safe_load(content.split("---\n", 2)[1])
                if not isinstance(metadata, dict):
                    errors.append({"message": "metadata must be a YAML mapping"})
            except yaml.YAMLError as error:
                errors.append({"message": f"invalid YAML: {error}"})
        warnings = [] if content.startswith("---\n") else [{"message": "empty or missing yaml metadata"}]
        self._json(400 if errors else 200, {"errors": errors, "warnings": warnings})

    def _preupload(self, repo: str, rev: str, body: bytes, **_):
        self._repo(repo, write=True)
        files = json.loads(body)["files"]
        mode = self.server.state.upload_mode

        def upload_mode(entry) -> str:
            if mode == "regular":
                return "regular"
            return "lfs" if entry["path"].endswith(LFS_SUFFIXES) or entry["size"] >= LFS_MIN_SIZE else "regular"

        self._json(200, {"files": [
            {"path": entry["path"], "uploadMode": upload_mode(entry), "shouldIgnore": False, "oid": None}
            for entry in files
        ], "commitOid": None})

    def _lfs_batch(self, repo: str, body: bytes, **_):
        self._repo(repo, write=True)
        payload = json.loads(body)
        if payload.get("operation") != "upload" or "basic" not in payload.get("transfers", ["basic"]):
            raise HubError(400, "BadRequest", "only basic uploads are served")
        objects = []
        for entry in payload["objects"]:
            item = {"oid": entry["oid"], "size": entry["size"]}
            if entry["oid"] not in self.server.state.lfs_objects:
                item["actions"] = {
                    "upload": {"href": f"{self._base()}/lfs-upload/{entry['oid']}"},
                    "verify": {"href": f"{self._base()}/lfs-verify/{entry['oid']}"},
                }
            objects.append(item)
        self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(),
                   {"Content-Type": "application/vnd.git-lfs+json"})

    def _lfs_upload(self, oid: str, body: bytes, **_):
        # On the Hub this is a pre-signed storage URL: no Authorization header is needed (or expected).
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, "BadRequest", "content does not match its sha256")
        with self.server.state.lock:
            self.server.state.lfs_objects[oid] = body
        self._send(200)

    def _lfs_verify(self, oid: str, body: bytes, **_):
        self._require_auth()
        payload = json.loads(body)
        data = self.server.state.lfs_objects.get(oid)
        if data is None or len(data) != payload["size"] or payload["oid"] != oid:
            raise HubError(404, "EntryNotFound", f"LFS object {oid} was not uploaded")
        self._json(200, {"success": True})

    def _create_commit(self, repo: str, rev: str, body: bytes, **_):
        repo_id, revision = repo, rev
        repo = self._repo(repo_id, write=True)
        if self.headers.get("Content-Type") != "application/x-ndjson":
            raise HubError(400, "BadRequest", "commit payload must be application/x-ndjson")
        if revision not in repo.branches:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        parent = repo.commits[repo.branches[revision]]
        files = dict(parent.files)
        message = ""
        for line in body.splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                message = value["summary"]
            elif key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, "BadRequest", "regular files must be base64-encoded")
                files[value["path"]] = StoredFile(base64.b64decode(value["content"]), lfs=False)
            elif key == "lfsFile":
                data = self.server.state.lfs_objects.get(value["oid"])
                if data is None or len(data) != value["size"]:
                    raise HubError(400, "BadRequest", f"LFS object of {value['path']} was not uploaded")
                files[value["path"]] = StoredFile(data, lfs=True)
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise HubError(404, "EntryNotFound", "A file with this name doesn't exist")
            else:
                raise HubError(400, "BadRequest", f"unsupported commit operation {key!r}")
        commit = _make_commit(files, message, parent=parent.oid)
        with self.server.state.lock:
            repo.commits[commit.oid] = commit
            repo.branches[revision] = commit.oid
        self._json(200, {"success": True, "commitOid": commit.oid,
                         "commitUrl": f"{self._base()}/{repo_id}/commit/{commit.oid}"})

    # -------------------------------------------------------------------------------------------- downloads

    def _repo_info(self, repo: str, rev: str = "main", **_):
        found = self._repo(repo)
        commit = self._commit_at(found, rev)
        self._json(200, {
            "id": repo, "modelId": repo, "sha": commit.oid, "private": found.private,
            "siblings": [{"rfilename": path} for path in sorted(commit.files)],
            "tags": [], "downloads": 0, "likes": 0,
        })

    def _tree(self, repo: str, rev: str, query: dict, path: str = "", **_):
        commit = self._commit_at(self._repo(repo), rev)
        recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
        prefix = f"{path.rstrip('/')}/" if path else ""
        entries, folders = [], set()
        for name in sorted(commit.files):
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix):]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/", 1)[0])
                continue
            stored = commit.files[name]
            entry = {"type": "file", "path": name, "size": len(stored.data), "oid": stored.blob_id}
            if stored.lfs:
                entry["lfs"] = {"oid": stored.sha256, "size": len(stored.data),
                                "pointerSize": len(lfs_pointer(stored.sha256, len(stored.data)))}
            entries.append(entry)
        if recursive:
            for name in commit.files:
                if name.startswith(prefix):
                    parts = name[len(prefix):].split("/")[:-1]
                    folders.update(prefix + "/".join(parts[: i + 1]) for i in range(len(parts)))
        entries += [{"type": "directory", "path": folder, "oid": hashlib.sha1(folder.encode()).hexdigest()}
                    for folder in sorted(folders)]
        if path and not entries:
            raise HubError(404, "EntryNotFound", f"{path} does not exist at {rev}")
        self._json(200, entries)

    def _resolve(self, repo: str, rev: str, path: str, head_only: bool, **_):
        commit = self._commit_at(self._repo(repo), rev)
        stored = commit.files.get(path)
        if stored is None:
            raise HubError(404, "EntryNotFound", f"{path} does not exist at {rev}",
                           headers={"X-Repo-Commit": commit.oid})
        headers = {"X-Repo-Commit": commit.oid, "Content-Type": "application/octet-stream"}
        if stored.lfs:
            # As the Hub: a redirect to the storage CDN, the file's facts in X-Linked-* headers.
            headers.update({"ETag": f'"{stored.blob_id}"', "X-Linked-Etag": f'"{stored.sha256}"',
                            "X-Linked-Size": str(len(stored.data)),
                            "Location": f"{self.server.cdn_url}/lfs-objects/{stored.sha256}"})
            self._send(302, b"", headers, head_only=head_only)
            return
        headers["ETag"] = f'"{stored.blob_id}"'
        self._send(200, stored.data, headers, head_only=head_only)


def _make_commit(files: dict[str, StoredFile], message: str, parent: str = "") -> Commit:
    digest = hashlib.sha1(parent.encode() + message.encode() + str(time.time_ns()).encode())
    for name in sorted(files):
        digest.update(name.encode() + files[name].blob_id.encode())
    return Commit(digest.hexdigest(), message, files)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: HubState, origin_name: str):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state
        self.origin_name = origin_name
        self.base_url = f"http://127.0.0.1:{self.server_address[1]}"
        self.cdn_url = ""


class HubServer:
    """
    The test Hub and its CDN-like LFS origin, each on an ephemeral port of 127.0.0.1, served from daemon threads.
    Use as a context manager; `url` is the value for `HF_ENDPOINT`.
    """

    def __init__(self, token: str, upload_mode: str = "regular"):
        self.state = HubState(token, upload_mode)
        self._hub = _Server(self.state, "hub")
        self._cdn = _Server(self.state, "cdn")
        self._hub.cdn_url = self._cdn.base_url
        self._threads = [
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
            for server in (self._hub, self._cdn)
        ]

    @property
    def url(self) -> str:
        return self._hub.base_url

    @property
    def cdn_url(self) -> str:
        return self._cdn.base_url

    @property
    def requests(self) -> list[LoggedRequest]:
        with self.state.lock:
            return list(self.state.requests)

    def set_upload_mode(self, mode: str) -> None:
        if mode not in ("regular", "lfs"):
            raise ValueError(mode)
        self.state.upload_mode = mode

    def __enter__(self) -> HubServer:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        for server in (self._hub, self._cdn):
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)
