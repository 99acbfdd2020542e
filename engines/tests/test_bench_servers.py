"""Peers run as servers: finding their binaries, their command lines, and a child server's lifecycle."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import httpx
import pytest

from sagellm.core.ports import ephemeral_port
from sagellm.engines.bench import served_peers
from sagellm.engines.bench.served_peers import find_llama_server, find_llama_tool, llama_server_command
from sagellm.engines.bench.server_process import ServerCommand, ServerStartError, running_server


def _executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_llama_server_is_found_by_path_folder_or_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(served_peers, "PEER_CACHE", tmp_path / "empty-cache")
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    monkeypatch.delenv(served_peers.LLAMA_SERVER_ENV, raising=False)
    assert find_llama_server() is None
    binary = _executable(tmp_path / "llama-server")
    assert find_llama_server(str(binary)) == binary
    assert find_llama_server(str(tmp_path)) == binary  # its folder, as the build script prints it
    monkeypatch.setenv(served_peers.LLAMA_SERVER_ENV, str(tmp_path))
    assert find_llama_server() == binary
    assert find_llama_tool(binary, "llama-perplexity") is None
    assert find_llama_tool(binary, "llama-server") == binary


def test_a_plain_file_that_is_not_executable_is_not_a_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(served_peers, "PEER_CACHE", tmp_path / "empty-cache")
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    monkeypatch.delenv(served_peers.LLAMA_SERVER_ENV, raising=False)
    (tmp_path / "llama-server").write_text("not a program")
    assert find_llama_server(str(tmp_path)) is None


def test_llama_server_runs_parallel_slots_on_the_given_threads(tmp_path: Path) -> None:
    command = llama_server_command(tmp_path / "llama-server", tmp_path / "m.gguf", 8123, slots=64, threads=2)
    argv = list(command.argv)
    assert argv[argv.index("-np") + 1] == "64"
    assert argv[argv.index("-t") + 1] == "2"
    assert int(argv[argv.index("-c") + 1]) == 64 * served_peers.SLOT_CONTEXT  # the context is split among slots
    assert command.base_url == "http://127.0.0.1:8123/v1"


def test_a_server_that_exits_at_once_is_reported_with_its_log(tmp_path: Path) -> None:
    code = "import sys; print('cannot load the model'); sys.exit(3)"
    command = ServerCommand("broken", (sys.executable, "-c", code), ephemeral_port(), startup_timeout_s=30)
    with (
        pytest.raises(ServerStartError, match=r"broken exited with code 3: cannot load the model"),
        running_server(command, tmp_path),
    ):
        pass


def test_a_healthy_server_is_served_then_stopped(tmp_path: Path) -> None:
    port = ephemeral_port()
    argv = (sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path))
    command = ServerCommand("static", argv, port, health_path="/", startup_timeout_s=60)
    with running_server(command, tmp_path) as base_url:
        assert base_url == f"http://127.0.0.1:{port}/v1"
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
