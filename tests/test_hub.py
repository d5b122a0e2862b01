"""Downloads that fail say why, each cause with its own error type, hint and exit code, quickly
and without huggingface_hub's retry warnings. Loopback only: a closed port and a small fake Hub."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bark_cli import presets
from bark_cli.errors import (
    CheckpointError,
    DownloadIncompleteError,
    HubAccessError,
    HubUnreachableError,
    ModelNotFoundError,
    NotCachedError,
)
from bark_cli.hub import hub_timeout, resolve_model

BARK = Path(sys.executable).with_name("bark")
SHA = "0123456789abcdef" * 2 + "01234567"
CONFIG = json.dumps({"model_type": "bark"}).encode()
BOUND_S = 10.0  # an unreachable Hub is reported within this, at huggingface_hub's default settings


class FakeHub(BaseHTTPRequestHandler):
    """The few Hub routes huggingface_hub calls for a download, one behaviour per repository:
    t/model answers (revision "nope" does not exist), t/missing and t/gated fail as the Hub fails
    them (X-Error-Code), t/private answers 401 without a code, t/slow never answers in time, and
    t/cut sends fewer bytes than its Content-Length announces."""

    protocol_version = "HTTP/1.1"
    release: threading.Event

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, length: int | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _route(self) -> tuple[str, str | None, str | None]:
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 4:  # /api/models/{org}/{name}[/revision/{rev}]
            return "/".join(parts[2:4]), (parts[5] if len(parts) > 5 else None), None
        if len(parts) >= 5 and parts[2] == "resolve":  # /{org}/{name}/resolve/{rev}/{file}
            return "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        return "", None, None  # any other route huggingface_hub may call

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        repo, revision, filename = self._route()
        if not repo:
            return self._send(404)
        if repo == "t/missing":
            return self._send(401, headers={"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
        if repo == "t/gated":
            return self._send(403, headers={"X-Error-Code": "GatedRepo", "X-Error-Message": "Access restricted"})
        if repo == "t/private":
            return self._send(401)
        if revision not in (None, "main", SHA):
            return self._send(404, headers={"X-Error-Code": "RevisionNotFound"})
        if repo == "t/slow":
            self.release.wait(30)
            return None  # the client has long given up
        if filename is None:  # the listing
            body = json.dumps({"id": repo, "sha": SHA, "siblings": [{"rfilename": "config.json"}]}).encode()
            return self._send(200, body, {"Content-Type": "application/json"})
        size = len(CONFIG) if repo == "t/model" else 4096
        meta = {"X-Repo-Commit": SHA, "ETag": f'"{repo.replace("/", "-")}-etag"'}
        if self.command == "HEAD":
            return self._send(200, headers=meta, length=size)
        if repo == "t/model":
            return self._send(200, CONFIG, meta)
        # t/cut: the first answer stops after 100 of 4096 bytes, a resumed one sends none.
        sent = b"" if self.headers.get("Range") else b"x" * 100
        self._send(206 if sent == b"" else 200, sent, meta, length=size)
        self.close_connection = True


@pytest.fixture(scope="module")
def hub():
    """The fake Hub's address, on 127.0.0.1 at a free port."""
    release = threading.Event()
    handler = type("Handler", (FakeHub,), {"release": release})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.handle_error = lambda request, address: None  # clients that hang up mid-answer are the point
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    release.set()
    server.shutdown()
    server.server_close()


