"""A real multi-node Ray cluster on this machine, for tests, benchmarks and the deployment demo.

`ray start --head` plus `nodes - 1` further `ray start --address=...` calls: every node has its
own raylet, object store and workers, exactly as on separate machines, so scheduling, object
transfer and node failure behave as they do on a real cluster (a single `ray.init()` has one
raylet and cannot lose a node).

Several clusters may run here at once (tests, benchmarks, other sessions): every port is a free
one picked here (never Redis's 6379 nor Ray's fixed defaults), each node has a private
`--temp-dir`, and `stop()` kills only the processes this object started, never `ray stop`
(which kills every Ray cluster of the user).

Example:
    with LocalRayCluster(nodes=2, cpus_per_node=1) as cluster:
        ray.init(address=cluster.address)
        ...
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

REDIS_PORT = 6379
# Worker logs and sockets live under the temp dir; AF_UNIX paths are limited to 107 bytes and
# Ray appends ~70, so the default root is a short directory under /tmp.
_SHORT_TMP = "/tmp"
# Each node's object store: small, so several test clusters fit beside each other in /dev/shm.
DEFAULT_OBJECT_STORE_BYTES = 1 << 30


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it; never Redis's)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port != REDIS_PORT:
            return port


def ray_executable() -> str:
    """The `ray` CLI of this interpreter's environment (the project's .venv)."""
    candidate = Path(sys.executable).parent / "ray"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("ray")
    if found is None:
        raise FileNotFoundError("no `ray` executable next to this Python or on PATH; install ray")
    return found


@dataclass
class _Node:
    """One started node: the process group its `ray start` created (every daemon of the node
    is in it; workers are the raylet's children in their own sessions)."""

    index: int
    temp_dir: Path
    pgid: int

    def processes(self) -> list[psutil.Process]:
        """This node's live processes: its group (gcs, raylet, agents, monitors) and every
        descendant of them (workers call setsid, so they are not in the group)."""
        group = []
        for proc in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(proc.pid) == self.pgid:
                    group.append(proc)
            except (ProcessLookupError, psutil.Error):
                continue
        found = {p.pid: p for p in group}
        for proc in group:
            try:
                for child in proc.children(recursive=True):
                    found.setdefault(child.pid, child)
            except psutil.Error:
                continue
        return list(found.values())

    def kill(self) -> list[int]:
        """SIGKILL every process of this node; returns their pids."""
        procs = self.processes()
        for proc in procs:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.Error:
                continue
        psutil.wait_procs(procs, timeout=10)
        return [p.pid for p in procs]


class LocalRayCluster:
    """`nodes` Ray nodes (the first the head) with `cpus_per_node` CPUs each, on loopback.

    Args:
        nodes: how many nodes, each with its own raylet (>= 1).
        cpus_per_node: the CPU resource each node advertises (`--num-cpus`).
        temp_dir: root of the nodes' private temp dirs; a fresh short one under /tmp if None
            (removed by `stop()`; a given one is left in place).
        env: extra environment for the node processes (and so the workers).
        object_store_bytes: each node's object store size.
        start_timeout_s: how long to wait for every node to register as alive.
    """

    def __init__(
        self,
        nodes: int = 2,
        cpus_per_node: int = 1,
        temp_dir: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        object_store_bytes: int = DEFAULT_OBJECT_STORE_BYTES,
        start_timeout_s: float = 120.0,
    ):
        if nodes < 1:
            raise ValueError(f"nodes must be >= 1, got {nodes}")
        if cpus_per_node < 1:
            raise ValueError(f"cpus_per_node must be >= 1, got {cpus_per_node}")
        self.nodes = nodes
        self.cpus_per_node = cpus_per_node
        self._own_temp = temp_dir is None
        self.temp_dir = Path(tempfile.mkdtemp(prefix="kray", dir=_SHORT_TMP) if temp_dir is None else temp_dir)
        self._extra_env = dict(env or {})
        self.object_store_bytes = object_store_bytes
        self.start_timeout_s = start_timeout_s
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._nodes: list[_Node] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> LocalRayCluster:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """The node processes' environment: ours, offline hub access, no usage reporting."""
        env = dict(os.environ)
        env.update(
            {
                "HF_HUB_OFFLINE": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "RAY_USAGE_STATS_ENABLED": "0",
            }
        )
        # A driver's RAY_ADDRESS would make `ray start --head` think it joins a cluster.
        env.pop("RAY_ADDRESS", None)
        env.update(self._extra_env)
        return env

    def start(self) -> LocalRayCluster:
        """Start the head, then the other nodes, and wait until all of them are alive."""
        if self._nodes:
            raise RuntimeError("cluster already started")
        try:
            self._start_node(0)
            for index in range(1, self.nodes):
                self._start_node(index)
            self.wait_for_nodes(self.nodes)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_node(self, index: int) -> None:
        node_dir = self.temp_dir / f"n{index}"
        node_dir.mkdir(parents=True, exist_ok=True)
        args = [
            ray_executable(),
            "start",
            f"--num-cpus={self.cpus_per_node}",
            f"--temp-dir={node_dir}",
            f"--object-store-memory={self.object_store_bytes}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            # Random worker ports (Ray's default is one fixed range every cluster here shares).
            "--min-worker-port=0",
            "--max-worker-port=0",
            "--disable-usage-stats",
        ]
        if index == 0:
            args += [
                "--head",
                f"--port={self.port}",
                "--include-dashboard=false",
                f"--dashboard-port={free_port()}",
                f"--ray-client-server-port={free_port()}",
            ]
        else:
            args += [f"--address={self.address}"]
        log = node_dir / "ray_start.log"
        with open(log, "w") as out:
            # Its own session: every daemon `ray start` leaves behind is in this process group,
            # which is how stop() finds exactly this node's processes.
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True)
            self._nodes.append(_Node(index=index, temp_dir=node_dir, pgid=proc.pid))
            try:
                rc = proc.wait(timeout=self.start_timeout_s)
            except subprocess.TimeoutExpired:
                raise TimeoutError(
                    f"`ray start` for node {index} did not return in {self.start_timeout_s}s; see {log}"
                ) from None
        if rc != 0:
            raise RuntimeError(f"`ray start` for node {index} failed (exit {rc}):\n{log.read_text()[-3000:]}")

    def alive_nodes(self) -> int:
        """How many nodes the cluster's GCS reports alive."""
        from ray._raylet import GcsClient

        infos = GcsClient(address=self.address).get_all_node_info(timeout=10).values()
        # GcsNodeInfo.state: 0 ALIVE, 1 DEAD.
        return sum(1 for info in infos if info.state == 0)

    def wait_for_nodes(self, count: int, timeout_s: float | None = None) -> None:
        """Block until exactly `count` nodes are alive (raises TimeoutError otherwise)."""
        deadline = time.monotonic() + (timeout_s or self.start_timeout_s)
        seen = -1
        while time.monotonic() < deadline:
            try:
                seen = self.alive_nodes()
            except Exception:  # GCS still starting: keep polling until the deadline.
                seen = -1
            if seen == count:
                return
            time.sleep(0.5)
        raise TimeoutError(f"{count} Ray nodes expected alive at {self.address}, saw {seen}")

    # -- failure injection -------------------------------------------------------------------

    def worker_pids(self, index: int = 1) -> list[int]:
        """The pids of node `index` (default the first non-head node): raylet, agents, workers."""
        return [p.pid for p in self._node(index).processes()]

    def kill_worker_node(self, index: int = 1) -> list[int]:
        """SIGKILL node `index`'s raylet and all its workers, as if the machine died."""
        if index == 0:
            raise ValueError("node 0 is the head; killing it ends the cluster (use stop())")
        return self._node(index).kill()

    def _node(self, index: int) -> _Node:
        for node in self._nodes:
            if node.index == index:
                return node
        raise IndexError(f"no node {index} in this cluster ({len(self._nodes)} started)")

    def stop(self) -> None:
        """Kill this cluster's processes (workers first, head last) and remove its own temp dir."""
        for node in reversed(self._nodes):
            node.kill()
        self._nodes = []
        if self._own_temp:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
