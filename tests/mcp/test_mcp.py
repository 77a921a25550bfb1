"""stigmer's MCP server, driven by the official MCP Python SDK over stdio and Streamable HTTP,
in local and sandbox mode, against the real binary, server and container engine."""

import contextlib
import json
import os
import subprocess
import time
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import MCPError

from conftest import CLIENT_NAME, http_session, readme_http_config, stdio_session

pytestmark = pytest.mark.anyio

HEAD = TAIL = 8192
MODES = ["local", "protected", "sandbox"]
TRANSPORTS = ["stdio", "http"]


def text(result):
    return "".join(c.text for c in result.content if c.type == "text")


@contextlib.asynccontextmanager
async def agent(transport, home, cwd):
    """A session with the server running in `home`, the way the README connects each kind."""
    if transport == "stdio":
        async with stdio_session(home, cwd) as session:
            yield session
    else:
        status = json.loads(home.cli("server", "status", "--json").stdout)
        token = home.cli("server", "token").stdout.strip()
        url, headers = readme_http_config(port_of(status), token)
        async with http_session(url, headers) as session:
            await session.initialize()
            yield session


async def read_all(session, run_id, stream="stdout", max_bytes=1_048_576, max_pages=200):
    """Every page of a run's kept output, following next_offset to eof: (texts, last page)."""
    texts, offset = [], 0
    for _ in range(max_pages):
        page = await session.call_tool(
            "get_run_output", {"run_id": run_id, "stream": stream, "offset": offset, "max_bytes": max_bytes}
        )
        assert not page.is_error, text(page)
        p = page.structured_content
        texts.append(p["text"])
        assert p["next_offset"] > offset or p["eof"], p
        offset = p["next_offset"]
        if p["eof"]:
            return texts, p
    raise AssertionError(f"no eof after {max_pages} pages")


def port_of(status):
    return int(status["url"].rsplit(":", 1)[1])


def start(home, mode, image=None):
    args = ["--mode", mode] + (["--image", image] if image else [])
    return home.start_server(*args)


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


@pytest.fixture
def server(home, mode, work, request):
    """A server in `mode` (sandbox mode uses the busybox test image; sandbox and protected mode
    with the work folder allowed: HTTP agents have no session folder of their own)."""
    image = request.getfixturevalue("sandbox_image") if mode == "sandbox" else None
    if mode != "local":
        home.cli("workspaces", "add", str(work))
    start(home, mode, image)
    return image


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_tools_are_described_for_a_model(home, work, transport):
    start(home, "local")
    async with agent(transport, home, work) as s:
        tools = {t.name: t for t in (await s.list_tools()).tools}
        # Reading what a run changed, yes; undoing it is the user's, never a tool.
        assert set(tools) == {"run_command", "get_run_output", "get_environment", "get_run_changes"}
        for t in tools.values():
            assert len(t.description) > 80, t.name
            assert t.input_schema["type"] == "object"
        props = tools["run_command"].input_schema["properties"]
        assert {"command", "argv", "cwd", "env", "timeout_secs"} <= set(props)
        # The mode is the user's: no tool offers it.
        assert "mode" not in props and "image" not in props
        for p in props.values():
            assert p.get("description"), props


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_run_command_in_each_mode(home, work, transport, mode, server):
    (work / "in.txt").write_text("from the host\n")
    async with agent(transport, home, work) as s:
        r = await s.call_tool(
            "run_command",
            {"command": "cat in.txt; echo oops >&2; echo $GREETING; exit 3", "cwd": str(work), "env": {"GREETING": "hello"}},
        )
    assert not r.is_error, text(r)
    out = r.structured_content
    assert out["exit_code"] == 3 and out["timed_out"] is False
    assert out["stdout"]["text"] == "from the host\nhello\n"
    assert out["stderr"]["text"] == "oops\n"
    assert out["mode"] == mode and out["image"] == server
    assert "exit code 3" in text(r) and f"{mode} mode" in text(r)
    # The run is an ordinary run: it is in the activity, labelled with the agent's name.
    (run,) = [x for x in home.runs() if x["id"] == out["run_id"]]
    assert run["client"] == f"{CLIENT_NAME} (MCP)"
    assert run["mode"] == mode


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_agent_sees_what_its_command_changed_and_reads_the_diff(home, work, transport):
    start(home, "local")
    proj = work / "proj"
    proj.mkdir()
    (proj / "a.txt").write_text("one\ntwo\n")
    (proj / "gone.txt").write_text("bye\n")
    async with agent(transport, home, work) as s:
        r = await s.call_tool(
            "run_command", {"command": "sed -i s/two/2/ a.txt && rm gone.txt", "cwd": str(proj)}
        )
        assert not r.is_error, text(r)
        # A command that printed nothing: the reply still says what it did.
        assert "FILES: this command changed 2 files: a.txt (modified), gone.txt (removed)" in text(r), text(r)
        run_id = r.structured_content["run_id"]
        d = await s.call_tool("get_run_changes", {"run_id": run_id})
        assert not d.is_error, text(d)
        assert "a.txt (modified, +1 -1)" in text(d) and "-two\n+2" in text(d), text(d)
        assert d.structured_content["files"][1]["path"] == "gone.txt"
        bad = await s.call_tool("get_run_changes", {"run_id": "run_0000000000000000"})
        assert bad.is_error and text(bad).startswith("RUN_NOT_FOUND"), text(bad)
    assert (proj / "a.txt").read_text() == "one\n2\n", "the agent cannot undo: nothing did"


