#!/usr/bin/env python3
"""A fault-injecting HTTP proxy for the SQS JSON protocol, for masq's chaos tests.

It sits on loopback in front of an SQS server (fauxqs) and forwards every call, except that,
at configurable rates, it:

- answers ReceiveMessage with a 5xx (500 InternalFailure or 503 ServiceUnavailable), or with
  SQS's throttling error (400, RequestThrottled), without forwarding it;
- fails part of a DeleteMessageBatch: forwards only some entries and reports the others in
  "Failed" with SenderFault false and code InternalError, as SQS does when it could not
  delete them, so the client must retry those;
- drops the connection without a response on any action, either before forwarding (the
  server never saw the call) or after (the server acted, the client never hears of it).

Point a client at it with AWS_ENDPOINT_URL=http://127.0.0.1:<port>; queue URLs stay as they
are (the server finds a queue by the name in the URL, not by host).

Control, on the same port (anything that is not POST /):
  GET  /stats   what was forwarded and injected, as JSON
  GET  /config  the current rates
  POST /config  a JSON object with any rates to change, e.g. {"drop_after": 0.05}; returns
                the new configuration. {"reset_stats": true} also zeroes the counters.

Python 3.11 standard library only.
"""

import argparse
import asyncio
import json
import random
import sys
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

# Every rate is a probability per call, between 0 and 1.
RATES = ("receive_5xx", "receive_throttle", "delete_partial", "drop_before", "drop_after")


@dataclass
class Config:
    receive_5xx: float = 0.0
    receive_throttle: float = 0.0
    delete_partial: float = 0.0
    drop_before: float = 0.0
    drop_after: float = 0.0
    # Milliseconds every call waits before it is forwarded: an SQS endpoint that far away.
    delay_ms: float = 0.0
    # Actions the drops apply to; empty means every action.
    drop_actions: list = field(default_factory=list)

    def update(self, changes):
        for key, value in changes.items():
            if key in RATES:
                value = float(value)
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"{key} must be between 0 and 1, got {value}")
                setattr(self, key, value)
            elif key == "delay_ms":
                value = float(value)
                if not 0.0 <= value <= 10_000:
                    raise ValueError(f"delay_ms must be between 0 and 10000, got {value}")
                self.delay_ms = value
            elif key == "drop_actions":
                if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
                    raise ValueError("drop_actions must be a list of action names, e.g. [\"ReceiveMessage\"]")
                self.drop_actions = value
            elif key != "reset_stats":
                raise ValueError(f"unknown setting '{key}'; known: {', '.join(RATES)}, delay_ms, drop_actions, reset_stats")


class Stats:
    def __init__(self):
        self.reset()

    def reset(self):
        self.forwarded = {}  # action -> calls that reached the server
        self.injected = {
            "receive_5xx": 0,
            "receive_throttle": 0,
            "delete_partial_calls": 0,
            "delete_partial_entries": 0,
            "drop_before": 0,
            "drop_after": 0,
        }
        self.upstream_errors = 0

    def as_json(self):
        return {"forwarded": self.forwarded, "injected": self.injected, "upstream_errors": self.upstream_errors}


class Dropped(Exception):
    """Close the client's connection without an answer."""


# --- minimal HTTP/1.1 -------------------------------------------------------------------------

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}


async def read_message(reader, first_line_required=True):
    """Reads a request or response: (start line, [(name, value)], body). None at a clean EOF."""
    start = await reader.readline()
    if not start:
        if first_line_required:
            return None
        raise ConnectionError("connection closed before a response")
    headers = []
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed inside the headers")
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    lower = {n.lower(): v for n, v in headers}
    if "chunked" in lower.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                # Trailers end at an empty line.
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        body = bytes(body)
    else:
        body = await reader.readexactly(int(lower.get("content-length", "0")))
    return start.decode("latin-1").rstrip("\r\n"), headers, body


def header(headers, name):
    name = name.lower()
    return next((v for n, v in headers if n.lower() == name), None)


