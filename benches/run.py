#!/usr/bin/env python3
"""liter-llm reproducible benchmark: the proxy against the direct upstream, on this machine.

    python3 benches/run.py [--quick] [--out bench-results/] [--no-build] [--pin]

Builds the release binaries, starts three mock upstreams (one unpaced for request/response
load, one paced at 32 chunks x 50 ms for streaming, one with short streams for time to
first token) and the proxy in front of them, all on 127.0.0.1, then measures the same things directly against the mock and through the proxy,
in alternating rounds. Prints a table and writes bench-results/<timestamp>.json.

The method and the meaning of every figure are in docs/benchmarks.md.
Python 3 standard library only; the load generators are `wrk` (installed with apt-get
when missing) and this repository's `stream-bench`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHES = ROOT / "benches"
HOST = "127.0.0.1"  # the only address this script ever targets

MASTER_KEY = "sk-bench"
UPSTREAM_KEY = "sk-upstream"
FULL_STACK_KEYS = 1000
FULL_STACK_KEY = "sk-vk-0500"  # one of the 1,000, from the middle
MODEL = "gpt-4o"  # routed to the unpaced mock
STREAM_MODEL = "gpt-4o-stream"  # routed to the paced mock
STREAM_CHUNKS = 32
STREAM_PACING_MS = 50
# Time to first token is measured on short streams (the role chunk at once, one content
# chunk 50 ms later), so that a round gives hundreds of samples and its p99 is not
# simply its slowest stream.
TTFT_MODEL = "gpt-4o-ttft"  # routed to the short-stream mock
TTFT_CHUNKS = 1
STALL_FACTOR = 10
NOFILE_TARGET = 65536
NOISY_FOREIGN_PCT = 10  # above this share of the CPUs used by others, flag the run as noisy

PROFILES = {
    "full": {
        "ceiling_secs": 5,
        "warmup_secs": 1,
        "c1_rounds": 5,
        "c1_secs": 5,
        "tp_rounds": 3,
        "tp_secs": 5,
        "tp_concurrency": [64, 256],
        "stream_rounds": 3,
        "stream_slots": 16,
        "stream_repeat": 4,
        "ttft_rounds": 3,
        "ttft_repeat": 24,
        "capacity_steps": [256, 512, 1024, 2048],
    },
    "quick": {
        "ceiling_secs": 3,
        "warmup_secs": 1,
        "c1_rounds": 2,
        "c1_secs": 2,
        "tp_rounds": 1,
        "tp_secs": 3,
        "tp_concurrency": [64, 256],
        "stream_rounds": 1,
        "stream_slots": 16,
        "stream_repeat": 3,
        "ttft_rounds": 1,
        "ttft_repeat": 8,
        "capacity_steps": [256, 512, 1024, 2048],
    },
}

# Layers a "full stack" run should enable, with the config fragment that turns each on.
# Each is probed with `liter-llm config check`; a refused one is reported as missing.
LAYER_PROBES = {
    "rate_limit": {"section": "[rate_limit]\nrpm = 1000000000\ntpm = 1000000000000\n"},
    "budget": {"section": "[budget]\nglobal_limit = 1000000000.0\n"},
    "cost_tracking": {"general": "enable_cost_tracking = true\n"},
    "tracing": {"general": "enable_tracing = true\n"},
}

TARGETS = {
    "added_p50_c1_us": 40,
    "added_p99_c1_us": 100,
    "rps_ratio_c64": 0.30,
    "added_ttft_p99_us": 250,
    "streams_held": 2048,
    "rss_at_2048_streams_mb": 128,
    "idle_rss_mb": 15,
    "full_over_bare": 1.3,
    "mock_ceiling_rps": 80000,
}


# Never route 127.0.0.1 through an HTTP proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class BenchError(Exception):
    """A failure that ends the run with a clear message."""


def log(msg: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes


class Procs:
    """Every long-lived child, stopped on exit whatever happens."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], log_path: Path, env: dict | None = None) -> subprocess.Popen:
        fh = open(log_path, "ab")
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
                start_new_session=True,  # Ctrl-C reaches us, not them; we stop them
            )
        finally:
            fh.close()
        self.children.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 10.0) -> None:
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            except ProcessLookupError:
                pass
        self.children = [(n, p) for (n, p) in self.children if p is not proc]

    def stop_all(self) -> None:
        for _, proc in list(reversed(self.children)):
            try:
                self.stop(proc, timeout=5)
            except Exception:  # noqa: BLE001 - best effort on the way out
                try:
                    proc.kill()
                except Exception:  # noqa: BLE001
                    pass


def run_capture(argv: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs a short-lived tool; subprocess.run kills it if we are interrupted."""
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{argv[0]} did not finish within {timeout:.0f} s: {' '.join(argv)}") from exc


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def wait_for_line(path: Path, needle: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{path.stem} exited with {proc.returncode}; log:\n{tail(path)}")
        if needle in path.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise BenchError(f"{path.stem} did not print {needle!r} within {timeout} s; log:\n{tail(path)}")


def wait_ready(url: str, proc: subprocess.Popen, log_path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"the proxy exited with {proc.returncode}; log:\n{tail(log_path)}")
        try:
            with OPENER.open(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise BenchError(f"{url} not ready within {timeout} s; log:\n{tail(log_path)}")


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------- /proc readers

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_status_kb(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as fh:
        stat = fh.read()
    # The command name is in parentheses and may contain spaces; fields resume after ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLK_TCK


def machine_busy_pct(secs: float = 1.0) -> float | None:
    """Share of all CPU time that was busy over `secs`, from /proc/stat (noise indicator)."""

    def snap() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            vals = [int(v) for v in fh.readline().split()[1:]]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
        return sum(vals), idle

    try:
        t0, i0 = snap()
        time.sleep(secs)
        t1, i1 = snap()
    except (OSError, ValueError, IndexError):
        return None
    return 100.0 * (1 - (i1 - i0) / (t1 - t0)) if t1 > t0 else None


def tcp_listen_counters() -> dict:
    """System-wide TcpExt ListenOverflows/ListenDrops from /proc/net/netstat: a full accept
    queue shows up here (the client's connect succeeds, its request waits for a retransmit)."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return {}
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], (int(v) for v in values.split()[1:])))
            return {k: table.get(k, 0) for k in ("ListenOverflows", "ListenDrops")}
    return {}


def counters_delta(before: dict, after: dict) -> dict:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after}