async def test_huge_output_is_cut_with_exact_counts_and_read_back_whole(home, work, mode, server):
    expected = "".join(f"{i}\n" for i in range(1, 300_001)).encode()
    async with stdio_session(home, work) as s:
        r = await s.call_tool("run_command", {"argv": ["seq", "1", "300000"], "cwd": str(work)})
        assert not r.is_error, text(r)
        out = r.structured_content["stdout"]
        omitted = expected[HEAD:-TAIL]
        omitted_lines = omitted.count(b"\n")
        assert out["total_bytes"] == len(expected)
        assert out["total_lines"] == 300_000
        assert out["omitted_bytes"] == len(omitted)
        assert out["omitted_lines"] == omitted_lines
        marker = f"[... {len(omitted)} bytes / {omitted_lines} lines omitted;"
        assert marker in text(r)
        head, _, tail = out["text"].partition(marker)
        # The marker starts on a line of its own.
        first = expected[:HEAD]
        assert head.encode() == (first if first.endswith(b"\n") else first + b"\n")
        # The tail is never lost: it ends exactly where the output ends.
        assert tail.split("\n", 1)[1].encode() == expected[-TAIL:]
        assert "offset=8192" in text(r)

        run_id = r.structured_content["run_id"]
        page = await s.call_tool("get_run_output", {"run_id": run_id, "offset": HEAD, "max_bytes": 100})
        assert page.structured_content["text"].encode() == expected[HEAD : HEAD + 100]
        texts, last = await read_all(s, run_id)
        assert "".join(texts).encode() == expected and last["next_offset"] == len(expected)


async def test_timeout_reports_partial_output_and_leaves_nothing(home, work, mode, server):
    marker = "sleep 37" if mode == "sandbox" else "sleep 37.25"
    async with stdio_session(home, work) as s:
        began = time.monotonic()
        r = await s.call_tool(
            "run_command", {"command": f"echo started; {marker}; echo never", "cwd": str(work), "timeout_secs": 1}
        )
        took = time.monotonic() - began
    assert not r.is_error, text(r)
    assert r.structured_content["timed_out"] is True
    assert r.structured_content["exit_code"] == 124
    assert r.structured_content["stdout"]["text"] == "started\n"
    assert "TIMED OUT" in text(r)
    assert took < 15
    if mode != "sandbox":
        left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
        assert left.stdout == "", left.stdout
    else:
        ids = subprocess.run(
            ["docker", "ps", "-q", "--filter", f"label=dev.stigmer.workspace={work}"], capture_output=True, text=True
        ).stdout.split()
        assert ids, "the sandbox container is kept for the next command"
        ps = subprocess.run(["docker", "exec", ids[0], "ps"], capture_output=True, text=True)
        assert ps.returncode == 0 and marker not in ps.stdout, ps.stdout


