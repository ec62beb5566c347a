#!/usr/bin/python3
"""HTTP/2 abuse against the real kilnd on loopback (reliability.md §7 B1 and B6).

Raw frames (Debian's python3-hyperframe / python3-hpack, installed by scripts/bootstrap), so
the client can do what no well-behaved gRPC library would: reset streams in a loop, open more
streams than the server allows, flood PINGs and SETTINGS, send half a header block and go
quiet, never read. After each attack the server must still serve a real gRPC client (kilnctl),
its RSS and thread count must stay bounded, and no request may be left running.

Usage (ctest runs it): http2_abuse_test.py --kilnd BIN --kilnctl BIN --fixtures DIR
Exit status 0 when every case passes; each failure is printed with the case's name.
"""

import argparse
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

from hpack import Decoder, Encoder
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame,
                              PingFrame, RstStreamFrame, SettingsFrame, WindowUpdateFrame)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
REFUSED_STREAM = 0x7
ENHANCE_YOUR_CALM = 0xB
MAX_CONCURRENT_STREAMS = 8  # kilnd is started with this, so the limit is easy to exceed
RSS_GROWTH_LIMIT = 256 << 20  # bytes an attack may add to kilnd's RSS
THREAD_GROWTH_LIMIT = 16


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def generate_request(model, prompt, max_new_tokens):
    """A serialized kiln.v1.GenerateRequest (model=1, text=3, stopping=6 {max_new_tokens=1,
    min_new_tokens=2, ignore_eos=5}) in a gRPC length-prefixed frame."""
    stopping = b"\x08" + varint(max_new_tokens) + b"\x10" + varint(max_new_tokens) + b"\x28\x01"
    msg = (b"\x0a" + varint(len(model)) + model.encode() + b"\x1a" + varint(len(prompt)) +
           prompt.encode() + b"\x32" + varint(len(stopping)) + stopping)
    return b"\x00" + struct.pack(">I", len(msg)) + msg