def closed_port() -> str:
    """An address on which nothing listens: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def online(monkeypatch, tmp_path):
    """huggingface_hub online against a given endpoint, with an empty cache in tmp."""
    import huggingface_hub.constants as hf_constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_ETAG_TIMEOUT", raising=False)
    monkeypatch.setenv("HF_TOKEN", "")  # no token of the machine's reaches the fake Hub

    def at(endpoint: str) -> Path:  # what HF_ENDPOINT sets when huggingface_hub is imported
        monkeypatch.setattr(hf_constants, "ENDPOINT", endpoint)
        monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        return cache

    return at


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, float | None]]:
    """Every HTTP request huggingface_hub sends, as (URL, read timeout): what bounds a wait is
    the timeout each request carries and how many requests there are, whatever the machine's load."""
    import httpx2

    requests: list[tuple[str, float | None]] = []
    send = httpx2.Client.send

    def counting(self, request, *args, **kwargs):
        requests.append((str(request.url), (request.extensions.get("timeout") or {}).get("read")))
        return send(self, request, *args, **kwargs)

    monkeypatch.setattr(httpx2.Client, "send", counting)
    return requests


def assert_bounded_and_quiet(capfd, sent, timeout: float, most: int) -> None:
    """At most `most` requests, each waiting at most `timeout`: no retries with back-off."""
    assert 1 <= len(sent) <= most, sent
    assert all(wait is not None and wait <= timeout for _, wait in sent), sent
    captured = capfd.readouterr()
    assert captured.err == "", captured.err  # no retry warnings, no progress bars from huggingface_hub


# --- the library ------------------------------------------------------------------------------


def test_a_refused_connection_is_unreachable(online, capfd, sent):
    endpoint = closed_port()
    online(endpoint)
    with pytest.raises(HubUnreachableError, match=f"the Hub \\({endpoint[7:]}\\) could not be reached") as info:
        resolve_model("suno/bark-small")
    assert "check the network" in info.value.hint and "HF_HUB_OFFLINE=1" in info.value.hint
    assert_bounded_and_quiet(capfd, sent, hub_timeout(), 1)


def test_a_hub_that_does_not_answer_times_out_within_the_bound(online, hub, capfd, sent):
    online(hub)
    with pytest.raises(HubUnreachableError, match="could not be reached"):
        resolve_model("t/slow")  # at the default timeout
    assert hub_timeout() < BOUND_S
    assert_bounded_and_quiet(capfd, sent, hub_timeout(), 1)


def test_hf_hub_etag_timeout_sets_the_wait(online, hub, capfd, monkeypatch, sent):
    online(hub)
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "1")
    with pytest.raises(HubUnreachableError):
        resolve_model("t/slow")
    assert_bounded_and_quiet(capfd, sent, 1.0, 1)


def test_an_unreachable_hub_still_serves_the_cache(online):
    """As huggingface_hub does: no answer, but the model is cached, so it is used."""
    cache = online(closed_port())
    repo = cache / "models--suno--bark-small"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(SHA)
    (repo / "snapshots" / SHA).mkdir(parents=True)
    (repo / "snapshots" / SHA / "config.json").write_bytes(CONFIG)
    assert resolve_model("suno/bark-small") == repo / "snapshots" / SHA


@pytest.mark.parametrize("repo,revision,kind,message,hint", [
    ("t/missing", None, ModelNotFoundError, "no Hub model named t/missing", "check the id"),
    ("t/model", "nope", ModelNotFoundError, "model t/model has no revision nope", "--revision"),
    ("t/gated", None, HubAccessError, "model t/gated is gated", "HF_TOKEN"),
    ("t/private", None, HubAccessError, r"model t/private: the Hub refused access \(HTTP 401\)", "hf auth login"),
    ("t/cut", None, DownloadIncompleteError, "the download of model t/cut was cut short", "download resumes"),
], ids=["repo-not-found", "revision-not-found", "gated", "unauthorised", "cut-short"])
def test_hub_answers(online, hub, capfd, sent, repo, revision, kind, message, hint):
    online(hub)
    with pytest.raises(kind, match=message) as info:
        resolve_model(repo, revision=revision)
    assert hint in info.value.hint
    # A cut download is resumed a few times, each request at huggingface_hub's download timeout.
    assert_bounded_and_quiet(capfd, sent, BOUND_S, 8)


def test_a_hub_model_downloads(online, hub):
    online(hub)
    folder = resolve_model("t/model")
    assert folder.name == SHA and (folder / "config.json").read_bytes() == CONFIG


