"""A client whose rule is "ask me first", from an MCP agent over stdio and over HTTP: with no app
open the agent is told at once that nobody can approve; with an app (an approver reading the
events) the command waits, and allowed it runs, denied or unanswered it does not, and the agent
reads which (DENIED_BY_USER) in words that say not to retry. A refused client runs nothing."""

import json

import anyio
import httpx2
import pytest

from conftest import CLIENT_NAME
from test_mcp import TRANSPORTS, agent, text

pytestmark = pytest.mark.anyio

NAME = f"{CLIENT_NAME} (MCP)"


def api(home):
    status = json.loads(home.cli("server", "status", "--json").stdout)
    token = home.cli("server", "token").stdout.strip()
    return status["url"], {"Authorization": f"Bearer {token}"}


async def answer_when_asked(home, decision, asked):
    """Act as the app: read the events as an approver, and answer the first approval."""
    url, headers = api(home)
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=None)) as http:
        async with http.stream("GET", f"{url}/v1/events?approver=true") as events:
            asked["ready"].set()
            async for line in events.aiter_lines():
                ev = json.loads(line)
                if ev["type"] != "approval_requested":
                    continue
                asked["approval"] = ev["approval"]
                if decision is None:
                    continue  # let it time out, the app still open
                r = await http.post(f"{url}/v1/approvals/{ev['approval']['id']}", json={"decision": decision})
                assert r.status_code == 200, r.text
                return


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_ask_me_first_from_an_mcp_agent(home, work, transport):
    home.env["STIGMER_APPROVALS_TIMEOUT"] = "5"
    home.start_server("--mode", "local")
    home.cli("clients", "set", NAME, "--rule", "ask")
    mark = work / "ran"
    command = {"command": f"touch {mark}", "cwd": str(work)}

    async with agent(transport, home, work) as s:
        r = await s.call_tool("run_command", command)
        assert r.is_error and text(r).startswith("APPROVAL_UNAVAILABLE: the user wants to approve"), text(r)
        assert not mark.exists()

        for decision, code in [("deny", "DENIED_BY_USER"), (None, "DENIED_BY_USER"), ("allow_once", None)]:
            asked = {"ready": anyio.Event()}
            async with anyio.create_task_group() as tg:
                tg.start_soon(answer_when_asked, home, decision, asked)
                await asked["ready"].wait()
                await anyio.sleep(0.2)  # the approver is counted once its stream is open
                r = await s.call_tool("run_command", command)
                tg.cancel_scope.cancel()
            assert asked["approval"]["client"] == NAME, asked
            assert asked["approval"]["command"] == f"touch {mark}"
            if code:
                assert r.is_error and text(r).startswith(f"{code}: "), text(r)
                assert r.structured_content["error"]["code"] == code
                wording = "denied this command" if decision else "within 5 s"
                assert wording in text(r), text(r)
                assert not mark.exists(), "nothing ran"
            else:
                assert not r.is_error, text(r)
                assert mark.exists(), "an allowed command ran"

        home.cli("clients", "set", NAME, "--rule", "refuse")
        mark.unlink()
        r = await s.call_tool("run_command", command)
        assert r.is_error and text(r).startswith("DENIED_BY_USER: the user does not allow commands from"), text(r)
        assert not mark.exists()
    # Only the allowed command is in the history.
    assert [x["command"] for x in home.runs()] == [f"touch {mark}"]