class Conn:
    """One raw HTTP/2 client connection."""

    def __init__(self, port, settings=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.decoder.max_header_list_size = 1 << 22
        self.buf = b""
        self.next_id = 1
        self.sock.sendall(PREFACE + SettingsFrame(0, settings=settings or {}).serialize())

    def header_list(self, frame):
        """The decoded header list of a server HEADERS frame (the decoder keeps HPACK state,
        so call it for every HEADERS frame, in order)."""
        return dict(self.decoder.decode(bytes(frame.data)))

    def headers(self, path, end_stream=False, stream_id=None):
        sid = stream_id if stream_id is not None else self.next_id
        if stream_id is None:
            self.next_id += 2
        block = self.encoder.encode([
            (":method", "POST"), (":scheme", "http"), (":path", path),
            (":authority", "127.0.0.1"), ("content-type", "application/grpc"), ("te", "trailers"),
        ])
        f = HeadersFrame(sid, block)
        f.flags.add("END_HEADERS")
        if end_stream:
            f.flags.add("END_STREAM")
        self.sock.sendall(f.serialize())
        return sid

    def data(self, sid, payload, end_stream=True):
        f = DataFrame(sid, payload)
        if end_stream:
            f.flags.add("END_STREAM")
        self.sock.sendall(f.serialize())

    def send(self, frame):
        self.sock.sendall(frame.serialize())

    def read_frames(self, deadline_s=5.0, until=None):
        """Frames until `until(frame)` is true, the peer closes, or the deadline passes. ACKs
        the peer's SETTINGS and PINGs are not answered (the client under test decides)."""
        frames = []
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            while len(self.buf) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
                if len(self.buf) < 9 + length:
                    break
                frame.parse_body(memoryview(self.buf[9:9 + length]))
                self.buf = self.buf[9 + length:]
                if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                    ack = SettingsFrame(0)
                    ack.flags.add("ACK")
                    try:
                        self.sock.sendall(ack.serialize())
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                frames.append(frame)
                if until is not None and until(frame):
                    return frames
            self.sock.settimeout(max(0.01, end - time.monotonic()))
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                break
            if not chunk:
                break
            self.buf += chunk
        return frames

    def close(self):
        self.sock.close()


class Kilnd:
    def __init__(self, args, tmp):
        ready = os.path.join(tmp, "ready.json")
        self.log = open(os.path.join(tmp, "kilnd.log"), "w")
        self.proc = subprocess.Popen(
            [args.kilnd, "--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
             "--ready_file=" + ready, "--model_roots=" + os.path.join(args.fixtures, "models"),
             "--preload=gpt2_tiny", f"--max_concurrent_streams={MAX_CONCURRENT_STREAMS}",
             "--stream_stall_timeout_ms=1500", "--max_stream_buffer_events=4", "--drain_timeout_s=5"],
            stdout=self.log, stderr=subprocess.STDOUT)
        end = time.monotonic() + 60
        while not (os.path.exists(ready) and os.path.getsize(ready) > 0):
            if self.proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError("kilnd did not become ready; see " + self.log.name)
            time.sleep(0.05)
        with open(ready) as f:
            info = json.load(f)
        self.port, self.metrics_port = info["grpc_port"], info["metrics_port"]
        self.kilnctl = args.kilnctl
        while subprocess.run([self.kilnctl, f"--addr=127.0.0.1:{self.port}", "health"],
                             capture_output=True, timeout=30).returncode != 0:  # the preload is done
            if self.proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError("kilnd did not turn SERVING; see " + self.log.name)
            time.sleep(0.05)

    def status(self, field):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise RuntimeError(field)

    def rss(self):
        return self.status("VmRSS") * 1024

    def threads(self):
        return self.status("Threads")

    def under_asan(self):
        """True for an AddressSanitizer build: it keeps freed memory in a quarantine (256 MiB by
        default) and maps shadow memory, so RSS growth says nothing about kiln's own use there;
        LeakSanitizer judges leaks at exit instead."""
        with open(f"/proc/{self.proc.pid}/maps") as f:
            return "libasan" in f.read()

    def metric_sum(self, name, *labels):
        """The sum of every sample of `name` whose label set contains each of `labels`."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).read().decode()
        return sum(float(m.group(2)) for m in re.finditer(r"^" + name + r"(\{[^}]*\})? (\S+)$", text, re.M)
                   if all(label in (m.group(1) or "") for label in labels))

    def serves(self):
        """A real gRPC client gets a greedy continuation."""
        r = subprocess.run([self.kilnctl, f"--addr=127.0.0.1:{self.port}", "generate", "gpt2_tiny",
                            "hello", "--max_new_tokens=4", "--temperature=0"],
                           capture_output=True, text=True, timeout=60)
        return r.returncode == 0, r.stderr.strip()

    def idle(self, deadline_s=30.0):
        """Polls until no request is running or waiting (the engine dropped every abandoned one)."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.metric_sum("kiln_requests_running") == 0 and self.metric_sum("kiln_requests_waiting") == 0:
                return True
            time.sleep(0.1)
        return False

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.log.close()


def case_rapid_reset(k):
    """Open a Generate stream and reset it at once, thousands of times on one connection
    (CVE-2023-44487's pattern): each abandoned request must be dropped, memory bounded. Half
    are reset before their request message: the server must count those as cancels, never as
    INVALID_ARGUMENT (no client sent a bad request)."""
    invalid = ('method="Generate"', 'code="INVALID_ARGUMENT"')
    before = k.metric_sum("kiln_rpc_requests_total", *invalid)
    c = Conn(k.port)
    body = generate_request("gpt2_tiny", "the quick brown fox", 64)
    for i in range(3000):
        sid = c.headers("/kiln.v1.Kiln/Generate")
        if i % 2 == 0:
            c.data(sid, body)
        c.send(RstStreamFrame(sid, error_code=0x8))  # CANCEL
        if i % 200 == 0:
            c.read_frames(0.01)
    c.read_frames(0.5)
    c.close()
    k.idle()
    invalid_now = k.metric_sum("kiln_rpc_requests_total", *invalid) - before
    return f"{invalid_now:g} cancelled Generates counted as INVALID_ARGUMENT" if invalid_now else None


def case_too_many_streams(k):
    """More streams than MAX_CONCURRENT_STREAMS on one connection: at most that many are
    served; the excess is refused (RST_STREAM REFUSED_STREAM) or, as gRPC 1.51 does, the
    whole connection is failed ("Failed parsing HTTP/2", UNAVAILABLE) and closed. Nothing
    queues without bound."""
    c = Conn(k.port)
    c.read_frames(2.0, until=lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags)
    body = generate_request("gpt2_tiny", "a long story", 100)
    sids = []
    for _ in range(MAX_CONCURRENT_STREAMS * 5):
        try:
            sid = c.headers("/kiln.v1.Kiln/Generate")
            c.data(sid, body)
        except (BrokenPipeError, ConnectionResetError):
            break
        sids.append(sid)
    frames = c.read_frames(10.0)
    served, refused, failed = set(), set(), set()
    for f in frames:
        if isinstance(f, DataFrame) and f.data:
            served.add(f.stream_id)
        elif isinstance(f, RstStreamFrame) and f.error_code == REFUSED_STREAM:
            refused.add(f.stream_id)
        elif isinstance(f, HeadersFrame):
            status = c.header_list(f).get("grpc-status")
            if status == "14":
                failed.add(f.stream_id)
            elif status is not None:
                served.add(f.stream_id)
    connection_failed = bool(failed) or any(isinstance(f, GoAwayFrame) for f in frames)
    c.close()
    if len(served) > MAX_CONCURRENT_STREAMS:
        return f"{len(served)} streams served on one connection with max_concurrent_streams={MAX_CONCURRENT_STREAMS}"
    if not connection_failed and len(refused) < len(sids) - MAX_CONCURRENT_STREAMS:
        return f"only {len(refused)} of {len(sids)} streams refused and the connection kept open"
    return None


def case_ping_flood(k):
    """PINGs without data, as fast as possible: gRPC's ping policy answers GOAWAY
    ENHANCE_YOUR_CALM ("too_many_pings") and closes the connection."""
    c = Conn(k.port)
    for i in range(2000):
        try:
            c.send(PingFrame(0, opaque_data=struct.pack(">Q", i)))
        except (BrokenPipeError, ConnectionResetError):
            break
    frames = c.read_frames(10.0, until=lambda f: isinstance(f, GoAwayFrame))
    c.close()
    goaway = [f for f in frames if isinstance(f, GoAwayFrame)]
    if not goaway:
        return "no GOAWAY after a ping flood"
    if goaway[0].error_code != ENHANCE_YOUR_CALM:
        return f"GOAWAY error code {goaway[0].error_code}, expected ENHANCE_YOUR_CALM (11)"
    return None


def case_settings_flood(k):
    """Thousands of SETTINGS frames: answered (or the connection dropped), memory bounded."""
    c = Conn(k.port)
    for i in range(20000):
        try:
            c.send(SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 65535 + (i % 7)}))
        except (BrokenPipeError, ConnectionResetError):
            break
        if i % 500 == 0:
            c.read_frames(0.01)
    c.read_frames(1.0)
    c.close()