class ForeignCpu:
    """CPU used on this machine by processes this run did not start, as a share of all
    CPUs: /proc/stat busy time minus our own (self + waited children + live mocks)."""

    def __init__(self) -> None:
        self.live_pids: list[int] = []
        self.start = self._snap()

    def _snap(self) -> tuple[float, float, float]:
        with open("/proc/stat") as fh:
            vals = [int(v) for v in fh.readline().split()[1:9]]
        total = sum(vals) / CLK_TCK
        busy = total - (vals[3] + vals[4]) / CLK_TCK
        own = 0.0
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            ru = resource.getrusage(who)
            own += ru.ru_utime + ru.ru_stime
        for pid in self.live_pids:
            try:
                own += proc_cpu_seconds(pid)
            except OSError:
                pass
        return total, busy, own

    def pct(self) -> float | None:
        t0, b0, o0 = self.start
        t1, b1, o1 = self._snap()
        if t1 <= t0:
            return None
        return max(0.0, 100.0 * ((b1 - b0) - (o1 - o0)) / (t1 - t0))


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""


class RssSampler:
    """Samples VmRSS of one pid every `interval` seconds on a thread."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            kb = proc_status_kb(self.pid, "VmRSS")
            if kb is not None:
                self.samples.append(kb)
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------- load generators


class Tools:
    def __init__(self, bin_dir: Path, pin: bool) -> None:
        self.liter_llm = bin_dir / "liter-llm"
        self.mock = bin_dir / "mock-upstream"
        self.stream_bench = bin_dir / "stream-bench"
        self.wrk = shutil.which("wrk") or "wrk"
        self.pin = pin

    def pinned(self, role: str, argv: list[str]) -> list[str]:
        """With --pin: the proxy on CPU 1, everything else (mock, load generators) on CPU 0."""
        if not self.pin:
            return argv
        cpu = "1" if role == "proxy" else "0"
        return ["taskset", "-c", cpu, *argv]


def wrk(tools: Tools, url: str, key: str, model: str, threads: int, conns: int, secs: int) -> dict:
    env = dict(os.environ, BENCH_KEY=key, BENCH_MODEL=model)
    argv = tools.pinned(
        "load",
        [
            tools.wrk,
            f"-t{threads}",
            f"-c{conns}",
            f"-d{secs}s",
            "--latency",
            "--timeout",
            "5s",
            "-s",
            str(BENCHES / "post.lua"),
            url,
        ],
    )
    done = run_capture(argv, timeout=secs + 30, env=env)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            result = json.loads(line[len("BENCH_JSON ") :])
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            result["error_total"] = sum(result["errors"].values())
            return result
    raise BenchError(f"wrk printed no result (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")


def stream_bench(
    tools: Tools, base_url: str, key: str, model: str, streams: int, repeat: int, ramp_ms: int, timeout: int = 60,
    chunks: int = STREAM_CHUNKS,
) -> dict:
    argv = tools.pinned(
        "load",
        [
            str(tools.stream_bench),
            "--url",
            base_url,
            "--key",
            key,
            "--model",
            model,
            "--streams",
            str(streams),
            "--repeat",
            str(repeat),
            "--expect-chunks",
            str(chunks),
            "--pacing-ms",
            str(STREAM_PACING_MS),
            "--stall-factor",
            str(STALL_FACTOR),
            "--ramp-ms",
            str(ramp_ms),
            "--timeout-secs",
            str(timeout),
            "--json",
        ],
    )
    done = run_capture(argv, timeout=timeout * repeat + 60)
    if done.returncode != 0:
        raise BenchError(f"stream-bench failed (exit {done.returncode}): {done.stderr.strip()}")
    return json.loads(done.stdout)


# --------------------------------------------------------------------------- metrics

BUCKET_RE = re.compile(r'^(\w+)_bucket\{[^}]*le="([^"]+)"\}\s+(\S+)$')
SUM_COUNT_RE = re.compile(r"^(\w+)_(sum|count)(?:\{[^}]*\})?\s+(\S+)$")


def scrape(url: str) -> dict:
    """{metric: {"buckets": [(le, cumulative)], "sum": s, "count": n}} for every histogram."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {MASTER_KEY}"})
    with OPENER.open(req, timeout=5) as resp:
        text = resp.read().decode()
    out: dict = {}
    for line in text.splitlines():
        m = BUCKET_RE.match(line)
        if m:
            le = float("inf") if m.group(2) == "+Inf" else float(m.group(2))
            out.setdefault(m.group(1), {"buckets": [], "sum": 0.0, "count": 0})["buckets"].append(
                (le, float(m.group(3)))
            )
            continue
        m = SUM_COUNT_RE.match(line)
        if m and m.group(1) in out:
            out[m.group(1)][m.group(2)] = float(m.group(3))
    return out


def histogram_delta(before: dict, after: dict, name: str) -> dict | None:
    if name not in after:
        return None
    b = before.get(name, {"buckets": [], "sum": 0.0, "count": 0})
    prev = dict(b["buckets"])
    buckets = [(le, c - prev.get(le, 0.0)) for le, c in after[name]["buckets"]]
    count = after[name]["count"] - b["count"]
    total = after[name]["sum"] - b["sum"]
    return {
        "count": int(count),
        "mean_us": (total / count * 1e6) if count else None,
        "p50_us": bucket_quantile(buckets, 0.50),
        "p99_us": bucket_quantile(buckets, 0.99),
        "buckets_us": [[("+Inf" if le == float("inf") else round(le * 1e6, 1)), int(c)] for le, c in buckets],
    }


def bucket_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus histogram_quantile: linear interpolation inside the bucket, in µs."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_le, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return lower_le * 1e6  # beyond the last finite bound: report that bound
            span = count - lower_count
            frac = (rank - lower_count) / span if span > 0 else 1.0
            return (lower_le + (le - lower_le) * frac) * 1e6
        lower_le, lower_count = le, count
    return None


# --------------------------------------------------------------------------- config


