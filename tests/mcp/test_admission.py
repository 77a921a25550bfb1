"""One admission pipeline: the same bad request gets the same refusal (its code) from every
entry point: the HTTP API, MCP (a real MCP client), and the CLI in a process of its own
(`stigmer run --no-server`). Nothing runs for any of them."""

import json

import httpx2
import pytest

from conftest import CLIENT_NAME, stdio_session

pytestmark = pytest.mark.anyio


def code_in(text):
    for code in ("CWD_NOT_FOUND", "INVALID_REQUEST", "DENIED_BY_USER", "APPROVAL_UNAVAILABLE"):
        if code in text:
            return code
    return text


async def test_each_refusal_is_the_same_from_http_mcp_and_the_cli(home, work):
    status, token = home.start_server("--mode", "local")
    api = httpx2.Client(base_url=status["url"], headers={"Authorization": f"Bearer {token}"})
    canary = work / "canary"
    touch = f"touch {canary}"
    # (what is wrong, the HTTP body, the MCP arguments, the CLI's arguments, the code)
    cases = [
        ("no such folder", {"shell": touch, "cwd": "/nonexistent/dir"},
         {"command": touch, "cwd": "/nonexistent/dir"}, ["--cwd", "/nonexistent/dir", "-c", touch],
         "CWD_NOT_FOUND"),
        ("a timeout of no time", {"shell": touch, "cwd": str(work), "timeout_secs": 0},
         {"command": touch, "cwd": str(work), "timeout_secs": 0}, ["--cwd", str(work), "--timeout", "0", "-c", touch],
         "INVALID_REQUEST"),
        ("a variable name with =", {"shell": touch, "cwd": str(work), "env": {"A=B": "x"}},
         {"command": touch, "cwd": str(work), "env": {"A=B": "x"}}, None, "INVALID_REQUEST"),
    ]
    async with stdio_session(home, work) as s:
        for what, body, args, cli, code in cases:
            r = api.post("/v1/runs", json=body)
            http_code = r.json()["error"]["code"]
            m = await s.call_tool("run_command", args)
            assert m.is_error, (what, m)
            mcp_text = "".join(c.text for c in m.content if hasattr(c, "text"))
            # The CLI's flags cannot say some of them (`-e` splits at the first `=`).
            cli_code = code
            if cli is not None:
                c = home.cli("run", "--no-server", *cli, check=False)
                assert c.returncode == 125, (what, c.stdout, c.stderr)
                cli_code = code_in(c.stderr)
            assert (http_code, code_in(mcp_text), cli_code) == (code,) * 3, (
                what, r.json(), mcp_text, cli_code)

        # A client the user refuses, and one the user wants to be asked about: the same rule
        # everywhere, save that in a process of its own there is nobody to ask.
        # Named as each entry point names itself: no name (`other`), the MCP client's, the CLI's.
        for name in ("other", f"{CLIENT_NAME} (MCP)", "stigmer-cli"):
            home.cli("clients", "set", name, "--rule", "refuse")
        r = api.post("/v1/runs", json={"shell": touch, "cwd": str(work)})
        m = await s.call_tool("run_command", {"command": touch, "cwd": str(work)})
        c = home.cli("run", "--no-server", "--cwd", str(work), "-c", touch, check=False)
        assert (r.json()["error"]["code"], code_in(m.content[0].text), code_in(c.stderr)) == (
            "DENIED_BY_USER",) * 3, (r.json(), m.content[0].text, c.stderr)
        home.cli("clients", "set", "stigmer-cli", "--rule", "ask")
        c = home.cli("run", "--no-server", "--cwd", str(work), "-c", touch, check=False)
        assert c.returncode == 125 and "APPROVAL_UNAVAILABLE" in c.stderr, c.stderr
    assert not canary.exists()
    assert home.runs() == [], "a refused request is no run"
