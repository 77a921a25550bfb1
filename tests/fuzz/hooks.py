"""Schemathesis (4.32) hooks for fuzzing the stigmer server's HTTP API.

Loaded by tests/fuzz/run.sh through SCHEMATHESIS_HOOKS. Environment:

- STIGMER_FUZZ_URL    the server's base URL (http://127.0.0.1:PORT), for the run-history check
- STIGMER_FUZZ_TOKEN  its bearer token
- STIGMER_FUZZ_CWD    a throwaway directory that generated runs may use as `cwd`
- STIGMER_FUZZ_IMAGE  the sandbox image generated runs must use (default stigmer-test/busybox:1)

What they do:

- Safety: a `POST /v1/runs` body whose `mode` is `local` (after trimming, any case) would run a
  random command on the host: such cases are filtered out (`filter_case`, for the coverage and
  fuzzing phases) and, as a last line, refused in `before_call` (every request of every phase goes
  through it), which fails the run loudly instead of sending it. Invalid modes stay: they must be
  refused with 422.
- Valid runs are kept short and harmless (`map_case`, and again in `before_call` for the examples
  phase): a valid `timeout_secs` above 5 (or none) becomes at most 5; a `cwd` naming anything that
  exists on this machine becomes STIGMER_FUZZ_CWD (so a random existing folder is never mounted
  into the sandbox), and about a third of the bodies without `cwd` get it too; a valid `image`
  becomes STIGMER_FUZZ_IMAGE (no pulls from registries). Invalid values of these fields stay as
  generated, so the server's refusals are still tested.
- Check `no_run_from_invalid_request`: the ids of the 200 most recent runs
  (`GET /v1/runs?limit=200`) are read before each request and after its response. A 4xx/5xx
  answer to `POST /v1/runs` must not have added a run, a 2xx must have added exactly one (the one
  named by `X-Run-Id`), an accepted undo only the undo's own run (`undo_run`), and no other
  operation may add runs. Ids rather than counts, so the
  history's cap of 200 runs does not matter. Needs a single worker (`--workers 1`).
- Check `run_stream_conformance`: `map_case` asks for NDJSON, SSE or binary frames (`Accept`);
  an accepted run's stream must come in that framing, hold `RunStreamLine`s valid against the
  document (schemathesis has no NDJSON or frames reader) in the order started, output/heartbeat,
  finished, all about the run in `X-Run-Id`, and that run must not be a local one.
- `filter_failure`: drops the failures listed at the end of this file (schema-valid requests
  refused for documented reasons the JSON Schemas do not encode, and schemathesis' reading of the
  SSE schema); everything else fails the run.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import zlib
from typing import Any

import requests
import schemathesis

RUNS_PATH = "/v1/runs"
HISTORY = 200
MAX_TIMEOUT = 5.0
WEEK = 604800.0

_SAFE_CWD = os.environ.get("STIGMER_FUZZ_CWD") or tempfile.mkdtemp(prefix="stigmer-fuzz-cwd.")
_IMAGE = os.environ.get("STIGMER_FUZZ_IMAGE") or "stigmer-test/busybox:1"

# Everything Rust's `str::trim` removes and more (Python's `isspace` adds \x1c-\x1f): trimming
# too much can only filter out more cases, never let a `local` through.
_TRIM = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u200b\u2028\u2029\u202f\u205f\u3000\ufeff"
)


def _is_run_start(case: Any) -> bool:
    return case.method.upper() == "POST" and case.path == RUNS_PATH


def _is_local_mode(mode: Any) -> bool:
    """Whether the server would take `mode` as `local` (`trim`, then ASCII case-insensitive)."""
    return isinstance(mode, str) and mode.strip(_TRIM).lower() == "local"


def _would_run_locally(body: Any) -> bool:
    return isinstance(body, dict) and _is_local_mode(body.get("mode"))


# -- safety filter -------------------------------------------------------------------------------


@schemathesis.hook
def filter_case(context, case):
    """Never generate a run that would execute on the host."""
    return not (_is_run_start(case) and _would_run_locally(case.body))


# -- keeping valid runs short and confined -------------------------------------------------------


def _is_valid_image(s: str) -> bool:
    """Port of `validate_image_ref` (crates/engine/src/settings.rs), erring towards `valid`
    (a string said valid is replaced by the test image, which is always safe)."""
    s = s.strip(_TRIM)
    if not s or len(s.encode("utf-8", "surrogatepass")) > 512:
        return False
    rest, _, digest = s.partition("@")
    if "@" in s:
        algo, colon, hexpart = digest.partition(":")
        if not (
            colon
            and algo
            and all(c.isascii() and (c.isalnum() or c in "+._-") for c in algo)
            and len(hexpart) >= 32
            and all(c in "0123456789abcdefABCDEF" for c in hexpart)
        ):
            return False
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon != -1 and (last_slash == -1 or colon > last_slash):
        name, tag = rest[:colon], rest[colon + 1 :]
        if not (
            0 < len(tag) <= 128
            and (tag[0] == "_" or (tag[0].isascii() and tag[0].isalnum()))
            and all(c.isascii() and (c.isalnum() or c in "_.-") for c in tag)
        ):
            return False
    else:
        name = rest
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        host = parts.pop(0)
        if not all(c.isascii() and (c.isalnum() or c in ".-:[]") for c in host):
            return False
    for part in parts:
        if not (
            part
            and all((c.isascii() and (c.islower() or c.isdigit())) or c in "._-" for c in part)
            and part[0].isascii()
            and part[0].isalnum()
            and part[-1].isascii()
            and part[-1].isalnum()
        ):
            return False
    return True


def _exists(path: str) -> bool:
    try:
        return os.path.lexists(path)
    except (ValueError, OSError):  # NUL bytes, names too long
        return False


def _sanitize(body: Any) -> Any:
    """A copy of a `POST /v1/runs` body with valid values made short and confined (idempotent)."""
    if not isinstance(body, dict):
        return body
    body = dict(body)
    t = body.get("timeout_secs")
    if "timeout_secs" not in body or t is None:
        body["timeout_secs"] = MAX_TIMEOUT
    elif isinstance(t, (int, float)) and not isinstance(t, bool) and MAX_TIMEOUT < t <= WEEK:
        body["timeout_secs"] = MAX_TIMEOUT
    cwd = body.get("cwd")
    if isinstance(cwd, str):
        # Absolute paths only: the server refuses relative ones before looking at them.
        if cwd.startswith("/") and _exists(cwd) and cwd != _SAFE_CWD:
            body["cwd"] = _SAFE_CWD
    elif cwd is None:
        key = json.dumps(body, sort_keys=True, default=str).encode("utf-8", "surrogatepass")
        if zlib.crc32(key) % 3 == 0:
            body["cwd"] = _SAFE_CWD
    image = body.get("image")
    if isinstance(image, str) and _is_valid_image(image) and image != _IMAGE:
        body["image"] = _IMAGE
    return body


@schemathesis.hook
def map_case(context, case):
    if _is_run_start(case):
        case.body = _sanitize(case.body)
        _with_accept(case)
    return case


# -- the run-history check -----------------------------------------------------------------------

_lock = threading.Lock()
_before: dict[str, frozenset[str]] = {}


def _auth_from(response: Any = None) -> tuple[str, str]:
    url = os.environ.get("STIGMER_FUZZ_URL", "").rstrip("/")
    token = os.environ.get("STIGMER_FUZZ_TOKEN", "")
    auth = f"Bearer {token}" if token else ""
    if response is not None:
        req = response.request
        if not url:
            m = re.match(r"^(https?://[^/]+)", req.url or "")
            url = m.group(1) if m else ""
        if not auth:
            auth = req.headers.get("Authorization", "")
    if not url or not auth:
        raise RuntimeError("set STIGMER_FUZZ_URL and STIGMER_FUZZ_TOKEN for the fuzz hooks")
    return url, auth


def _run_ids(response: Any = None) -> frozenset[str]:
    url, auth = _auth_from(response)
    r = requests.get(f"{url}{RUNS_PATH}", params={"limit": HISTORY}, headers={"Authorization": auth}, timeout=30)
    r.raise_for_status()
    return frozenset(run["id"] for run in r.json()["runs"])


@schemathesis.hook
def before_call(context, case, kwargs):
    if _is_run_start(case):
        # The examples phase does not go through filter_case/map_case: confine its bodies here.
        body = _sanitize(case.body)
        if body != case.body:
            case.body = body
        if _would_run_locally(case.body):
            raise RuntimeError(f"refusing to send a local-mode run: {case.body!r}")
    with _lock:
        _before[case.id] = _run_ids()


@schemathesis.check
def no_run_from_invalid_request(ctx, response, case):
    """A refused request starts no run, an accepted POST /v1/runs exactly one, nothing else any."""
    with _lock:
        before = _before.pop(case.id, None)
    if before is None:  # a response this module did not see sent (not a generated case)
        return None
    after = _run_ids(response)
    added = sorted(after - before)
    status = response.status_code
    label = f"{case.method.upper()} {case.path}"
    if _is_run_start(case):
        if 200 <= status < 300:
            header = response.headers.get("x-run-id") or [""]
            run_id = header[0] if isinstance(header, list) else header
            assert len(added) == 1, f"{label} answered {status} but added {len(added)} runs: {added}"
            assert added[0] == run_id, f"{label} added run {added[0]} but X-Run-Id is {run_id!r}"
        else:
            assert not added, f"{label} was refused with {status} but started runs: {added}"
    elif case.method.upper() == "POST" and case.path == "/v1/runs/{id}/undo" and 200 <= status < 300:
        # An undo is recorded as a run of its own: the one its report names, if it undid.
        undo_run = response.json().get("undo_run")
        assert added == ([undo_run] if undo_run else []), f"{label} ({status}) added {added}, named {undo_run!r}"
    else:
        assert not added, f"{label} ({status}) started runs: {added}"
    return None


# -- the run stream ------------------------------------------------------------------------------

# The framings of `POST /v1/runs`, chosen by `Accept`: NDJSON (the default), Server-Sent Events and
# binary frames. `map_case` spreads the cases over the three (a crc of the body picks, so a seed
# gives the same requests).
_FRAMINGS = ["application/x-ndjson", "text/event-stream", "application/vnd.stigmer.frames"]


def _with_accept(case: Any) -> None:
    if case.headers and any(k.lower() == "accept" for k in case.headers):
        return
    key = json.dumps(case.body, sort_keys=True, default=str).encode("utf-8", "surrogatepass")
    framing = _FRAMINGS[zlib.crc32(key, 1) % 4 % 3]  # NDJSON for half of the cases
    if framing != _FRAMINGS[0]:
        headers = case.headers.copy() if case.headers is not None else {}
        headers["Accept"] = framing
        case.headers = headers


def _ndjson_items(content: bytes, complete: bool) -> list[tuple[str, Any]]:
    text = content.decode("utf-8")
    assert text.endswith("\n") or not complete, "the NDJSON stream does not end with a newline"
    return [("json", line) for line in text.split("\n")[:-1]]


def _sse_items(content: bytes, complete: bool) -> list[tuple[str, Any]]:
    text = content.decode("utf-8")
    assert text.endswith("\n\n") or not complete, "the SSE stream does not end with a blank line"
    items = []
    for block in text.split("\n\n")[:-1]:
        lines = block.split("\n")
        assert all(line.startswith("data: ") for line in lines), f"an SSE event has other fields: {block[:200]!r}"
        assert len(lines) == 1, f"an SSE event spans {len(lines)} data lines"
        items.append(("json", lines[0][len("data: ") :]))
    return items


def _frame_items(content: bytes, complete: bool) -> list[tuple[str, Any]]:
    items, pos = [], 0
    while pos < len(content):
        if pos + 5 > len(content):
            break
        kind, size = content[pos], int.from_bytes(content[pos + 1 : pos + 5], "big")
        if pos + 5 + size > len(content):
            break
        payload = content[pos + 5 : pos + 5 + size]
        pos += 5 + size
        assert kind in (0, 1, 2), f"a frame of kind {kind}"
        items.append(("json", payload.decode("utf-8")) if kind == 0 else ("bytes", kind))
    assert pos == len(content) or not complete, f"{len(content) - pos} bytes after the last whole frame"
    return items


@schemathesis.check
def run_stream_conformance(ctx, response, case):
    """An accepted `POST /v1/runs` streams `RunStreamLine`s: `started`, then output and `heartbeat`
    lines, then `finished`; each valid against the document and about the run in `X-Run-Id`.
    Schemathesis itself validates the SSE events' JSON but has no NDJSON or frames reader."""
    if not (_is_run_start(case) and response.status_code == 200):
        return None
    ctype = (response.headers.get("content-type") or [""])[0].split(";")[0].strip()
    accept = next((v for k, v in (case.headers or {}).items() if k.lower() == "accept"), "")
    want = next((f for f in _FRAMINGS[1:] if f in accept), _FRAMINGS[0])
    assert ctype == want, f"`Accept: {accept}` answered with `{ctype}`, expected `{want}`"
    complete = not response.stream_cut_short and response.content_size <= len(response.content)
    reader = {_FRAMINGS[0]: _ndjson_items, _FRAMINGS[1]: _sse_items, _FRAMINGS[2]: _frame_items}[ctype]
    items = reader(response.content, complete)
    assert items, "the stream is empty"
    definition = case.operation.responses.find_by_status_code(200)
    resolved = definition.get_schema(_FRAMINGS[0])
    validator = definition.get_validator(resolved.media_type, resolved.schema)
    header = response.headers.get("x-run-id") or [""]
    run_id = header[0] if isinstance(header, list) else header
    kinds = []
    for n, (form, item) in enumerate(items, 1):
        if form == "bytes":
            kinds.append("output")
            continue
        try:
            obj = json.loads(item)
        except ValueError as exc:
            raise AssertionError(f"item {n} is not JSON ({exc}): {item[:200]!r}") from None
        errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}" for e in validator.iter_errors(obj)]
        assert not errors, f"item {n} does not match RunStreamLine: {errors[:3]} in {item[:300]!r}"
        kind = obj.get("type")
        assert not (ctype == _FRAMINGS[2] and kind == "output"), f"frame {n}: an `output` line in a JSON frame"
        kinds.append(kind)
        if kind in ("started", "finished"):
            got = obj["run"]["id"]
            assert got == run_id, f"item {n} ({kind}) is about run {got}, X-Run-Id says {run_id!r}"
            # Every run the fuzzing starts must be a sandbox run (see the safety filter).
            assert obj["run"]["mode"] != "local", f"item {n}: run {got} ran on the host (mode `local`)"
        if kind == "finished":
            assert obj["run"]["state"] != "running", f"item {n}: a finished run in state `running`"
    assert kinds[0] == "started", f"the first item is {kinds[0]!r}, not `started`"
    middle = set(kinds[1:-1] if complete else kinds[1:])
    assert middle <= {"output", "heartbeat"}, f"between start and end: {sorted(middle - {'output', 'heartbeat'})}"
    if complete:
        assert len(kinds) > 1 and kinds[-1] == "finished", f"the last item is {kinds[-1]!r}, not `finished`"
    return None


