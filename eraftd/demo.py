"""`eraftd demo`: a whole sharded cluster on loopback, then the shell.

    eraftd demo [--dir DIR] [--replicas 3] [--groups 2] [--tls] [--dashboard [HOST:PORT]]

First run: pick free loopback ports and write one TOML file per node into DIR (n1..n3 are the
controller peers and also group 100's replicas; then --replicas nodes for each further group,
gids 101, 102, ...); every node also gets an HTTP port ([node] http: /metrics, /healthz,
/readyz).  A later run on the same DIR reuses those files, so the same ports and the
same data.  Then: start every node (children of this same executable), join the groups the
controllers do not know yet, wait until every shard is Serving, print the addresses and files,
and open the shell (a batch script when stdin is not a terminal).  Leaving the shell, SIGTERM
or SIGINT stops every node it started.

Each run also writes DIR/prometheus.yml, a Prometheus scrape configuration of every node's
/metrics (for docs/grafana-eraftd.json).  The banner prints the `eraftd dashboard` command for
this cluster; with --dashboard, demo starts
that dashboard too (a child like the nodes, its log in DIR/dashboard.log) and prints its URL.

With --tls (first run): DIR/certs holds a CA, one node certificate for 127.0.0.1 (shared by the
nodes) and the client certificate "ops" (eraftd.certs); every TOML gets a [tls] section
(client certificates required, admins = ["ops"]), and demo, its shell and the command it prints
for elsewhere use the ops certificate.  Without --tls: plaintext on loopback.  A later run goes by
the TOML files: TLS if they have [tls].

If demo itself dies, even by kill -9, its nodes die with it: before anything else, demo forks a
tiny watchdog that holds the read end of a pipe whose write end only demo holds.  demo writes
each node's process-group id into it; when the pipe reaches EOF (demo exited, however), the
watchdog SIGKILLs every group still listed and exits.  (For the single-file binary, demo also
asks Linux to kill it when its bootloader parent dies: PR_SET_PDEATHSIG.)
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from eraftd import certs
from eraftd import config as config_mod
from eraftd.config import dump_toml
from eraftd.tls import TlsFiles

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
FIRST_GID = 100
DEFAULT_DIR = "eraft-demo"
CERTS_DIR = "certs"                # under DIR, with --tls
ADMIN = "ops"                      # the demo's client certificate: an admin
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
DASHBOARD_LISTEN = "127.0.0.1:8080"
DASHBOARD_LOG = "dashboard.log"    # under DIR, with --dashboard
PROMETHEUS_YML = "prometheus.yml"  # under DIR: a scrape configuration of the nodes' /metrics


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", default=DEFAULT_DIR, metavar="DIR",
                   help=f"where the TOML files, data and logs go (default ./{DEFAULT_DIR}); "
                        "an existing demo there is reused")
    p.add_argument("--replicas", type=int, default=3, metavar="N",
                   help="replicas of each group after the first (default 3; first run only)")
    p.add_argument("--groups", type=int, default=2, metavar="N",
                   help="replica groups; the first is the 3 controller peers (default 2; first run only)")
    p.add_argument("--tls", action="store_true",
                   help=f"TLS with client certificates: a CA and certificates in DIR/{CERTS_DIR}, "
                        f"[tls] in every node's TOML (first run only; default: plaintext on loopback)")
    p.add_argument("--dashboard", nargs="?", const=DASHBOARD_LISTEN, default=None, metavar="HOST:PORT",
                   help=f"also start `eraftd dashboard` on HOST:PORT (default {DASHBOARD_LISTEN}) "
                        f"and print its URL; without it, demo prints the command")


# ---------------------------------------------------------------- the layout

@dataclass
class DemoNode:
    name: str           # n1, n2, ...
    toml: Path
    address: str        # where it listens
    gid: int | None     # its shardkv group
    controller: bool
    proc: subprocess.Popen | None = None
    log: Path = field(default_factory=Path)
    http: str = ""      # its [node] http address ("" in a demo made before nodes had one)


@dataclass
class Child:
    """Another process demo starts and stops with the nodes (the dashboard)."""
    name: str
    address: str
    log: Path
    proc: subprocess.Popen | None = None


@dataclass
class Layout:
    dir: Path
    nodes: list[DemoNode]
    created: bool
    tls: TlsFiles | None = None     # the client files (CA, the ops certificate); None: plaintext
    node_tls: TlsFiles | None = None  # the nodes' files (CA, node.crt for 127.0.0.1): the dashboard's

    @property
    def controllers(self) -> list[str]:
        return [n.address for n in self.nodes if n.controller]

    def groups(self) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for n in self.nodes:
            if n.gid is not None:
                out.setdefault(n.gid, []).append(n.address)
        return out


def _free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (every socket held open until all are chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _toml_files(d: Path) -> list[Path]:
    files = [p for p in d.glob("n*.toml") if p.stem[1:].isdigit()]
    return sorted(files, key=lambda p: int(p.stem[1:]))


def create_layout(d: Path, groups: int, replicas: int, tls: bool = False) -> Layout:
    n = 3 + (groups - 1) * replicas
    ports = _free_ports(2 * n)
    addrs = [f"127.0.0.1:{p}" for p in ports[:n]]
    https = iter(f"127.0.0.1:{p}" for p in ports[n:])
    ctrl = addrs[:3]
    specs: list[tuple[int, list[str]]] = [(FIRST_GID, ctrl)]
    rest = addrs[3:]
    for g in range(1, groups):
        specs.append((FIRST_GID + g, rest[(g - 1) * replicas:g * replicas]))
    d.mkdir(parents=True, exist_ok=True)
    section = _tls_section(d) if tls else None
    header = ("# Written by `eraftd demo`; every key is explained in eraft.toml.example.\n"
              "# Start this node by hand with: eraftd run --config {}\n")
    i = 0
    for gid, peers in specs:
        for addr in peers:
            i += 1
            name = f"n{i}"
            data: dict = {"node": {"listen": addr, "data_dir": f"data/{name}", "http": next(https)}}
            if gid == FIRST_GID:
                data["controller"] = {"peers": ctrl}
                data["shardkv"] = {"gid": gid, "peers": peers}
            else:
                data["shardkv"] = {"gid": gid, "peers": peers, "controllers": ctrl}
            if section:
                data["tls"] = section
            path = d / f"{name}.toml"
            path.write_text(header.format(path.name) + dump_toml(data))
    return load_layout(d, created=True)


def _tls_section(d: Path) -> dict:
    """The certificates of a TLS demo in d/certs (eraftd.certs; made once) and the [tls] section
    of its nodes (paths relative to the TOML files, which are in d)."""
    cluster = certs.cluster_certificates(str(d / CERTS_DIR), ["127.0.0.1"], (ADMIN,))
    return cluster.tls_table(relative_to=str(d))


def load_layout(d: Path, created: bool = False) -> Layout:
    nodes = []
    tls = node_tls = None
    for path in _toml_files(d):
        cfg = config_mod.load(str(path))      # ConfigError: one line, the caller prints it
        nodes.append(DemoNode(path.stem, path, cfg.node.listen,
                              cfg.shardkv.gid if cfg.shardkv else None, cfg.controller is not None,
                              log=d / f"{path.stem}.log", http=cfg.node.http))
        if cfg.tls is not None and tls is None:
            tls = _client_files(path, cfg.tls.files.ca_file)
            node_tls = cfg.tls.files
    return Layout(d, nodes, created, tls, node_tls if tls else None)


def _client_files(toml: Path, ca_file: str) -> TlsFiles:
    """The demo's client files: the ops certificate beside the nodes' CA."""
    files = certs.Cluster(os.path.dirname(ca_file), (ADMIN,)).client()
    for f in (files.cert_file, files.key_file):
        if not os.path.isfile(f):
            raise config_mod.ConfigError(str(toml), "[tls]", f"the demo's client certificate {f} is "
                                         f"missing: remove the demo's directory, or choose another --dir")
    return files


def prometheus_config(layout: Layout) -> str:
    """A Prometheus configuration scraping every node's /metrics (HTTPS with the demo's client
    certificate when it has TLS); "" when no node has an HTTP port."""
    targets = [n.http for n in layout.nodes if n.http]
    if not targets:
        return ""
    lines = ["# Written by `eraftd demo` at each run: prometheus --config.file " + PROMETHEUS_YML,
             "global:", "  scrape_interval: 5s", "scrape_configs:", "  - job_name: eraftd"]
    if t := layout.tls:
        lines += ["    scheme: https", "    tls_config:", f"      ca_file: {json.dumps(t.ca_file)}",
                  f"      cert_file: {json.dumps(t.cert_file)}", f"      key_file: {json.dumps(t.key_file)}"]
    lines += ["    static_configs:", "      - targets:"]
    lines += [f"          - {a}" for a in targets]
    return "\n".join(lines) + "\n"


def port_problem(address: str) -> str | None:
    """Why `address` cannot be listened on now, or None."""
    host, _, port = address.rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as gRPC does: TIME_WAIT is fine
        try:
            s.bind((host, int(port)))
        except OSError as e:
            return e.strerror or str(e)
    return None


# ---------------------------------------------------------------- process life

def _set_pdeathsig(sig: int) -> None:
    """Linux: have the kernel send `sig` to this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(sig), 0, 0, 0)          # PR_SET_PDEATHSIG
    except Exception:
        pass