def proxy_config(ports: dict, full_stack: bool, layer_fragments: list[dict]) -> str:
    general_extra = "".join(f.get("general", "") for f in layer_fragments) if full_stack else ""
    sections_extra = "".join(f.get("section", "") for f in layer_fragments) if full_stack else ""
    lines = [
        "# Generated by benches/run.py",
        "[general]",
        f'master_key = "{MASTER_KEY}"',
        "max_retries = 0",
        general_extra.rstrip("\n"),
        "",
        "[server]",
        f'host = "{HOST}"',
        f"port = {ports['proxy']}",
        f"overhead_header = {'true' if full_stack else 'false'}",
        "",
        "[[models]]",
        f'name = "{MODEL}"',
        'provider_model = "openai/gpt-4o"',
        f'base_url = "http://{HOST}:{ports["mock"]}/v1"',
        f'api_key = "{UPSTREAM_KEY}"',
        "",
        "[[models]]",
        f'name = "{STREAM_MODEL}"',
        'provider_model = "openai/gpt-4o"',
        f'base_url = "http://{HOST}:{ports["paced"]}/v1"',
        f'api_key = "{UPSTREAM_KEY}"',
        "",
        "[[models]]",
        f'name = "{TTFT_MODEL}"',
        'provider_model = "openai/gpt-4o"',
        f'base_url = "http://{HOST}:{ports["short"]}/v1"',
        f'api_key = "{UPSTREAM_KEY}"',
        "",
        sections_extra,
    ]
    if full_stack:
        for i in range(1, FULL_STACK_KEYS + 1):
            lines += [
                "[[keys]]",
                f'key = "sk-vk-{i:04d}"',
                f'models = ["{MODEL}", "{STREAM_MODEL}", "{TTFT_MODEL}"]',
                "",
            ]
    return "\n".join(lines) + "\n"


def probe_layers(tools: Tools, ports: dict, workdir: Path) -> tuple[list[str], list[dict], dict]:
    """Which full-stack layers this build accepts. Returns (included, fragments, missing)."""
    included, fragments, missing = [], [], {}
    for name, fragment in LAYER_PROBES.items():
        path = workdir / f"probe-{name}.toml"
        path.write_text(proxy_config(ports, True, [fragment]))
        done = run_capture([str(tools.liter_llm), "config", "check", "--config", str(path)], timeout=30, env=child_env())
        if done.returncode == 0:
            included.append(name)
            fragments.append(fragment)
        else:
            reason = (done.stderr.strip() or done.stdout.strip()).splitlines()
            missing[name] = reason[-1] if reason else f"refused (exit {done.returncode})"
    return included, fragments, missing