# -- refusals the document cannot express --------------------------------------------------------

# `positive_data_acceptance` (ST202) expects every schema-valid request to be accepted. The 422s
# below refuse schema-valid requests for reasons the API documents in prose but its JSON Schemas do
# not encode. Each entry: operation, error code, and a pattern the error message must match;
# any other refusal of schema-valid data still fails.
_SEMANTIC_422 = [
    # Not expressible in a schema: the state of the machine or of the run.
    ("POST /v1/runs", "CWD_NOT_FOUND", r""),
    ("POST /v1/runs", "INVALID_REQUEST", r"^the working directory .* must be an absolute path$"),
    ("GET /v1/runs/{id}/output", "INVALID_REQUEST", r"is past the end of the kept"),
    ("POST /v1/workspaces", "CWD_NOT_FOUND", r""),
    # What an absolute path is depends on the platform (`/x` here, `C:\\x` on Windows).
    ("POST /v1/workspaces", "INVALID_REQUEST", r": give the folder as an absolute path$"),
    ("POST /v1/workspaces/remove", "INVALID_REQUEST", r": give the folder as an absolute path$"),
    # Not expressible in OpenAPI 3.0 (no propertyNames, no per-position array items).
    ("POST /v1/runs", "INVALID_REQUEST", r"is not a valid environment variable name \(non-empty, no `=` or NUL\)$"),
    ("POST /v1/runs", "INVALID_REQUEST", r"^the program name is empty$"),
    # What argv's elements may be depends on `argv_encoding` (base64 there): no such rule in 3.0.
    ("POST /v1/runs", "INVALID_REQUEST", r"^`argv` element .* is not base64 \("),
    # Could be encoded in the document (`pattern`s); drop an entry once it is.
    ("POST /v1/runs", "INVALID_REQUEST", r"^(arguments|the shell command) cannot contain NUL bytes$"),
    ("POST /v1/runs", "INVALID_REQUEST", r"^the shell command is empty$"),
    ("POST /v1/runs", "INVALID_REQUEST", r"^`client` is at most 100 printable characters$"),
    ("POST /v1/runs", "INVALID_MODE", r"^mode: "),
    ("POST /v1/runs", "INVALID_SETTING", r"^image: "),
    # A client's tier and image go together (`custom` needs a valid image, no other tier takes
    # one), and its name is printable and not blank: rules across fields, or about text.
    ("POST /v1/clients", "INVALID_SETTING", r"^client `"),
    ("POST /v1/clients", "INVALID_REQUEST", r"^a client name is 1 to 100 printable characters$"),
    ("PUT /v1/mode", "INVALID_REQUEST", r"^give `mode` \(`local` or `sandbox`\), `image`, or both$"),  # both null
    ("PUT /v1/mode", "INVALID_MODE", r"^mode: "),
    ("PUT /v1/mode", "INVALID_SETTING", r"^image: "),
    # The network policy's names (any case, `bridge` too) and the allowlist's host-name rules.
    ("POST /v1/sandbox/network", "INVALID_SETTING", r"^policy: .* is not a valid value for sandbox\.network"),
    ("POST /v1/sandbox/network/allow", "INVALID_SETTING", r" cannot be allowed: "),
    ("POST /v1/sandbox/network/disallow", "INVALID_REQUEST", r"^name the host to remove from the allowlist$"),
    # A Dockerfile to build: the state of the machine (is there such a file, in which folder).
    ("POST /v1/sandbox/images/build", "INVALID_REQUEST",
     r"(: give the Dockerfile as an absolute path|: no such file \(|is not a file$|cannot be a build folder: |is the basic sandbox's name|holds more than)"),
    ("POST /v1/sandbox/images/build", "INVALID_SETTING", r"^image: "),
]


def _error_of(response: Any) -> tuple[str, str]:
    try:
        err = json.loads(response.content)["error"]
        return str(err["code"]), str(err["message"])
    except (ValueError, KeyError, TypeError):
        return "", ""


@schemathesis.hook
def filter_failure(context, failure, case, response):
    label = f"{case.method.upper()} {case.path}"
    if getattr(failure, "code", None) == "ST108" and label == "POST /v1/runs":
        # Schemathesis validates the SSE event object ({"data": "...", "event": "message"}) against
        # the `text/event-stream` schema, which the document uses for the JSON in `data` (as for
        # NDJSON). run_stream_conformance validates that JSON against RunStreamLine instead.
        return False
    if getattr(failure, "code", None) != "ST202" or response.status_code != 422:
        return True
    code, message = _error_of(response)
    for op, want, pattern in _SEMANTIC_422:
        if label == op and code == want and re.search(pattern, message, re.S):
            return False
    return True