def case_slowloris(k):
    """Many connections that send half a header block (no END_HEADERS) and go quiet: other
    clients are served meanwhile."""
    conns = []
    for _ in range(64):
        c = Conn(k.port)
        block = c.encoder.encode([(":method", "POST"), (":path", "/kiln.v1.Kiln/Generate")])
        c.send(HeadersFrame(1, block))  # END_HEADERS never comes
        conns.append(c)
    ok, err = k.serves()
    for c in conns:
        c.close()
    return None if ok else "a client was not served while slow connections were open: " + err


def case_never_reads(k):
    """A client that opens Generate streams and never reads (flow control closed, no
    WINDOW_UPDATE): its requests end server-side after the stall timeout and other clients
    are served meanwhile."""
    # A 16-byte flow-control window: the server can send almost nothing, so its writes stay
    # pending and each stream's buffer fills (kilnd runs with --max_stream_buffer_events=4).
    stalled = ('method="Generate"', 'code="RESOURCE_EXHAUSTED"')
    before = k.metric_sum("kiln_rpc_requests_total", *stalled)
    c = Conn(k.port, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 16})
    body = generate_request("gpt2_tiny", "once upon a time", 100)
    for _ in range(4):
        sid = c.headers("/kiln.v1.Kiln/Generate")
        c.data(sid, body)
    ok, err = k.serves()
    if not ok:
        c.close()
        return "a client was not served while another never read: " + err
    idle = k.idle(60.0)  # the stall timeout (1.5 s) ends the non-reader's requests
    end = time.monotonic() + 30  # their RPCs end RESOURCE_EXHAUSTED (stream_stall_timeout_ms)
    while k.metric_sum("kiln_rpc_requests_total", *stalled) < before + 4 and time.monotonic() < end:
        time.sleep(0.1)
    ended = k.metric_sum("kiln_rpc_requests_total", *stalled) - before
    c.close()
    if not idle:
        return "requests of a client that never reads were still running after 60 s"
    return None if ended >= 4 else f"{ended:g} of 4 stalled streams ended RESOURCE_EXHAUSTED"