def test_offline_and_not_cached(online, monkeypatch):
    import huggingface_hub.constants as hf_constants

    online(closed_port())
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(NotCachedError, match="model t/model is not in the local cache and downloads are off") as info:
        resolve_model("t/model")
    assert "unset HF_HUB_OFFLINE" in info.value.hint and "run once online" in info.value.hint
    with pytest.raises(NotCachedError, match="voice list of t/model is not cached"):
        presets.find_voice("v2/en_speaker_6", "t/model")


def test_voice_fetch_says_why(online, hub, capfd):
    """Presets download through the same path: the same errors."""
    online(hub)
    with pytest.raises(ModelNotFoundError, match="no Hub model named t/missing"):
        presets.find_voice("v2/en_speaker_6", "t/missing")
    with pytest.raises(HubAccessError):
        presets.find_voice("v2/en_speaker_6", "t/gated")
    with pytest.raises(CheckpointError, match="the voice list of t/model has no file speaker_embeddings_path.json"):
        presets.find_voice("v2/en_speaker_6", "t/model")
    online(closed_port())
    with pytest.raises(HubUnreachableError):
        presets.find_voice("v2/en_speaker_6", "t/model")
    assert capfd.readouterr().err == ""


def test_retry_warnings_stay_silenced_only_during_our_calls(online):
    from huggingface_hub.utils import logging as hf_logging

    logger = hf_logging.get_logger("huggingface_hub")
    before = logger.level
    online(closed_port())
    with pytest.raises(HubUnreachableError):
        resolve_model("t/model")
    assert logger.level == before


# --- the installed script: one line and the exit code -------------------------------------------

# Exit codes of the CLI's table for download failures.
EXIT_NOT_FOUND, EXIT_ACCESS, EXIT_NETWORK, EXIT_OFFLINE = 2, 3, 4, 5


def bark(tmp_path: Path, endpoint: str, *args: str, offline: bool = False) -> subprocess.CompletedProcess:
    if not BARK.is_file():
        pytest.skip(f"no installed script at {BARK}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf"), HF_TOKEN="", HF_HUB_DISABLE_TELEMETRY="1",
               BARK_VOICES_DIR=str(tmp_path / "voices"), PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run([str(BARK), "say", "Hi", "-o", "x.wav", *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)


@pytest.mark.parametrize("repo,args,code,fragment", [
    ("t/missing", [], EXIT_NOT_FOUND, "no Hub model named t/missing"),
    ("t/model", ["--revision", "nope"], EXIT_NOT_FOUND, "has no revision nope"),
    ("t/gated", [], EXIT_ACCESS, "is gated"),
    ("t/private", [], EXIT_ACCESS, "refused access (HTTP 401)"),
    ("t/slow", [], EXIT_NETWORK, "could not be reached"),
    ("t/cut", [], EXIT_NETWORK, "was cut short"),
], ids=["repo-not-found", "revision-not-found", "gated", "unauthorised", "timeout", "cut-short"])
def test_script_exit_codes(tmp_path, hub, repo, args, code, fragment):
    result = bark(tmp_path, hub, "--model", repo, *args)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert result.returncode == code  # EXIT CODE (the CLI's table)
    assert not (tmp_path / "x.wav").exists()


def test_script_exit_code_unreachable(tmp_path):
    """The wait is bounded by one request at hub_timeout() (test_a_refused_connection_is_unreachable)."""
    result = bark(tmp_path, closed_port(), "--model", "t/model")
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the Hub (127.0.0.1:"), result.stderr
    assert "could not be reached" in lines[0]
    assert result.returncode == EXIT_NETWORK  # EXIT CODE (the CLI's table)


def test_script_exit_code_offline_not_cached(tmp_path):
    result = bark(tmp_path, closed_port(), "--model", "t/model", offline=True)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: model t/model is not in the local cache"), result.stderr
    assert result.returncode == EXIT_OFFLINE  # EXIT CODE (the CLI's table)