async def test_bad_input_gets_clear_errors_and_runs_nothing(home, work):
    start(home, "local")
    canary = work / "canary"
    touch = f"touch {canary}"
    async with stdio_session(home, work) as s:
        cases = [
            ({"command": touch, "cwd": "/nonexistent/dir"}, "CWD_NOT_FOUND"),
            ({}, "INVALID_REQUEST"),
            ({"command": touch, "argv": ["touch", str(canary)]}, "INVALID_REQUEST"),
            ({"command": touch, "timeout_secs": -1}, "INVALID_REQUEST"),
            ({"command": touch, "timeout_secs": 99999}, "INVALID_REQUEST"),
            ({"command": touch, "mode": "local"}, "INVALID_MODE"),
            ({"command": touch, "image": "alpine"}, "INVALID_MODE"),
            ({"command": touch, "env": {"A=B": "x"}}, "INVALID_REQUEST"),
            ({"command": 42}, "deserialize"),
            ({"command": touch, "unknown": 1}, "unknown field"),
        ]
        for args, expected in cases:
            r = await s.call_tool("run_command", args)
            assert r.is_error, (args, text(r))
            assert expected in text(r), (args, text(r))
        r = await s.call_tool("get_run_output", {"run_id": "run_0000000000000000"})
        assert r.is_error and "RUN_NOT_FOUND" in text(r)
        r = await s.call_tool("get_run_output", {"run_id": "../../etc"})
        assert r.is_error and "RUN_NOT_FOUND" in text(r)
        r = await s.call_tool("get_run_output", {"run_id": "x", "max_bytes": 0})
        assert r.is_error and "INVALID_REQUEST" in text(r)
        with pytest.raises(MCPError) as e:
            await s.call_tool("no_such_tool", {})
        assert e.value.code == -32602

        # A real run works in the same session, then asking past its end is refused.
        ok = await s.call_tool("run_command", {"command": "echo fine", "cwd": str(work)})
        r = await s.call_tool("get_run_output", {"run_id": ok.structured_content["run_id"], "offset": 999})
        assert r.is_error and "INVALID_REQUEST" in text(r)
    assert not canary.exists()
    assert [r["command"] for r in home.runs()] == ["echo fine"]