class Watchdog:
    """A forked child that SIGKILLs the registered process groups once demo is gone."""

    def __init__(self) -> None:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:                                   # the watchdog
            os.close(w)
            try:
                os.setsid()                            # out of the terminal's signals
                self._watch(r)
            finally:
                os._exit(0)
        os.close(r)
        self.pid, self.fd = pid, w

    @staticmethod
    def _watch(fd: int) -> None:
        groups: set[int] = set()
        buf = b""
        while True:
            try:
                chunk = os.read(fd, 4096)
            except InterruptedError:
                continue
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line.startswith(b"-"):
                    groups.discard(int(line[1:]))
                elif line:
                    groups.add(int(line))
        for g in groups:
            try:
                os.killpg(g, signal.SIGKILL)
            except OSError:
                pass

    def watch(self, pgid: int) -> None:
        os.write(self.fd, f"{pgid}\n".encode())

    def forget(self, pgid: int) -> None:
        os.write(self.fd, f"-{pgid}\n".encode())

    def close(self) -> None:
        os.close(self.fd)
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def eraftd_argv() -> list[str]:
    """This same executable: the frozen binary itself, or this interpreter with -P -m eraftd
    (-P: the current directory is not put on sys.path, so a folder named eraftd where demo
    runs cannot shadow the installed package)."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-P", "-m", "eraftd"]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYINSTALLER_RESET_ENVIRONMENT"] = "1"   # a frozen child unpacks itself afresh
    return env


def start_node(n: DemoNode, watchdog: Watchdog) -> None:
    with open(n.log, "ab") as logf:
        logf.write(f"--- eraftd demo starts {n.name} ---\n".encode())
        logf.flush()
        n.proc = subprocess.Popen(eraftd_argv() + ["run", "--config", str(n.toml)],
                                  stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                  start_new_session=True, env=_child_env())
    watchdog.watch(n.proc.pid)


def dashboard_argv(layout: Layout, listen: str) -> list[str]:
    """`eraftd dashboard` for this demo (after the executable).  With TLS it dials the nodes and
    serves its page (HTTPS) with the nodes' certificate: it names 127.0.0.1, and the nodes
    take it as a client's."""
    argv = ["dashboard", "--controllers", ",".join(layout.controllers), "--listen", listen]
    if t := layout.node_tls:
        argv += ["--tls-ca", t.ca_file, "--tls-cert", t.cert_file, "--tls-key", t.key_file]
    return argv