def child_env() -> dict:
    env = dict(os.environ)
    # Settings that would silently change what is measured.
    for var in ("LITER_LLM_MASTER_KEY", "RUST_LOG", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        env.pop(var, None)
    env["NO_PROXY"] = env["no_proxy"] = "*"
    return env


# --------------------------------------------------------------------------- phases


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def sanity(url: str, key: str, model: str) -> dict:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = urllib.request.Request(
        url,
        data=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with OPENER.open(req, timeout=10) as resp:
            payload = json.loads(resp.read())
            return {"status": resp.status, "headers": dict(resp.headers), "body": payload}
    except urllib.error.HTTPError as exc:
        raise BenchError(f"sanity request to {url} failed: HTTP {exc.code}: {exc.read()[:300]!r}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise BenchError(f"sanity request to {url} failed: {exc}") from exc


def measure_ceiling(tools: Tools, ports: dict, prof: dict) -> dict:
    url = f"http://{HOST}:{ports['mock']}/v1/chat/completions"
    wrk(tools, url, UPSTREAM_KEY, MODEL, 2, 64, prof["warmup_secs"])
    res = wrk(tools, url, UPSTREAM_KEY, MODEL, 2, 64, prof["ceiling_secs"])
    return {
        "concurrency": 64,
        "rps": res["rps"],
        "meets_80k": res["rps"] >= TARGETS["mock_ceiling_rps"],
        "wrk": res,
    }


def run_config(
    name: str, full_stack: bool, tools: Tools, ports: dict, prof: dict, procs: Procs,
    workdir: Path, logdir: Path, fragments: list[dict], ceiling: float, paced_pid: int,
) -> dict:
    problems: list[str] = []
    cfg_path = workdir / f"proxy-{name}.toml"
    cfg_path.write_text(proxy_config(ports, full_stack, fragments))
    key = FULL_STACK_KEY if full_stack else MASTER_KEY
    proxy_log = logdir / f"proxy-{name}.log"
    proxy = procs.start(
        "proxy",
        tools.pinned("proxy", [str(tools.liter_llm), "api", "--config", str(cfg_path)]),
        proxy_log,
        env=child_env(),
    )
    pid = proxy.pid
    proxy_base = f"http://{HOST}:{ports['proxy']}"
    direct_base = f"http://{HOST}:{ports['mock']}"
    paced_base = f"http://{HOST}:{ports['paced']}"
    short_base = f"http://{HOST}:{ports['short']}"
    wait_ready(f"{proxy_base}/health/readiness", proxy, proxy_log)
    time.sleep(1.0)
    out: dict = {
        "config": {
            "virtual_keys": FULL_STACK_KEYS if full_stack else 0,
            "key_used": "virtual key sk-vk-0500" if full_stack else "master key",
            "overhead_header": full_stack,
            "max_retries": 0,
            "file": cfg_path.name,
        },
        "pid": pid,
    }
    rss = {"idle_kb": proc_status_kb(pid, "VmRSS")}
    out["loadavg_at_start"] = loadavg()
    log(f"[{name}] proxy pid {pid} ready, idle RSS {rss['idle_kb']} kB")

    # Sanity: both paths answer, and the overhead header is there exactly when configured.
    sanity(f"{direct_base}/v1/chat/completions", UPSTREAM_KEY, MODEL)
    answer = sanity(f"{proxy_base}/v1/chat/completions", key, MODEL)
    header = {k.lower(): v for k, v in answer["headers"].items()}.get("x-liter-llm-overhead-us")
    out["overhead_header_seen"] = header
    if full_stack and header is None:
        problems.append("overhead_header = true but x-liter-llm-overhead-us was missing from a proxied response")
    if not full_stack and header is not None:
        problems.append("overhead_header = false but x-liter-llm-overhead-us was present")

    d_url = f"{direct_base}/v1/chat/completions"
    p_url = f"{proxy_base}/v1/chat/completions"

    def check_wrk(label: str, res: dict) -> None:
        if res["error_total"]:
            problems.append(f"{label}: wrk errors {res['errors']} over {res['requests']} requests")

    # Warm-up: fills the proxy's upstream pool and faults in its code and allocator.
    wrk(tools, d_url, UPSTREAM_KEY, MODEL, 2, 64, prof["warmup_secs"])
    check_wrk("warm-up proxy c=64", wrk(tools, p_url, key, MODEL, 2, 64, prof["warmup_secs"]))

    # --- latency at concurrency 1, alternating rounds -------------------------------
    log(f"[{name}] latency c=1: {prof['c1_rounds']} rounds x {prof['c1_secs']} s per side")
    before = scrape(f"{proxy_base}/metrics")
    rounds = []
    for i in range(prof["c1_rounds"]):
        d = wrk(tools, d_url, UPSTREAM_KEY, MODEL, 1, 1, prof["c1_secs"])
        p = wrk(tools, p_url, key, MODEL, 1, 1, prof["c1_secs"])
        check_wrk(f"c=1 round {i + 1} direct", d)
        check_wrk(f"c=1 round {i + 1} proxy", p)
        rounds.append({"direct": d, "proxy": p})
    after = scrape(f"{proxy_base}/metrics")
    pcts = ["p50_us", "p99_us", "p999_us"]
    out["latency_c1"] = {
        "rounds": rounds,
        "direct_median_us": {k: median([r["direct"][k] for r in rounds]) for k in pcts},
        "proxy_median_us": {k: median([r["proxy"][k] for r in rounds]) for k in pcts},
        "added_us": {k: median([r["proxy"][k] - r["direct"][k] for r in rounds]) for k in pcts},
        "direct_rps_median": median([r["direct"]["rps"] for r in rounds]),
        "proxy_rps_median": median([r["proxy"]["rps"] for r in rounds]),
    }
    out["in_process_overhead_c1"] = histogram_delta(before, after, "liter_llm_overhead_seconds")
    out["in_process_upstream_c1"] = histogram_delta(before, after, "liter_llm_upstream_seconds")

    # --- throughput, alternating rounds; RSS and CPU sampled over the proxy's c=64 rounds
    out["throughput"] = {}
    for conc in prof["tp_concurrency"]:
        log(f"[{name}] throughput c={conc}: {prof['tp_rounds']} rounds x {prof['tp_secs']} s per side")
        d_runs, p_runs, cpu_s, reqs, samples = [], [], 0.0, 0, []
        for i in range(prof["tp_rounds"]):
            d = wrk(tools, d_url, UPSTREAM_KEY, MODEL, 2, conc, prof["tp_secs"])
            cpu0 = proc_cpu_seconds(pid)
            with RssSampler(pid) as sampler:
                p = wrk(tools, p_url, key, MODEL, 2, conc, prof["tp_secs"])
            cpu_s += proc_cpu_seconds(pid) - cpu0
            reqs += p["requests"]
            samples += sampler.samples
            check_wrk(f"c={conc} round {i + 1} direct", d)
            check_wrk(f"c={conc} round {i + 1} proxy", p)
            d_runs.append(d)
            p_runs.append(p)
        d_med = median([r["rps"] for r in d_runs])
        p_med = median([r["rps"] for r in p_runs])
        out["throughput"][str(conc)] = {
            "direct_rps": [r["rps"] for r in d_runs],
            "proxy_rps": [r["rps"] for r in p_runs],
            "direct_rps_median": d_med,
            "proxy_rps_median": p_med,
            "ratio": (p_med / d_med) if d_med else None,
            "proxy_p99_us_median": median([r["p99_us"] for r in p_runs]),
            "direct_p99_us_median": median([r["p99_us"] for r in d_runs]),
            "mock_bound": bool(ceiling and p_med >= 0.9 * ceiling),
            "proxy_cpu_seconds": cpu_s,
            "proxy_requests": reqs,
            "proxy_cpu_s_per_10k": (cpu_s / reqs * 10_000) if reqs else None,
        }
        if conc == 64:
            rss["load_c64_max_kb"] = max(samples) if samples else None
            rss["load_c64_mean_kb"] = int(statistics.mean(samples)) if samples else None
            out["cpu_c64"] = {
                "cpu_seconds": cpu_s,
                "requests": reqs,
                "cpu_s_per_10k": (cpu_s / reqs * 10_000) if reqs else None,
                "cores_busy": cpu_s / (prof["tp_rounds"] * prof["tp_secs"]),
            }

    # --- streaming: TTFT and gaps at modest concurrency, alternating rounds ------------
    slots, repeat = prof["stream_slots"], prof["stream_repeat"]
    log(f"[{name}] streaming TTFT: {prof['stream_rounds']} rounds x {slots} streams x {repeat} per side")
    stream_bench(tools, proxy_base, key, STREAM_MODEL, slots, 1, STREAM_PACING_MS)  # warm the pool

    def alternate(what: str, rounds: int, direct_base: str, proxy_model: str, repeat_: int, chunks: int) -> list:
        """Stream rounds alternating direct and proxied, with any failure noted."""
        out_rounds = []
        for i in range(rounds):
            d = stream_bench(tools, direct_base, UPSTREAM_KEY, MODEL, slots, repeat_, STREAM_PACING_MS, chunks=chunks)
            p = stream_bench(tools, proxy_base, key, proxy_model, slots, repeat_, STREAM_PACING_MS, chunks=chunks)
            for label, r in (("direct", d), ("proxy", p)):
                if r["failed"] or r["lost"] or r["stalled"]:
                    problems.append(
                        f"{what} round {i + 1} {label}: failed={r['failed']} lost={r['lost']} "
                        f"stalled={r['stalled']} errors={r['errors']} e.g. {r['error_samples'][:2]}"
                    )
            out_rounds.append({"direct": d, "proxy": p})
        return out_rounds

    s_rounds = alternate("streaming", prof["stream_rounds"], paced_base, STREAM_MODEL, repeat, STREAM_CHUNKS)

    def side(key_: str, field: str, stat: str) -> float | None:
        return median([r[key_][field][stat] for r in s_rounds])

    # --- time to first token: short streams, many samples, alternating rounds ---------
    t_repeat = prof["ttft_repeat"]
    log(f"[{name}] time to first token: {prof['ttft_rounds']} rounds x {slots} streams x {t_repeat} per side")
    stream_bench(tools, proxy_base, key, TTFT_MODEL, slots, 1, STREAM_PACING_MS, chunks=TTFT_CHUNKS)
    t_rounds = alternate("TTFT", prof["ttft_rounds"], short_base, TTFT_MODEL, t_repeat, TTFT_CHUNKS)

    def ttft(key_: str, stat: str) -> float | None:
        return median([r[key_]["ttft_us"][stat] for r in t_rounds])

    out["streaming"] = {
        "streams": slots,
        "repeat": repeat,
        "chunks": STREAM_CHUNKS,
        "pacing_ms": STREAM_PACING_MS,
        "rounds": s_rounds,
        "ttft_repeat": t_repeat,
        "ttft_chunks": TTFT_CHUNKS,
        "ttft_samples_per_round": slots * t_repeat,
        "ttft_rounds": t_rounds,
        "direct": {
            "ttft_p50_us": ttft("direct", "p50"),
            "ttft_p99_us": ttft("direct", "p99"),
            "ttft_long_streams_p50_us": side("direct", "ttft_us", "p50"),
            "ttft_long_streams_p99_us": side("direct", "ttft_us", "p99"),
            "gap_p50_us": side("direct", "gap_us", "p50"),
            "gap_p99_us": side("direct", "gap_us", "p99"),
            "gap_max_us": side("direct", "gap_us", "max"),
        },
        "proxy": {
            "ttft_p50_us": ttft("proxy", "p50"),
            "ttft_p99_us": ttft("proxy", "p99"),
            "ttft_long_streams_p50_us": side("proxy", "ttft_us", "p50"),
            "ttft_long_streams_p99_us": side("proxy", "ttft_us", "p99"),
            "gap_p50_us": side("proxy", "gap_us", "p50"),
            "gap_p99_us": side("proxy", "gap_us", "p99"),
            "gap_max_us": side("proxy", "gap_us", "max"),
        },
        "added_ttft_p50_us": median([r["proxy"]["ttft_us"]["p50"] - r["direct"]["ttft_us"]["p50"] for r in t_rounds]),
        "added_ttft_p99_us": median([r["proxy"]["ttft_us"]["p99"] - r["direct"]["ttft_us"]["p99"] for r in t_rounds]),
    }

    # --- streaming capacity: most concurrent paced streams held cleanly ----------------
    steps = []
    held = 0
    limited_by = None
    for n in prof["capacity_steps"]:
        ramp = max(STREAM_PACING_MS, n // 2)  # 2 new streams per ms; all overlap (1.6 s each)
        log(f"[{name}] capacity: {n} concurrent streams through the proxy (ramp {ramp} ms)")
        cpu0, mock_cpu0, tcp0 = proc_cpu_seconds(pid), proc_cpu_seconds(paced_pid), tcp_listen_counters()
        with RssSampler(pid, 0.05) as sampler, RssSampler(paced_pid, 0.05) as mock_sampler:
            p = stream_bench(tools, proxy_base, key, STREAM_MODEL, n, 1, ramp, timeout=30)
        cpu_s = proc_cpu_seconds(pid) - cpu0
        mock_cpu_s = proc_cpu_seconds(paced_pid) - mock_cpu0
        events = p["ttft_us"]["count"] + p["gap_us"]["count"]
        ok = p["failed"] == 0 and p["lost"] == 0 and p["stalled"] == 0 and p["peak_concurrent"] == n
        step = {
            "streams": n,
            "ramp_ms": ramp,
            "ok": ok,
            "proxy": p,
            "proxy_rss_max_kb": max(sampler.samples) if sampler.samples else None,
            "paced_mock_rss_max_kb": max(mock_sampler.samples) if mock_sampler.samples else None,
            "proxy_fds_after": proc_fds(pid),
            "proxy_cpu_seconds": cpu_s,
            "proxy_cpu_us_per_event": (cpu_s / events * 1e6) if events else None,
            "paced_mock_cpu_us_per_event": (mock_cpu_s / events * 1e6) if events else None,
            "tcp_listen_overflows": counters_delta(tcp0, tcp_listen_counters()),
        }
        steps.append(step)
        if ok:
            held = n
            continue
        # Attribute the failure: can the load generator and mock hold n streams directly?
        log(f"[{name}] capacity: proxy failed at {n}; checking the same load directly")
        tcp0 = tcp_listen_counters()
        d = stream_bench(tools, paced_base, UPSTREAM_KEY, MODEL, n, 1, ramp, timeout=30)
        step["direct"] = d
        step["direct_tcp_listen_overflows"] = counters_delta(tcp0, tcp_listen_counters())
        d_ok = d["failed"] == 0 and d["lost"] == 0 and d["stalled"] == 0 and d["peak_concurrent"] == n
        step["direct_ok"] = d_ok
        limited_by = "proxy" if d_ok else "load generator / mock on this machine (direct failed too)"
        problems.append(
            f"capacity {n} streams via proxy: failed={p['failed']} lost={p['lost']} stalled={p['stalled']} "
            f"peak concurrent={p['peak_concurrent']} connect max={p['connect_us']['max']} us "
            f"TTFT p99={p['ttft_us']['p99']} us gap max={p['gap_us']['max']} us "
            f"listen-queue overflows={step['tcp_listen_overflows'].get('ListenOverflows')} errors={p['errors']} "
            f"e.g. {p['error_samples'][:2]}; direct at {n}: {'clean' if d_ok else 'also failed'} "
            f"(TTFT p99={d['ttft_us']['p99']} us, gap max={d['gap_us']['max']} us, "
            f"overflows={step['direct_tcp_listen_overflows'].get('ListenOverflows')})"
        )
        break
    at_top = steps[-1] if steps else None  # the largest step that ran, passed or not
    out["capacity"] = {
        "steps": steps,
        "max_streams_held": held,
        "limited_by": limited_by,
        "rss_at_max_step_kb": at_top["proxy_rss_max_kb"] if at_top else None,  # largest step run
        "top_step": {
            "streams": at_top["streams"],
            "ok": at_top["ok"],
            "connect_max_us": at_top["proxy"]["connect_us"]["max"],
            "ttft_p50_us": at_top["proxy"]["ttft_us"]["p50"],
            "ttft_p99_us": at_top["proxy"]["ttft_us"]["p99"],
            "gap_p99_us": at_top["proxy"]["gap_us"]["p99"],
            "gap_max_us": at_top["proxy"]["gap_us"]["max"],
            "paced_mock_rss_max_kb": at_top["paced_mock_rss_max_kb"],
            "proxy_cpu_us_per_event": at_top["proxy_cpu_us_per_event"],
            "paced_mock_cpu_us_per_event": at_top["paced_mock_cpu_us_per_event"],
            "tcp_listen_overflows": at_top["tcp_listen_overflows"].get("ListenOverflows"),
        } if at_top else None,
        "criteria": f"no failed stream, every stream {STREAM_CHUNKS} content chunks + [DONE], "
        f"no gap > {STALL_FACTOR} x {STREAM_PACING_MS} ms, all streams open at once",
    }

    time.sleep(1.0)
    # Open descriptors left after the streams: listener + runtime + idle pooled upstream
    # connections the proxy keeps.
    out["proxy_fds_after_load"] = proc_fds(pid)
    out["loadavg_at_end"] = loadavg()
    rss["after_load_kb"] = proc_status_kb(pid, "VmRSS")
    rss["peak_hwm_kb"] = proc_status_kb(pid, "VmHWM")
    out["rss"] = rss
    if proxy.poll() is not None:
        problems.append(f"the proxy exited during the run with {proxy.returncode}")
    procs.stop(proxy)
    out["proxy_exit_code"] = proxy.returncode
    warn_lines = [
        line for line in proxy_log.read_text(errors="replace").splitlines() if " WARN " in line or " ERROR " in line
    ]
    out["proxy_log_warn_error_lines"] = len(warn_lines)
    if warn_lines:
        problems.append(f"proxy log has {len(warn_lines)} WARN/ERROR lines, e.g. {warn_lines[:2]}")
    out["problems"] = problems
    return out


# --------------------------------------------------------------------------- report


def metadata(tools: Tools, args, nofile: int) -> dict:
    def cmd(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    commit = cmd(["git", "rev-parse", "HEAD"]) or "unknown"
    if cmd(["git", "status", "--porcelain"]):
        commit += "-dirty"
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    wrk_version = (cmd([tools.wrk, "--version"]) or "").splitlines()
    return {
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit,
        "rustc": cmd(["rustc", "--version"]),
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "pinning": "proxy on CPU 1; mock and load generators on CPU 0 (taskset)" if args.pin else "none (unpinned)",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": wrk_version[0] if wrk_version else "",
        "nofile_limit": nofile,
        "profile": "quick" if args.quick else "full",
        "build": "cargo --release (workspace profile: fat LTO, codegen-units=1)" if not args.no_build else "prebuilt (--no-build)",
        "machine_note": "load generator, mock upstream and proxy all share this machine",
        "loadavg_at_start": loadavg(),
        "machine_busy_pct_before_start": machine_busy_pct(),
    }


def us(v) -> str:
    return "-" if v is None else f"{v:,.0f} µs"


def signed_us(v) -> str:
    return "-" if v is None else f"{v:+,.0f} µs"


def mb(kb) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f} MB"


def rps(v) -> str:
    return "-" if v is None else f"{v:,.0f}"


def evaluate_targets(result: dict) -> list[dict]:
    runs = result["runs"]
    ceiling_ok = result["mock_ceiling"]["meets_80k"]
    rows = []

    quick = result["meta"]["profile"] == "quick"

    def row(name: str, target: str, getter, check, note: str = "", difference: bool = False,
            tail: bool = False) -> None:
        """`difference`: a proxy-minus-direct figure; below zero it is noise, not a pass.
        `tail`: a p99 figure, which a --quick run has too few samples to judge."""
        entry = {"name": name, "target": target, "note": note}
        notes = [note] if note else []
        for cfg, data in runs.items():
            value = getter(data)
            entry[cfg] = value
            verdict = None if value is None else bool(check(value))
            if verdict is not None and tail and quick:
                verdict = None
                notes.append("quick run: too few samples to judge a p99")
            elif verdict is not None and difference and value < 0:
                verdict = None
                notes.append(f"{cfg}: negative, noise larger than the difference")
            entry[f"pass_{cfg}"] = verdict
        entry["note"] = "; ".join(dict.fromkeys(notes))
        rows.append(entry)

    row("added latency p50 at c=1", "<= 40 µs", lambda r: r["latency_c1"]["added_us"]["p50_us"],
        lambda v: v <= TARGETS["added_p50_c1_us"], difference=True)
    row("added latency p99 at c=1", "<= 100 µs", lambda r: r["latency_c1"]["added_us"]["p99_us"],
        lambda v: v <= TARGETS["added_p99_c1_us"], difference=True, tail=True)
    row("proxy/direct req/s at c=64", ">= 0.30", lambda r: r["throughput"].get("64", {}).get("ratio"),
        lambda v: v >= TARGETS["rps_ratio_c64"],
        "" if ceiling_ok else "mock ceiling below 80k req/s here: ratio not under target conditions")
    row("added TTFT p99", "<= 250 µs", lambda r: r["streaming"]["added_ttft_p99_us"],
        lambda v: v <= TARGETS["added_ttft_p99_us"], difference=True, tail=True)
    row("concurrent paced streams held", ">= 2048", lambda r: r["capacity"]["max_streams_held"],
        lambda v: v >= TARGETS["streams_held"])
    row("proxy RSS at 2048 streams (MB)", "<= 128",
        lambda r: kb_to_mb(r["capacity"]["rss_at_max_step_kb"])
        if (r["capacity"]["top_step"] or {}).get("streams") == TARGETS["streams_held"] else None,
        lambda v: v <= TARGETS["rss_at_2048_streams_mb"])
    row("idle RSS (MB)", "<= 15", lambda r: kb_to_mb(r["rss"]["idle_kb"]), lambda v: v <= TARGETS["idle_rss_mb"])
    bare = runs.get("bare")
    full = runs.get("full_stack")
    if bare and full:
        b = bare["latency_c1"]["added_us"]["p50_us"]
        f = full["latency_c1"]["added_us"]["p50_us"]
        ratio = (f / b) if (b and b > 0 and f is not None) else None
        bm = (bare.get("in_process_overhead_c1") or {}).get("mean_us")
        fm = (full.get("in_process_overhead_c1") or {}).get("mean_us")
        mean_ratio = (fm / bm) if (bm and fm) else None
        rows.append({
            "name": "full stack / bare overhead (added p50 at c=1)",
            "target": "<= 1.3",
            "full_stack": ratio,
            "pass_full_stack": None if ratio is None else ratio <= TARGETS["full_over_bare"],
            "note": "; ".join(
                n
                for n in (
                    f"in-process overhead mean ratio {mean_ratio:.2f}" if mean_ratio else "",
                    f"layers missing in this build: {', '.join(result['layers_missing'])}"
                    if result["layers_missing"]
                    else "",
                )
                if n
            ),
        })
    return rows


def kb_to_mb(kb):
    return None if kb is None else kb / 1024


def render_table(result: dict) -> str:
    meta, runs = result["meta"], result["runs"]
    cfgs = list(runs)
    lines = [
        f"liter-llm benchmark - {meta['date_utc']} - {meta['profile']} run - commit {meta['git_commit'][:12]}"
        + ("-dirty" if meta["git_commit"].endswith("-dirty") else ""),
        f"{meta['cpu_model']} - {meta['cores']} cores - pinning: {meta['pinning']} - {meta['rustc']}",
        f"mock ceiling (wrk -t2 -c64, mock alone): {rps(result['mock_ceiling']['rps'])} req/s"
        + ("" if result["mock_ceiling"]["meets_80k"] else "  (below the 80k req/s the targets assume)"),
        f"layers missing in this build: {', '.join(result['layers_missing']) or 'none'}",
        f"other processes' CPU: {meta['machine_busy_pct_before_start'] or 0:.0f}% of all CPUs in the second "
        f"before the start, {meta.get('foreign_cpu_pct_during_run') or 0:.0f}% during the run; "
        f"load average at start {meta['loadavg_at_start']}, at end {meta.get('loadavg_at_end', '')}",
        "",
    ]
    w0, w = 34, 24
    if result.get("noisy"):
        lines.insert(
            -1,
            f"WARNING: other processes used more than {NOISY_FOREIGN_PCT}% of the CPUs; "
            "tail figures (p99, p99.9, TTFT p99, stalls) are not trustworthy. Re-run on a quiet machine.",
        )
    lines.append("".ljust(w0) + "".join(c.replace("_", " ").ljust(w) for c in cfgs))

    def add(label: str, fn) -> None:
        cells = []
        for c in cfgs:
            try:
                cells.append(fn(runs[c]))
            except (KeyError, TypeError):
                cells.append("-")
        lines.append(label.ljust(w0) + "".join(str(x).ljust(w) for x in cells))

    add("c=1 direct p50 / p99 / p99.9", lambda r: "/".join(f"{r['latency_c1']['direct_median_us'][k]:.0f}" for k in ("p50_us", "p99_us", "p999_us")) + " µs")
    add("c=1 proxy  p50 / p99 / p99.9", lambda r: "/".join(f"{r['latency_c1']['proxy_median_us'][k]:.0f}" for k in ("p50_us", "p99_us", "p999_us")) + " µs")
    add("c=1 ADDED p50", lambda r: signed_us(r["latency_c1"]["added_us"]["p50_us"]))
    add("c=1 ADDED p99", lambda r: signed_us(r["latency_c1"]["added_us"]["p99_us"]))
    add("c=1 ADDED p99.9", lambda r: signed_us(r["latency_c1"]["added_us"]["p999_us"]))
    add("in-process overhead p50/p99", lambda r: f"{r['in_process_overhead_c1']['p50_us']:.0f}/{r['in_process_overhead_c1']['p99_us']:.0f} µs (≈)")
    add("in-process overhead mean", lambda r: us(r["in_process_overhead_c1"]["mean_us"]))
    for conc in ("64", "256"):
        add(f"req/s c={conc} direct / proxy", lambda r, c=conc: f"{rps(r['throughput'][c]['direct_rps_median'])} / {rps(r['throughput'][c]['proxy_rps_median'])}")
        add(f"req/s c={conc} ratio", lambda r, c=conc: f"{r['throughput'][c]['ratio']:.2f}" + (" MOCK-BOUND" if r["throughput"][c]["mock_bound"] else ""))
    add("proxy CPU-s per 10k req (c=64)", lambda r: f"{r['cpu_c64']['cpu_s_per_10k']:.2f} s")
    add("TTFT p50 direct / proxy", lambda r: f"{us(r['streaming']['direct']['ttft_p50_us'])} / {us(r['streaming']['proxy']['ttft_p50_us'])}")
    add("TTFT p99 direct / proxy", lambda r: f"{us(r['streaming']['direct']['ttft_p99_us'])} / {us(r['streaming']['proxy']['ttft_p99_us'])}")
    add("ADDED TTFT p50 / p99", lambda r: f"{signed_us(r['streaming']['added_ttft_p50_us'])} / {signed_us(r['streaming']['added_ttft_p99_us'])}")
    add("gap p99 direct / proxy (ms)", lambda r: f"{r['streaming']['direct']['gap_p99_us'] / 1000:.2f} / {r['streaming']['proxy']['gap_p99_us'] / 1000:.2f}")
    add("paced streams held (max step)", lambda r: f"{r['capacity']['max_streams_held']}" + (f" (limit: {r['capacity']['limited_by'].split(' ')[0]})" if r["capacity"]["limited_by"] else ""))
    add("largest stream step run", lambda r: f"{r['capacity']['top_step']['streams']} ({'passed' if r['capacity']['top_step']['ok'] else 'FAILED'})")
    add("  CPU per event proxy / mock", lambda r: f"{r['capacity']['top_step']['proxy_cpu_us_per_event']:.1f} / {r['capacity']['top_step']['paced_mock_cpu_us_per_event']:.1f} µs")
    add("  listen overflows / connect max", lambda r: f"{r['capacity']['top_step']['tcp_listen_overflows']} / {r['capacity']['top_step']['connect_max_us'] / 1000:.1f} ms")
    add("  TTFT p99 / largest gap", lambda r: f"{r['capacity']['top_step']['ttft_p99_us'] / 1000:.1f} / {r['capacity']['top_step']['gap_max_us'] / 1000:.1f} ms")
    add("RSS idle", lambda r: mb(r["rss"]["idle_kb"]))
    add("RSS under c=64 (max)", lambda r: mb(r["rss"]["load_c64_max_kb"]))
    add("RSS at largest stream step (max)", lambda r: mb(r["capacity"]["rss_at_max_step_kb"]))
    add("RSS peak (VmHWM)", lambda r: mb(r["rss"]["peak_hwm_kb"]))
    add("RSS after load (idle again)", lambda r: mb(r["rss"]["after_load_kb"]))
    add("paced mock RSS at largest step", lambda r: mb(r["capacity"]["top_step"]["paced_mock_rss_max_kb"]))
    add("proxy open fds after load", lambda r: r["proxy_fds_after_load"])
    lines.append("")
    lines.append("targets:")
    for t in result["targets"]:
        cells = []
        for c in cfgs:
            if c not in t:
                continue
            v = t[c]
            verdict = {True: "PASS", False: "FAIL", None: "n/a"}[t.get(f"pass_{c}")]
            shown = "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))
            cells.append(f"{c}={shown} {verdict}")
        note = f"  [{t['note']}]" if t.get("note") else ""
        lines.append(f"  {t['name']} ({t['target']}): " + ", ".join(cells) + note)
    problems = result["problems"]
    lines.append("")
    lines.append("problems: " + ("none" if not problems else ""))
    for p in problems:
        lines.append(f"  - {p}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    log("wrk not found; installing it with apt-get")
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise BenchError("wrk is not installed and cannot be installed here (need root and apt-get): apt-get install wrk")
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "wrk"]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise BenchError(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    if not shutil.which("wrk"):
        raise BenchError("apt-get install wrk succeeded but wrk is still not on PATH")


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, NOFILE_TARGET)
    for new_hard in (max(hard, want), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, new_hard), new_hard))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def build() -> None:
    log("building release binaries (cargo build --release -p liter-llm -p mock-upstream -p stream-bench)")
    done = subprocess.run(
        ["cargo", "build", "--release", "-p", "liter-llm", "-p", "mock-upstream", "-p", "stream-bench"],
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError("cargo build failed")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer and shorter rounds (about 2 minutes)")
    ap.add_argument("--out", default=str(ROOT / "bench-results"), help="directory for <timestamp>.json and logs")
    ap.add_argument("--no-build", action="store_true", help="use the release binaries already built")
    ap.add_argument("--bin-dir", help="take liter-llm, mock-upstream and stream-bench from here (implies --no-build)")
    ap.add_argument("--pin", action="store_true", help="pin the proxy to CPU 1 and everything else to CPU 0")
    ap.add_argument("--port-base", type=int, default=18100, help="proxy on BASE, mock on BASE+10, paced mock on BASE+11, short-stream mock on BASE+12")
    ap.add_argument("--configs", default="bare,full_stack", help="comma list of: bare, full_stack")
    args = ap.parse_args()

    prof = PROFILES["quick" if args.quick else "full"]
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for c in configs:
        if c not in ("bare", "full_stack"):
            ap.error(f"unknown config {c!r}")
    if args.pin and (os.cpu_count() or 1) < 2:
        ap.error("--pin needs at least 2 CPUs")
    if args.pin and not shutil.which("taskset"):
        ap.error("--pin needs taskset (util-linux)")

    # SIGTERM behaves like Ctrl-C: unwind through `finally` and stop the children.
    def on_term(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)

    started = time.monotonic()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    logdir = out_dir / f"{stamp}-logs"
    logdir.mkdir()
    procs = Procs()
    try:
        ensure_wrk()
        if args.bin_dir:
            args.no_build = True
            bin_dir = Path(args.bin_dir).resolve()
        else:
            bin_dir = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")).resolve() / "release"
        if not args.no_build:
            build()
        tools = Tools(bin_dir, args.pin)
        for exe in (tools.liter_llm, tools.mock, tools.stream_bench):
            if not exe.exists():
                raise BenchError(f"{exe} is missing; run without --no-build")
        nofile = raise_nofile()
        if nofile < NOFILE_TARGET:
            log(f"warning: could only raise the open-files limit to {nofile}")

        ports = {
            "proxy": args.port_base,
            "mock": args.port_base + 10,
            "paced": args.port_base + 11,
            "short": args.port_base + 12,
        }
        busy = [f"{k}={p}" for k, p in ports.items() if not port_free(p)]
        if busy:
            raise BenchError(f"ports in use on {HOST}: {', '.join(busy)} (pick others with --port-base)")

        result: dict = {"schema": 1, "meta": metadata(tools, args, nofile), "settings": prof}
        with tempfile.TemporaryDirectory(prefix="liter-llm-bench-") as tmp:
            workdir = Path(tmp)
            included, fragments, missing = probe_layers(tools, ports, workdir)
            result["layers_included"] = included
            result["layers_missing"] = sorted(missing)
            result["layers_missing_reasons"] = missing

            foreign = ForeignCpu()
            mock_argv = [str(tools.mock), "--host", HOST, "--api-key", UPSTREAM_KEY]
            mock_log, paced_log = logdir / "mock.log", logdir / "mock-paced.log"
            mock = procs.start("mock", tools.pinned("mock", [*mock_argv, "--port", str(ports["mock"])]), mock_log)

            def streaming_mock(name: str, port: int, chunks: int, log_path: Path) -> subprocess.Popen:
                argv = [*mock_argv, "--port", str(port), "--chunks", str(chunks),
                        "--chunk-interval-ms", str(STREAM_PACING_MS)]
                return procs.start(name, tools.pinned("mock", argv), log_path)

            paced = streaming_mock("mock-paced", ports["paced"], STREAM_CHUNKS, paced_log)
            short_log = logdir / "mock-short.log"
            short = streaming_mock("mock-short", ports["short"], TTFT_CHUNKS, short_log)
            foreign.live_pids = [mock.pid, paced.pid, short.pid]
            foreign.start = foreign._snap()
            wait_for_line(mock_log, "mock-upstream listening on", mock, 15)
            wait_for_line(paced_log, "mock-upstream listening on", paced, 15)
            wait_for_line(short_log, "mock-upstream listening on", short, 15)

            log("mock ceiling: wrk -t2 -c64 against the mock alone")
            result["mock_ceiling"] = measure_ceiling(tools, ports, prof)
            log(f"mock ceiling {result['mock_ceiling']['rps']:,.0f} req/s")

            result["runs"] = {}
            for cfg in configs:
                result["runs"][cfg] = run_config(
                    cfg, cfg == "full_stack", tools, ports, prof, procs, workdir, logdir,
                    fragments, result["mock_ceiling"]["rps"], paced.pid,
                )
            for name, proc in (("mock", mock), ("paced mock", paced), ("short-stream mock", short)):
                if proc.poll() is not None:
                    raise BenchError(f"the {name} exited during the run with {proc.returncode}")
            result["meta"]["foreign_cpu_pct_during_run"] = foreign.pct()

        result["problems"] = [f"{cfg}: {p}" for cfg, r in result["runs"].items() for p in r["problems"]]
        foreign_pct = max(
            result["meta"].get("foreign_cpu_pct_during_run") or 0.0,
            result["meta"].get("machine_busy_pct_before_start") or 0.0,
        )
        result["noisy"] = foreign_pct > NOISY_FOREIGN_PCT
        result["targets"] = evaluate_targets(result)
        result["meta"]["runtime_secs"] = round(time.monotonic() - started, 1)
        result["meta"]["loadavg_at_end"] = loadavg()
        json_path = out_dir / f"{stamp}.json"
        json_path.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(render_table(result))
        print(f"\nwrote {json_path} (logs in {logdir}) in {result['meta']['runtime_secs']:.0f} s")
        return 0
    except BenchError as exc:
        log(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted; stopping everything this run started")
        return 130
    finally:
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