def case_oversized_metadata(k):
    """B1: one 1 MB header, and 100k small headers (in CONTINUATION frames): gRPC 1.51
    advertises max_metadata_bytes in SETTINGS but does not enforce it, so kilnd refuses such a
    request itself with RESOURCE_EXHAUSTED; parsing 100k headers must not take quadratic time
    (the case's wall time is printed). A message over max_receive_message_bytes is refused by
    gRPC and covered with a real client in limits_test.cc."""
    problems = []
    for headers in ([("x-big", "v" * (1 << 20))], [(f"x-h{i}", "v") for i in range(100000)]):
        c = Conn(k.port)
        block = c.encoder.encode([(":method", "POST"), (":scheme", "http"),
                                  (":path", "/kiln.v1.Kiln/GetServerInfo"), (":authority", "x"),
                                  ("content-type", "application/grpc"), ("te", "trailers")] + headers,
                                 huffman=False)  # python's Huffman coder is quadratic on 1 MB
        chunks = [block[i:i + 16384] for i in range(0, len(block), 16384)]
        try:
            first = HeadersFrame(1, chunks[0])
            if len(chunks) == 1:
                first.flags.add("END_HEADERS")
            c.send(first)
            for j, chunk in enumerate(chunks[1:], 1):
                cont = ContinuationFrame(1, chunk)
                if j == len(chunks) - 1:
                    cont.flags.add("END_HEADERS")
                c.send(cont)
            c.data(1, b"\x00\x00\x00\x00\x00")  # an empty GetServerInfoRequest
        except (BrokenPipeError, ConnectionResetError):
            pass
        frames = c.read_frames(20.0, until=lambda f: isinstance(f, (RstStreamFrame, GoAwayFrame)) or (
            f.stream_id == 1 and "END_STREAM" in getattr(f, "flags", set())))
        statuses = [c.header_list(f).get("grpc-status") for f in frames if isinstance(f, HeadersFrame)]
        reset = any(isinstance(f, (RstStreamFrame, GoAwayFrame)) for f in frames)
        c.close()
        size = sum(len(n) + len(v) for n, v in headers)
        if "0" in statuses:
            problems.append(f"{len(headers)} header(s) of {size} bytes were served despite max_metadata_bytes")
        elif "8" not in statuses and not reset:
            problems.append(f"{len(headers)} header(s) of {size} bytes: statuses {statuses}, no RESOURCE_EXHAUSTED")
    return "; ".join(problems) or None


CASES = [case_rapid_reset, case_too_many_streams, case_ping_flood, case_settings_flood,
         case_slowloris, case_never_reads, case_oversized_metadata]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kilnd", required=True)
    p.add_argument("--kilnctl", required=True)
    p.add_argument("--fixtures", required=True)
    args = p.parse_args()
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        k = Kilnd(args, tmp)
        try:
            ok, err = k.serves()
            if not ok:
                raise RuntimeError("kilnd does not serve before any attack: " + err)
            base_rss, base_threads = k.rss(), k.threads()
            judge_rss = not k.under_asan()
            if not judge_rss:
                print("kilnd is an ASan build: RSS growth is reported, not judged", flush=True)
            for case in CASES:
                name = case.__name__[len("case_"):]
                started = time.monotonic()
                problem = case(k)
                took = time.monotonic() - started
                ok, err = k.serves()
                if not ok:
                    problem = (problem + "; " if problem else "") + "not serving afterwards: " + err
                if not k.idle():
                    problem = (problem + "; " if problem else "") + "requests still running afterwards"
                rss, threads = k.rss(), k.threads()
                if judge_rss and rss - base_rss > RSS_GROWTH_LIMIT:
                    problem = (problem + "; " if problem else "") + f"RSS grew by {(rss - base_rss) >> 20} MiB"
                if threads - base_threads > THREAD_GROWTH_LIMIT:
                    problem = (problem + "; " if problem else "") + f"threads grew from {base_threads} to {threads}"
                print(f"{'FAIL' if problem else 'ok  '} {name} ({took:.1f} s): rss {rss >> 20} MiB, threads {threads}"
                      + (f" — {problem}" if problem else ""), flush=True)
                if problem:
                    failures.append(name)
        finally:
            code = k.stop()
        if code != 0:
            failures.append(f"kilnd exit code {code}")
        if failures:
            with open(os.path.join(tmp, "kilnd.log")) as f:
                sys.stdout.write("--- kilnd log (tail) ---\n" + "".join(f.readlines()[-30:]))
    print("FAILED: " + ", ".join(failures) if failures else "all HTTP/2 abuse cases passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