def dashboard_url(layout: Layout, listen: str) -> str:
    return f"{'https' if layout.node_tls else 'http'}://{listen}/"


def start_dashboard(layout: Layout, listen: str, watchdog: Watchdog) -> Child:
    child = Child("the dashboard", listen, layout.dir / DASHBOARD_LOG)
    with open(child.log, "ab") as logf:
        logf.write(b"--- eraftd demo starts the dashboard ---\n")
        logf.flush()
        child.proc = subprocess.Popen(eraftd_argv() + dashboard_argv(layout, listen),
                                      stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                      start_new_session=True, env=_child_env())
    watchdog.watch(child.proc.pid)
    return child


def wait_serving(child: Child, deadline: float) -> None:
    """Until the dashboard says it serves (its log's `serving` line, printed once it listens);
    DemoError if it exits or the deadline passes first."""
    start = child.log.stat().st_size if child.log.exists() else 0
    while True:
        try:
            with open(child.log, "rb") as f:
                f.seek(start)
                if b"eraftd dashboard: serving " in f.read():
                    return
        except OSError:
            pass
        if child.proc.poll() is not None:
            raise DemoError(f"{child.name} exited with code {child.proc.returncode}: "
                            f"{_last_line(child.log) or 'no output'} (log: {child.log})")
        if time.monotonic() > deadline:
            raise DemoError(f"timed out waiting for {child.name} to serve (log: {child.log})")
        time.sleep(0.05)


