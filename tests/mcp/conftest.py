"""Fixtures for driving the real `stigmer` binary with the official MCP Python SDK.

Every test gets servers of its own, under a STIGMER_HOME of its own. Agents are configured
exactly as the README's "Connect an agent" section says: its snippets are read from README.md.
"""

import contextlib
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import httpx2
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import Implementation

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("STIGMER_BIN", ROOT / "target" / "debug" / "stigmer")).resolve()
TEST_IMAGE = "stigmer-test/busybox:1"
CLIENT_NAME = "pytest-agent"


def readme_section():
    text = (ROOT / "README.md").read_text()
    start = text.index("## Connect an agent (MCP)")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def readme_blocks(lang):
    return re.findall(r"```" + lang + r"\n(.*?)```", readme_section(), re.S)


def readme_stdio_config():
    """The `command` and `args` an agent launches, from the README's JSON snippet; the Codex
    TOML snippet must say the same."""
    for block in readme_blocks("json"):
        server = json.loads(block)["mcpServers"]["stigmer"]
        if "command" in server:
            codex = tomllib.loads(readme_blocks("toml")[0])["mcp_servers"]["stigmer"]
            assert (codex["command"], codex["args"]) == (server["command"], server["args"])
            return server["command"], server["args"]
    raise AssertionError("README has no stdio snippet")


def readme_http_config(port, token):
    """URL and headers of the README's HTTP snippet, for this server's port and token."""
    for block in readme_blocks("json"):
        server = json.loads(block)["mcpServers"]["stigmer"]
        if "url" in server:
            url = re.sub(r":\d+/", f":{port}/", server["url"])
            headers = {k: v.replace("TOKEN", token) for k, v in server["headers"].items()}
            return url, headers
    raise AssertionError("README has no HTTP snippet")


def engine_available():
    ok = shutil.which("docker") and subprocess.run(
        ["docker", "version"], capture_output=True
    ).returncode == 0
    if not ok and os.environ.get("STIGMER_TEST_REQUIRE_ENGINE"):
        pytest.fail("no container engine, and STIGMER_TEST_REQUIRE_ENGINE is set")
    return ok


class Home:
    """A STIGMER_HOME of its own, and the `stigmer` binary run in it."""

    def __init__(self, path: Path):
        self.path = path
        self.env = dict(os.environ)
        self.env["STIGMER_HOME"] = str(path)
        # As the README says: `stigmer` on the PATH.
        self.env["PATH"] = f"{BIN.parent}{os.pathsep}{self.env.get('PATH', '')}"
        for k in ("STIGMER_EXECUTION_MODE", "STIGMER_SANDBOX_IMAGE"):
            self.env.pop(k, None)

    def cli(self, *args, check=True):
        r = subprocess.run([str(BIN), *args], env=self.env, capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"stigmer {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def start_server(self, *args):
        self.cli("server", "start", *args)
        status = json.loads(self.cli("server", "status", "--json").stdout)
        token = self.cli("server", "token").stdout.strip()
        return status, token

    def stop_server(self):
        self.cli("server", "stop", check=False)

    def runs(self):
        """The server's run history (most recent first), straight from the HTTP API."""
        status = json.loads(self.cli("server", "status", "--json").stdout)
        token = self.cli("server", "token").stdout.strip()
        r = httpx2.get(f"{status['url']}/v1/runs?limit=200", headers={"Authorization": f"Bearer {token}"})
        r.raise_for_status()
        return r.json()["runs"]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def home(tmp_path):
    h = Home(tmp_path / "home")
    yield h
    h.stop_server()


@pytest.fixture
def work(tmp_path):
    """A folder to run commands in, beside the STIGMER_HOME (sandbox mode does not mount a
    folder holding stigmer's own files)."""
    w = tmp_path / "work"
    w.mkdir()
    return w


@pytest.fixture
def sandbox_image():
    if not engine_available():
        pytest.skip("SKIPPED: no container engine on this machine")
    out = subprocess.run([str(ROOT / "tests/images/busybox.sh"), TEST_IMAGE], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return TEST_IMAGE


@contextlib.asynccontextmanager
async def stdio_session(home: Home, cwd: Path, env=None, args=()):
    """An MCP session with `stigmer mcp`, launched as the README's config says."""
    command, readme_args = readme_stdio_config()
    params = StdioServerParameters(
        command=command, args=[*readme_args, *args], env={**home.env, **(env or {})}, cwd=str(cwd)
    )
    with open(home.path.parent / "mcp-stderr.log", "a") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(
                read, write, client_info=Implementation(name=CLIENT_NAME, version="1.0"), read_timeout_seconds=120
            ) as session:
                await session.initialize()
                yield session


@contextlib.asynccontextmanager
async def http_session(url, headers, statuses=None):
    """An MCP session over Streamable HTTP; `statuses` collects every HTTP status seen."""

    async def record(resp):
        if statuses is not None:
            statuses.append(resp.status_code)

    async with httpx2.AsyncClient(
        headers=headers, timeout=httpx2.Timeout(30, read=300), event_hooks={"response": [record]}
    ) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(
                read, write, client_info=Implementation(name=CLIENT_NAME, version="1.0"), read_timeout_seconds=120
            ) as session:
                yield session