def encode(start, headers, body):
    lines = [start] + [f"{n}: {v}" for n, v in headers if n.lower() not in HOP_BY_HOP]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def json_response(status, reason, payload, extra_headers=()):
    body = json.dumps(payload).encode()
    headers = [("Content-Type", "application/x-amz-json-1.0"), ("x-amzn-RequestId", "faultproxy"), *extra_headers]
    return encode(f"HTTP/1.1 {status} {reason}", headers, body)


# --- upstream ---------------------------------------------------------------------------------

class Upstream:
    """Keep-alive connections to the SQS server, reused across calls."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.idle = []

    async def call(self, request_bytes):
        """Sends one request and returns (status line, headers, body). A pooled connection the
        server closed while idle fails before any byte comes back; that one is retried on a
        fresh connection (the server never read the request)."""
        while self.idle:
            reader, writer = self.idle.pop()
            if reader.at_eof():
                writer.close()
                continue
            try:
                return await self._exchange(reader, writer, request_bytes)
            except (ConnectionError, asyncio.IncompleteReadError):
                writer.close()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return await self._exchange(reader, writer, request_bytes)

    async def _exchange(self, reader, writer, request_bytes):
        writer.write(request_bytes)
        await writer.drain()
        response = await read_message(reader, first_line_required=False)
        if (header(response[1], "connection") or "").lower() == "close":
            writer.close()
        else:
            self.idle.append((reader, writer))
        return response


# --- the proxy --------------------------------------------------------------------------------

class Proxy:
    def __init__(self, upstream, config, rng):
        self.upstream = upstream
        self.config = config
        self.stats = Stats()
        self.rng = rng

    def chance(self, rate):
        return rate > 0 and self.rng.random() < rate

    async def serve(self, reader, writer):
        try:
            while True:
                request = await read_message(reader)
                if request is None:
                    break
                start, headers, body = request
                method, target = start.split(" ")[:2]
                if method == "POST" and urlsplit(target).path == "/":
                    response = await self.sqs(start, headers, body)
                else:
                    response = self.control(method, urlsplit(target).path, body)
                writer.write(response)
                await writer.drain()
                if (header(headers, "connection") or "").lower() == "close":
                    break
        except Dropped:
            pass
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            # A drop is a close with nothing written: the client sees its connection reset
            # or closed mid-call, exactly as when a load balancer or server dies.
            writer.close()

    async def sqs(self, start, headers, body):
        action = (header(headers, "x-amz-target") or "").rpartition(".")[2] or "unknown"
        c = self.config
        if c.delay_ms > 0:
            await asyncio.sleep(c.delay_ms / 1000)
        droppable = not c.drop_actions or action in c.drop_actions
        if droppable and self.chance(c.drop_before):
            self.stats.injected["drop_before"] += 1
            raise Dropped
        if action == "ReceiveMessage":
            if self.chance(c.receive_5xx):
                self.stats.injected["receive_5xx"] += 1
                if self.rng.random() < 0.5:
                    return json_response(500, "Internal Server Error",
                                         {"__type": "InternalFailure", "message": "injected by faultproxy"})
                return json_response(503, "Service Unavailable",
                                     {"__type": "ServiceUnavailable", "message": "injected by faultproxy"})
            if self.chance(c.receive_throttle):
                self.stats.injected["receive_throttle"] += 1
                # What SQS sends: the JSON error type, and the query-compatible code header the
                # SDK prefers when present. Both name RequestThrottled, a throttling error to
                # aws-sdk-rust's retry classifier.
                return json_response(400, "Bad Request",
                                     {"__type": "com.amazonaws.sqs#RequestThrottled",
                                      "message": "Request is throttled (injected by faultproxy)."},
                                     [("x-amzn-query-error", "RequestThrottled;Sender")])
        injected_failures = []
        if action == "DeleteMessageBatch" and self.chance(c.delete_partial):
            body, injected_failures = self.split_delete(body)
        if body is None:
            response = None  # every entry failed: the server is not called at all
        else:
            try:
                response = await self.upstream.call(encode(start, headers, body))
            except OSError:
                self.stats.upstream_errors += 1
                return json_response(502, "Bad Gateway", {"__type": "InternalFailure", "message": "upstream unreachable"})
            self.stats.forwarded[action] = self.stats.forwarded.get(action, 0) + 1
        if droppable and response is not None and self.chance(c.drop_after):
            self.stats.injected["drop_after"] += 1
            raise Dropped
        if injected_failures:
            return self.merge_delete(response, injected_failures)
        status_line, resp_headers, resp_body = response
        return encode(status_line, resp_headers, resp_body)

    def split_delete(self, body):
        """Picks entries to fail (each with even odds, at least one). Returns the body to
        forward (None when nothing is left) and the Failed entries to report."""
        request = json.loads(body)
        entries = request.get("Entries") or []
        if not entries:
            return body, []
        failing = [e for e in entries if self.rng.random() < 0.5] or [self.rng.choice(entries)]
        failing_ids = {e["Id"] for e in failing}
        self.stats.injected["delete_partial_calls"] += 1
        self.stats.injected["delete_partial_entries"] += len(failing)
        failed = [{"Id": e["Id"], "SenderFault": False, "Code": "InternalError",
                   "Message": "injected by faultproxy"} for e in failing]
        request["Entries"] = [e for e in entries if e["Id"] not in failing_ids]
        return (json.dumps(request).encode() if request["Entries"] else None), failed

    def merge_delete(self, response, injected_failures):
        if response is None:
            return json_response(200, "OK", {"Successful": [], "Failed": injected_failures})
        status_line, headers, body = response
        if not status_line.split(" ")[1].startswith("2"):
            return encode(status_line, headers, body)  # the server refused the whole call
        result = json.loads(body)
        result["Failed"] = (result.get("Failed") or []) + injected_failures
        result.setdefault("Successful", [])
        return encode(status_line, headers, json.dumps(result).encode())

    def control(self, method, path, body):
        try:
            if method == "GET" and path == "/stats":
                return json_response(200, "OK", self.stats.as_json())
            if method == "GET" and path == "/config":
                return json_response(200, "OK", asdict(self.config))
            if method == "POST" and path == "/config":
                changes = json.loads(body or b"{}")
                self.config.update(changes)
                if changes.get("reset_stats"):
                    self.stats.reset()
                return json_response(200, "OK", asdict(self.config))
        except ValueError as e:
            return json_response(400, "Bad Request", {"error": str(e)})
        return json_response(404, "Not Found", {"error": f"no {method} {path}; try GET /stats, GET or POST /config"})


async def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", default="127.0.0.1:0", help="host:port to listen on (port 0: any free port)")
    p.add_argument("--upstream", default="http://127.0.0.1:4566", help="the SQS server to forward to")
    p.add_argument("--seed", type=int, default=None, help="seed for the fault dice, to repeat a run")
    for rate in RATES:
        p.add_argument(f"--{rate.replace('_', '-')}", type=float, default=0.0, metavar="P",
                       help=f"probability per call of {rate.replace('_', ' ')}")
    p.add_argument("--drop-actions", default="", help="comma-separated actions drops apply to (default: all)")
    args = p.parse_args(argv)

    config = Config()
    config.update({r: getattr(args, r) for r in RATES})
    config.drop_actions = [a for a in args.drop_actions.split(",") if a]
    up = urlsplit(args.upstream)
    proxy = Proxy(Upstream(up.hostname, up.port or 80), config, random.Random(args.seed))
    host, _, port = args.listen.rpartition(":")
    server = await asyncio.start_server(proxy.serve, host or "127.0.0.1", int(port))
    bound = server.sockets[0].getsockname()
    # The first line tells a test which port was chosen.
    print(f"faultproxy listening on {bound[0]}:{bound[1]}, forwarding to {args.upstream}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