def stop_nodes(nodes: list, watchdog: Watchdog, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM every node's (or Child's) process group, wait, SIGKILL whatever is left."""
    live = [n for n in nodes if n.proc is not None]
    for n in live:
        _killpg(n.proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for n in live:
        try:
            n.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        _killpg(n.proc.pid, signal.SIGKILL)    # the group may hold a frozen child still
        try:
            n.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        watchdog.forget(n.proc.pid)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass


def _last_line(path: Path) -> str:
    """A node's own last error line (`eraftd: ...`), else the last line of its log."""
    try:
        lines = [l.strip() for l in path.read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        return ""
    ours = [l for l in lines if l.startswith("eraftd:")]
    return (ours or lines or [""])[-1]


class DemoError(Exception):
    """A one-line reason demo cannot go on (exit 1)."""


# ---------------------------------------------------------------- waiting for the cluster

async def _bring_up(layout: Layout, deadline: float) -> None:
    """Wait for every node to answer, join the missing groups, wait for every shard to serve."""
    import asyncio

    from eraftd.controller.client import ControllerClient
    from repl.probe import Probe

    ctl = ControllerClient(layout.controllers, total_timeout=5.0, tls=layout.tls)
    probe = Probe(ctl, timeout=1.0, tls=layout.tls)
    try:
        async def poll(what: str, check):
            last = ""
            while True:
                for n in layout.nodes:
                    if n.proc is not None and n.proc.poll() is not None:
                        raise DemoError(f"{n.name} ({n.address}) exited with code {n.proc.returncode}: "
                                        f"{_last_line(n.log) or 'no output'} (log: {n.log})")
                try:
                    ok = await check()
                    if ok:
                        return ok
                except Exception as e:       # not up yet
                    last = str(e).split("\n")[0]
                if time.monotonic() > deadline:
                    raise DemoError(f"timed out waiting for {what}" + (f" ({last})" if last else "")
                                    + f"; the logs are in {layout.dir}")
                await asyncio.sleep(0.1)

        async def every_node_up():
            st = await probe.status(await ctl.query())
            ctrl_up = all(m.role != "down" for m in st.controllers)
            return ctrl_up and st.leader is not None

        await poll("the controller peers to elect a leader", every_node_up)

        async def join_missing():
            cfg = await ctl.query()
            missing = {gid: addrs for gid, addrs in layout.groups().items() if gid not in cfg.groups}
            if missing:
                await ctl.join(missing)
            return True
        await poll("the groups to join", join_missing)

        async def every_shard_serving():
            st = await probe.status(await ctl.query())
            return (all(m.role != "down" for m in st.members())
                    and all(r.status == "Serving" for r in st.shards))
        await poll("every shard to be served", every_shard_serving)
    finally:
        await probe.close()
        await ctl.close()


# ---------------------------------------------------------------- the command

def cmd_demo(args: argparse.Namespace) -> int:
    if getattr(sys, "frozen", False):
        _set_pdeathsig(signal.SIGKILL)   # the bootloader parent is killed -> so are we
    if args.groups < 1 or args.replicas < 1:
        print("eraftd demo: --groups and --replicas must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    d = Path(args.dir).resolve()
    try:
        if d.is_dir() and _toml_files(d):
            layout = load_layout(d)
            if args.tls and layout.tls is None:
                print(f"eraftd demo: {d} holds a plaintext demo (its TOML files have no [tls]); "
                      f"choose another --dir for --tls, or remove this one", file=sys.stderr)
                return EXIT_USAGE
        else:
            layout = create_layout(d, args.groups, args.replicas, tls=args.tls)
    except config_mod.ConfigError as e:
        print(f"eraftd demo: {e}", file=sys.stderr)
        return EXIT_USAGE
    except certs.CertError as e:
        print(f"eraftd demo: cannot make the certificates: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as e:
        print(f"eraftd demo: cannot write to {d}: {e.strerror}", file=sys.stderr)
        return EXIT_FAILURE
    if not layout.controllers:
        print(f"eraftd demo: {d} holds no controller peer's TOML file; "
              f"remove it or choose another --dir", file=sys.stderr)
        return EXIT_USAGE

    for n in layout.nodes:
        for addr in filter(None, (n.address, n.http)):
            problem = port_problem(addr)
            if problem:
                print(f"eraftd demo: cannot start {n.name}: port {addr} ({n.toml}) is taken: "
                      f"{problem}; stop what uses it, or choose another --dir", file=sys.stderr)
                return EXIT_FAILURE
    if args.dashboard:
        if not args.dashboard.rpartition(":")[2].isdigit():
            print(f"eraftd demo: --dashboard takes HOST:PORT, got {args.dashboard!r}", file=sys.stderr)
            return EXIT_USAGE
        problem = port_problem(args.dashboard)
        if problem:
            print(f"eraftd demo: cannot start the dashboard: port {args.dashboard} is taken: "
                  f"{problem}; give --dashboard another HOST:PORT", file=sys.stderr)
            return EXIT_FAILURE

    # before any gRPC channel or thread exists: the watchdog is a plain fork
    watchdog = Watchdog()
    state = {"stopped": False}
    children: list[Child] = []

    def shutdown() -> None:
        if state["stopped"]:
            return
        state["stopped"] = True
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):   # the stop must not be cut short
            signal.signal(s, signal.SIG_IGN)
        print("eraftd demo: stopping the nodes ...", file=sys.stderr, flush=True)
        stop_nodes(children + layout.nodes, watchdog)
        watchdog.close()
        print(f"eraftd demo: stopped; the files and data stay in {d} (run eraftd demo --dir "
              f"{_shell_quote(str(d))} again to reuse them)", file=sys.stderr, flush=True)

    def on_signal(signum, frame):
        # Stop here and now: the shell may be blocked reading stdin in a thread that no
        # exception would wake, so unwinding through asyncio.run could wait forever.
        if state["stopped"]:
            return
        shutdown()
        sys.stdout.flush()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    t0 = time.monotonic()
    try:
        how = "reusing" if not layout.created else "wrote"
        tls = f" (TLS: certificates in {d / CERTS_DIR})" if layout.tls else ""
        print(f"eraftd demo: {how} {len(layout.nodes)} node files in {d}{tls}; starting the nodes ...",
              flush=True)
        if text := prometheus_config(layout):
            (layout.dir / PROMETHEUS_YML).write_text(text)
        for n in layout.nodes:
            start_node(n, watchdog)
        import asyncio
        try:
            asyncio.run(_bring_up(layout, time.monotonic() + START_TIMEOUT_S))
            if args.dashboard:
                children.append(start_dashboard(layout, args.dashboard, watchdog))
                wait_serving(children[-1], time.monotonic() + START_TIMEOUT_S)
        except DemoError as e:
            print(f"eraftd demo: {e}", file=sys.stderr)
            return EXIT_FAILURE
        print(banner(layout, time.monotonic() - t0, dashboard=args.dashboard), flush=True)
        from repl.app import run_shell
        if sys.stdin.isatty():
            # the REPL: Ctrl-C cancels a command or clears the line (the shell handles it)
            signal.signal(signal.SIGINT, signal.default_int_handler)
        return run_shell(layout.controllers, tls=layout.tls)
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    finally:
        shutdown()


def _shell_quote(s: str) -> str:
    import shlex
    return shlex.quote(s)


def banner(layout: Layout, took: float, dashboard: str | None = None) -> str:
    """dashboard: where demo started the dashboard (its URL is printed), else None (the command
    to start one is)."""
    from repl.output import count_nodes, format_count
    ctrl = ",".join(layout.controllers)
    count = count_nodes(((a, True) for a in layout.controllers),
                        ((a, True) for servers in layout.groups().values() for a in servers))
    lines = [f"eraftd demo: {format_count(count)}, every shard served ({took:.1f} s)",
             f"  controllers  {ctrl}"]
    by_gid: dict[int, list[DemoNode]] = {}
    for n in layout.nodes:
        if n.gid is not None:
            by_gid.setdefault(n.gid, []).append(n)
    for gid, ns in sorted(by_gid.items()):
        lines.append(f"  group {gid}    " + " ".join(f"{n.name}={n.address}" for n in ns))
    if any(n.http for n in layout.nodes):
        lines.append("  http         " + " ".join(f"{n.name}={n.http}" for n in layout.nodes if n.http)
                     + f" (/metrics, /healthz, /readyz; Prometheus: {layout.dir / PROMETHEUS_YML})")
    lines.append(f"  files        {layout.dir}/n*.toml (config), n*.log (logs), data/ (RocksDB)")
    if dashboard:
        lines.append(f"  dashboard    {dashboard_url(layout, dashboard)} (log: {layout.dir / DASHBOARD_LOG})")
    else:
        lines.append("  dashboard    eraftd " + " ".join(
            _shell_quote(a) for a in dashboard_argv(layout, DASHBOARD_LISTEN)))
    elsewhere = f"eraftd shell --controllers {ctrl}"
    if t := layout.tls:
        lines.append(f"  tls          {os.path.dirname(t.ca_file)}/: ca.crt, node.crt (127.0.0.1, every "
                     f"node), client.{ADMIN}.crt (CN={ADMIN}, an admin)")
        elsewhere += (f" --tls-ca {_shell_quote(t.ca_file)} --tls-cert {_shell_quote(t.cert_file)} "
                      f"--tls-key {_shell_quote(t.key_file)}")
    lines.append(f"  elsewhere    {elsewhere}")
    lines.append("eraftd demo: the shell follows; Ctrl-D or exit stops the cluster")
    return "\n".join(lines)