async def test_http_needs_the_token(home, work):
    status, token = start(home, "local")
    url, headers = readme_http_config(port_of(status), token)
    for bad in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": token}]:
        statuses = []
        async with http_session(url, bad, statuses) as s:
            with pytest.raises(MCPError):
                await s.initialize()
        assert statuses and set(statuses) == {401}, (bad, statuses)
    raw = httpx2.post(
        url,
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "run_command", "arguments": {"command": "true"}}},
        headers={"Accept": "application/json, text/event-stream"},
    )
    assert raw.status_code == 401 and raw.json()["error"]["code"] == "UNAUTHORIZED"
    assert home.runs() == []
    # Run ids never reach the file system: a path in the URL is just an unknown run.
    base = status["url"]
    for bad_id in ["..%2F..%2Fetc%2Fpasswd", "run_0000000000000000", "%2e%2e"]:
        r = httpx2.get(f"{base}/v1/runs/{bad_id}/output", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "RUN_NOT_FOUND", (bad_id, r.text)
    # The right token works.
    async with http_session(url, headers) as s:
        await s.initialize()
        r = await s.call_tool("run_command", {"command": "echo yes", "cwd": str(work)})
        assert r.structured_content["stdout"]["text"] == "yes\n"
        r = await s.call_tool("get_run_output", {"run_id": "../../etc/passwd"})
        assert r.is_error and "RUN_NOT_FOUND" in text(r)


async def test_commands_get_an_agent_ready_environment_and_nothing_of_stigmer(home, work, mode, server):
    home.stop_server()
    home.cli("config", "set", "env.PAGER", "less -R")
    home.cli("config", "set", "env.CI", "1")
    home.cli("config", "set", "env.NO_COLOR", "")
    home.env["STIGMER_SECRET"] = "do-not-leak"
    status, token = start(home, mode, server)
    cmd = "env; cat; tty || true; echo stdin-done"
    async with stdio_session(home, work) as s:
        r = await s.call_tool("run_command", {"command": cmd, "cwd": str(work), "timeout_secs": 30})
    out = r.structured_content["stdout"]["text"]
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert env["PAGER"] == "less -R" and env["CI"] == "1"
    assert env["GIT_TERMINAL_PROMPT"] == "0" and env["GIT_PAGER"] == "cat" and env["TERM"] == "dumb"
    # Removed on this computer; a container's exec can only set it empty.
    assert ("NO_COLOR" not in env) if mode != "sandbox" else (env.get("NO_COLOR", "") == "")
    assert not [k for k in env if k.startswith("STIGMER")], env
    assert token not in out and "do-not-leak" not in out
    # stdin is closed (cat ends at once) and there is no terminal.
    assert "not a tty" in out and out.endswith("stdin-done\n")
    assert r.structured_content["exit_code"] == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_get_environment_tells_mode_and_tools(home, work, transport, mode, server):
    async with agent(transport, home, work) as s:
        r = await s.call_tool("get_environment", {})
    assert not r.is_error, text(r)
    env = r.structured_content
    assert env["mode"] == mode
    assert env["default_env"]["GIT_TERMINAL_PROMPT"] == "0"
    names = {t["name"] for t in env["tools"]}
    if mode != "sandbox":
        assert "bash" in names and f"{mode} mode" in text(r)
        assert all(t["found"] for t in env["tools"])
    else:
        assert env["image"] == server and env["engine"]["state"] == "connected"
        assert "custom image" in text(r)
    if transport == "stdio":
        assert env["default_cwd"] == str(work)


async def test_stdio_starts_a_server_for_the_session_when_none_runs(home, work):
    assert home.cli("server", "status", check=False).returncode == 3
    pid = lambda: json.loads(home.cli("server", "status", "--json").stdout)["pid"]
    a_ready, a_close = anyio.Event(), anyio.Event()
    first = {}

    async def agent_a():
        async with stdio_session(home, work) as a:
            r = await a.call_tool("run_command", {"command": "pwd"})
            assert r.structured_content["stdout"]["text"] == f"{work}\n"
            first["pid"] = pid()
            a_ready.set()
            await a_close.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(agent_a)
        await a_ready.wait()
        # A second agent attaches to the server the first one started, and outlives it.
        async with stdio_session(home, work) as b:
            a_close.set()
            for _ in range(6):  # longer than the server's 10 s linger: used, so it stays
                r = await b.call_tool("run_command", {"command": "echo still-here"})
                assert r.structured_content["stdout"]["text"] == "still-here\n"
                assert pid() == first["pid"]
                await anyio.sleep(3)
    # Nobody uses it any more: it stops. (Watched from outside: asking the server would use it.)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{first['pid']}").exists():
        assert time.monotonic() < deadline, "the session's server outlived its users"
        time.sleep(0.5)
    assert home.cli("server", "status", check=False).returncode == 3


async def test_commands_cannot_reach_the_terminal_the_server_was_started_from(home, work):
    # A server started from a terminal (`script` gives it one, as a user's shell would). Its
    # commands must not be able to open that terminal: ssh or sudo would prompt there and hang.
    server = subprocess.Popen(
        ["script", "-qfec", "stigmer server start --foreground --port 0", "/dev/null"],
        env=home.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while home.cli("server", "status", check=False).returncode != 0:
            assert time.monotonic() < deadline and server.poll() is None, "the server did not start"
            time.sleep(0.1)
        probe = "if (: </dev/tty) 2>/dev/null; then echo has-terminal; else echo no-terminal; fi"
        async with stdio_session(home, work) as s:
            r = await s.call_tool("run_command", {"command": probe, "cwd": str(work)})
        assert r.structured_content["stdout"]["text"] == "no-terminal\n", text(r)
        # The probe can tell: run straight under a terminal, it finds one.
        direct = subprocess.run(["script", "-qfec", probe, "/dev/null"], capture_output=True, text=True)
        assert "has-terminal" in direct.stdout, direct
    finally:
        home.stop_server()
        server.wait(timeout=20)


async def test_sandbox_never_mounts_stigmers_own_files(home, work, sandbox_image):
    start(home, "sandbox", sandbox_image)
    async with stdio_session(home, work) as s:
        # The folder above holds STIGMER_HOME (settings, token): a sandboxed command must not see it.
        r = await s.call_tool("run_command", {"command": "ls", "cwd": str(home.path.parent)})
    assert r.is_error and "WORKSPACE_NOT_ALLOWED" in text(r) and "never mounts" in text(r), text(r)
    assert home.runs() == [], "a refused request is no run"


async def test_output_past_the_spool_limit_is_counted_and_says_so(home, work):
    start(home, "local")
    limit = 64 * 1024 * 1024
    total = limit + 1_000_000
    async with stdio_session(home, work) as s:
        r = await s.call_tool("run_command", {"command": f"head -c {total} /dev/zero | tr '\\0' a; echo; echo done", "cwd": str(work)})
        out = r.structured_content["stdout"]
        assert out["total_bytes"] == total + 6 and out["stored_bytes"] == limit
        assert f"{limit} of the {total + 6} bytes are kept" in text(r)
        assert out["text"].endswith("a\ndone\n")  # the tail is never lost
        end = await s.call_tool("get_run_output", {"run_id": r.structured_content["run_id"], "offset": limit})
        assert end.structured_content["eof"] and end.structured_content["text"] == ""
        past = await s.call_tool("get_run_output", {"run_id": r.structured_content["run_id"], "offset": limit + 1})
        assert past.is_error and "INVALID_REQUEST" in text(past)


async def test_paging_always_progresses_whatever_the_bytes(home, work):
    start(home, "local")
    async with stdio_session(home, work) as s:
        # Latin-1 text ending inside what UTF-8 would call a character.
        r = await s.call_tool("run_command", {"command": "printf 'caf\\351'", "cwd": str(work)})
        texts, last = await read_all(s, r.structured_content["run_id"])
        assert last["next_offset"] == 4 and "".join(texts) == "caf\ufffd"
        # Pages smaller than a character still advance, one byte at a time.
        r = await s.call_tool("run_command", {"command": "printf 'é'", "cwd": str(work)})
        texts, last = await read_all(s, r.structured_content["run_id"], max_bytes=1)
        assert len(texts) == 2 and last["next_offset"] == 2
        # Binary output: every byte is counted and paged through.
        r = await s.call_tool("run_command", {"command": "head -c 300000 /dev/urandom", "cwd": str(work)})
        assert r.structured_content["stdout"]["total_bytes"] == 300000
        texts, last = await read_all(s, r.structured_content["run_id"], max_bytes=65536)
        assert last["next_offset"] == 300000 and last["eof"]


async def test_sandbox_default_folder_and_stigmers_folders(home, work, sandbox_image):
    start(home, "sandbox", sandbox_image)
    # An agent started in / (as some apps do) with no cwd: the server's scratch folder.
    async with stdio_session(home, Path("/")) as s:
        r = await s.call_tool("run_command", {"command": "pwd"})
        assert not r.is_error, text(r)
        assert r.structured_content["stdout"]["text"].rstrip().endswith("sandbox-workspace")
        env = await s.call_tool("get_environment", {})
        assert env.structured_content["default_cwd"].endswith("sandbox-workspace")
        # Inside stigmer's own folders is refused too, not only above them.
        inside = home.path / "data"
        r = await s.call_tool("run_command", {"command": "ls", "cwd": str(inside)})
        assert r.is_error and "never mounts" in text(r), text(r)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_agent_cannot_choose_what_the_sandbox_sees(home, tmp_path, transport, sandbox_image):
    """A prompt-injected agent names folders outside its workspace: each is refused with the
    code and words that stop retries, nothing runs, no container is made; the project the
    session was started in works, and a folder works once the user allows it."""
    user_home = tmp_path / "user-home"
    for d in (".ssh", ".local/bin", ".config/autostart"):
        (user_home / d).mkdir(parents=True)
    (user_home / ".ssh" / "id_rsa").write_text("secret")
    on_path = tmp_path / "bin-on-path"
    on_path.mkdir()
    project = tmp_path / "proj"
    (project / ".git").mkdir(parents=True)
    (project / "src").mkdir()
    other = tmp_path / "other"
    other.mkdir()
    (project / "src" / "link").symlink_to(user_home / ".ssh")
    home.env["HOME"] = str(user_home)
    home.env["PATH"] = f"{on_path}{os.pathsep}{home.env['PATH']}"
    start(home, "sandbox", sandbox_image)
    refused = [
        str(user_home / ".ssh"),
        str(user_home / ".local/bin"),
        str(user_home / ".config/autostart"),
        str(user_home),
        str(on_path),
        "/etc",
        "/var/run",
        "/",
        str(project / "src" / "link"),  # inside the project, a link to ~/.ssh
        f"{project}/src/../../user-home/.ssh",
    ]
    if transport == "stdio":
        refused += ["link", "../../user-home/.ssh"]  # relative to where the agent started
    async with agent(transport, home, project / "src") as s:
        for cwd in refused:
            r = await s.call_tool("run_command", {"command": "cat id_rsa; touch ran-here", "cwd": cwd})
            assert r.is_error, (cwd, text(r))
            assert "WORKSPACE_NOT_ALLOWED" in text(r) and "should not retry" in text(r), (cwd, text(r))
            assert "secret" not in text(r)
        env = await s.call_tool("get_environment", {})
        assert "nothing else of the user's computer" in text(env), text(env)
        if transport == "stdio":
            # Started in the project: its folders are the session's workspace.
            ok = await s.call_tool("run_command", {"command": "pwd", "cwd": "."})
            assert not ok.is_error, text(ok)
            assert ok.structured_content["stdout"]["text"] == f"{project / 'src'}\n"
            assert str(project) in env.structured_content["workspaces"], env.structured_content
        r = await s.call_tool("run_command", {"command": "pwd", "cwd": str(other)})
        assert r.is_error and "stigmer workspaces add" in text(r), text(r)
        # The user allows it (as the window's button does): it works at once.
        home.cli("workspaces", "add", str(other))
        r = await s.call_tool("run_command", {"command": "find / -type s 2>/dev/null; pwd", "cwd": str(other)})
        assert not r.is_error, text(r)
        assert r.structured_content["stdout"]["text"] == f"{other}\n", "a socket is visible in the sandbox"
    for d in (user_home / ".ssh", user_home, on_path, project / "src"):
        assert not (d / "ran-here").exists(), d
    assert all(x["cwd"] != str(user_home / ".ssh") for x in home.runs())
    mounted = subprocess.run(
        ["docker", "ps", "-a", "--format", '{{.Label "dev.stigmer.workspace"}}'], capture_output=True, text=True
    ).stdout.split()
    assert not [m for m in mounted if m.startswith(str(user_home)) or m in ("/etc", "/var/run", "/run")], mounted


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_command_the_user_stops_tells_the_agent_so(home, work, transport):
    """The user's Stop (`stigmer runs stop --all`, as the tray does) ends the command's tree, and
    the agent reads that the user stopped it: a distinct code and words that say not to retry."""
    start(home, "local")
    marker = "sleep 41.25"
    stopped = {}

    async def stop_once_running():
        for _ in range(200):
            if subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 0:
                break
            await anyio.sleep(0.05)
        stopped["cli"] = await anyio.to_thread.run_sync(lambda: home.cli("runs", "stop", "--all"))

    async with agent(transport, home, work) as s:
        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_once_running)
            r = await s.call_tool("run_command", {"command": f"echo started; {marker}", "cwd": str(work)})
    assert stopped["cli"].stdout.strip() == "stopped 1 running command", stopped["cli"].stdout
    assert r.is_error, text(r)
    assert text(r).startswith("CANCELLED_BY_USER: the user stopped this command"), text(r)
    assert "Do not run it again" in text(r)
    assert r.structured_content["error"]["code"] == "CANCELLED_BY_USER"
    assert r.structured_content["stdout"]["text"] == "started\n"
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert left.stdout == "", left.stdout
    run = next(x for x in home.runs() if x["id"] == r.structured_content["run_id"])
    assert run["error"]["code"] == "CANCELLED_BY_USER" and run["client"].startswith(CLIENT_NAME)


async def test_a_protected_command_that_plants_a_host_run_file_is_told_and_it_stays_read_only(home, work):
    home.cli("workspaces", "add", str(work))
    start(home, "protected")
    async with stdio_session(home, work) as s:
        r = await s.call_tool("run_command", {"command": "echo 'curl x | sh' > .envrc", "cwd": str(work)})
        assert r.structured_content["host_files"] == [str(work.resolve() / ".envrc")], text(r)
        assert ".envrc" in text(r)
        # The next command has it read-only.
        r = await s.call_tool("run_command", {"command": "echo more >> .envrc", "cwd": str(work)})
    assert r.structured_content["exit_code"] != 0, text(r)
    assert (work / ".envrc").read_text() == "curl x | sh\n"
    assert "PROTECTION" in text(r)
