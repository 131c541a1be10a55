"""Training across the machines of a Ray cluster: the entrypoint of the Ray job the trainer submits.

`python -m kto_pipeline.train.cluster_launch --spec spec.json --module resources.trainer_process
--machines 2` runs as a Ray job's driver (the trainer resource submits it through dagster-ray's
`PipesRayJobClient`). It does what a multi-node `accelerate launch` needs and nothing Ray already
does for us:

* **One bundle per machine, on distinct nodes.** A placement group with `STRICT_SPREAD` (Ray
  refuses to put two bundles on one node) reserves each machine's CPUs/GPUs; a small task in
  bundle 0 reports its node's address and a free port there: rank 0's rendezvous
  (`--main_process_ip/--main_process_port`).
* **One launcher per machine.** A Ray task in bundle i runs `accelerate launch --num_machines M
  --machine_rank i ... -m <module> --spec <spec>`, where the spec and every path in it live in
  storage all nodes see. `--multi_gpu` selects accelerate's torchrun launcher on CPU too (ranks
  then train over gloo): `--cpu` selects its single-process launcher, which cannot join machines
  without mpirun.
* **Rank 0's Pipes messages reach the job log verbatim.** Rank 0 (machine 0) writes Dagster Pipes
  messages on stdout; its task streams the launcher's output back (a Ray streaming generator)
  and this driver prints machine 0's stdout lines as they are, so dagster-ray's message reader,
  which tails the job's log, parses them. Every other line is printed with a `[machine i]` prefix.

Killed or failed (the trainer resource retries the first, not the second): a machine whose task
Ray lost (its node died, its worker crashed) makes the whole training "killed": the other
launchers are cancelled, and rank 0's closing Pipes message, when it carries an exception, is
held back and dropped, so the Dagster side sees a session that never closed (the same rule as a
SIGKILLed local process). The same holds when rank 0's own error is a lost collective peer (a
rank on another machine was killed: its launcher exits 1 like any failure, but rank 0's
exception says the peer went away). Any other error of rank 0 is printed at the end, closing the
session with that error: not retried.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

# Exit codes of the job driver.
FAILED_EXIT = 1  # an error inside training: rank 0 closed its Pipes session with it
KILLED_EXIT = 75  # EX_TEMPFAIL: a machine or rank was lost; a retry resumes from the last checkpoint
# The Pipes protocol's marker field (dagster_pipes.PIPES_PROTOCOL_VERSION_FIELD; the library does
# not import Dagster packages).
PIPES_VERSION_FIELD = "__dagster_pipes_version"
# What a collective reports when its peer process is gone (gloo over TCP; torch's c10d errors).
LOST_PEER_ERRORS = ("DistBackendError", "DistNetworkError", "DistStoreError")
LOST_PEER_MESSAGES = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")
_EXIT = "\x00exit "  # the last item a machine task yields: its launcher's exit code


@dataclass(frozen=True)
class ClusterLaunch:
    """One training across `machines` nodes of a Ray cluster (what the job's entrypoint runs)."""

    spec: str = field(metadata={"help": "the training spec (JSON), in storage every node sees"})
    module: str = field(metadata={"help": "the training process module: `accelerate launch -m <module> --spec`"})
    machines: int = field(default=2, metadata={"help": "nodes to train on, one launcher each"})
    processes_per_machine: int = field(default=1, metadata={"help": "ranks per machine (its GPUs; 1 on CPU)"})
    cpus_per_machine: float = field(default=1.0, metadata={"help": "CPUs each machine's bundle reserves"})
    gpus_per_machine: float = field(default=0.0, metadata={"help": "GPUs each machine's bundle reserves"})
    accelerate_args: tuple[str, ...] = field(default=(), metadata={"help": "extra accelerate launch arguments"})
    placement_timeout_s: float = field(default=300.0, metadata={"help": "how long to wait for the machines"})

    def __post_init__(self) -> None:
        if self.machines < 1 or self.processes_per_machine < 1:
            raise ValueError(
                f"machines and processes_per_machine must be >= 1, got {self.machines}, {self.processes_per_machine}"
            )
        if self.cpus_per_machine < 0 or self.gpus_per_machine < 0:
            raise ValueError("cpus_per_machine and gpus_per_machine must be >= 0")

    def bundles(self) -> list[dict[str, float]]:
        bundle = {"CPU": self.cpus_per_machine, "GPU": self.gpus_per_machine}
        return [{k: v for k, v in bundle.items() if v > 0} or {"CPU": 0.001}] * self.machines

    def command(self, machine_rank: int, main_ip: str, main_port: int, python: str = sys.executable) -> list[str]:
        """The `accelerate launch` command line of one machine."""
        if not 0 <= machine_rank < self.machines:
            raise ValueError(f"machine_rank {machine_rank} outside 0..{self.machines - 1}")
        return [
            python, "-m", "accelerate.commands.launch",
            "--multi_gpu",  # torchrun's launcher, on CPU too (gloo); see the module docstring
            "--num_machines", str(self.machines),
            "--machine_rank", str(machine_rank),
            "--main_process_ip", main_ip,
            "--main_process_port", str(main_port),
            "--num_processes", str(self.machines * self.processes_per_machine),
            *self.accelerate_args,
            "-m", self.module, "--spec", self.spec,
        ]  # fmt: skip


def pipes_closed_exception(line: str) -> dict[str, Any] | None | bool:
    """For a Pipes "closed" message: its exception (a dict) or None when it closed cleanly.
    False for any other line."""
    try:
        message = json.loads(line)
    except ValueError:
        return False
    if not isinstance(message, dict) or PIPES_VERSION_FIELD not in message or message.get("method") != "closed":
        return False
    return (message.get("params") or {}).get("exception")


def is_lost_peer(exception: dict[str, Any]) -> bool:
    """Whether a rank's error (a Pipes exception: name, message) says a collective peer vanished."""
    name, message = str(exception.get("name") or ""), str(exception.get("message") or "")
    return name in LOST_PEER_ERRORS or any(m in message for m in LOST_PEER_MESSAGES)


def _node_address() -> tuple[str, int]:
    """This node's address and a port free on it now (rank 0's rendezvous)."""
    import ray

    ip = ray.util.get_node_ip_address()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return ip, s.getsockname()[1]


def _pump(stream, tag: str, out: queue.Queue) -> None:
    for line in stream:
        out.put((tag, line.rstrip("\n")))
    out.put((tag, None))


def _machine(command: list[str]) -> Iterator[tuple[str, str]]:
    """A Ray task: run one machine's launcher, yield its ("out"|"err", line)s, then its exit code.

    The launcher starts from this (the task's) thread in its own process group: the group is
    killed when the task is cancelled, and PR_SET_PDEATHSIG stops the launcher (torchrun then
    stops its ranks) if this worker dies, so a lost driver leaves no training behind."""
    import ctypes

    def die_with_parent() -> None:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True, preexec_fn=die_with_parent,
    )  # fmt: skip
    lines: queue.Queue = queue.Queue()
    for stream, tag in ((proc.stdout, "out"), (proc.stderr, "err")):
        threading.Thread(target=_pump, args=(stream, tag, lines), daemon=True).start()
    try:
        open_streams = 2
        while open_streams:
            try:  # a short timeout so a cancellation (KeyboardInterrupt) lands promptly
                tag, line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                open_streams -= 1
            else:
                yield tag, line
        yield "out", f"{_EXIT}{proc.wait()}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@dataclass
class MachineOutcome:
    """How one machine's launcher ended."""

    exit_code: int | None = None  # the launcher's exit code
    lost: str | None = None  # why Ray lost the machine (node died, worker crashed, cancelled)


def decide(
    outcomes: Sequence[MachineOutcome], rank0_error: dict[str, Any] | None, rank0_closed_cleanly: bool = False
) -> tuple[int, str]:
    """The job's exit code and a line saying why: 0 when every launcher succeeded, or rank 0 closed
    its session cleanly (it saved the checkpoint and reported it); KILLED_EXIT when a machine was
    lost, or rank 0 reported no error of its own (it was killed) or only a lost peer; else
    FAILED_EXIT (`rank0_error`, rank 0's closing Pipes exception, is the reason)."""
    lost = [f"machine {i}: {o.lost}" for i, o in enumerate(outcomes) if o.lost]
    exits = [o.exit_code for o in outcomes]
    if not lost and all(code == 0 for code in exits):
        return 0, "training finished on every machine"
    if rank0_closed_cleanly:
        return (
            0,
            f"training finished: rank 0 saved and reported it (launcher exit codes {exits}; {lost or 'no machine lost'})",
        )
    if lost or rank0_error is None or is_lost_peer(rank0_error):
        if lost:
            why = "; ".join(lost)
        elif rank0_error is None:
            why = "rank 0 ended without reporting an error of its own"
        else:
            why = f"rank 0 lost a peer ({rank0_error.get('name')}: {str(rank0_error.get('message')).strip()[:200]})"
        return (
            KILLED_EXIT,
            f"training killed ({why}; launcher exit codes {exits}): a retry resumes from the last checkpoint",
        )
    return FAILED_EXIT, f"training failed: {rank0_error.get('name')}: {str(rank0_error.get('message')).strip()[:500]}"


class _Driver:
    """Prints the machines' output, holds rank 0's error back, decides killed or failed."""

    def __init__(self, launch: ClusterLaunch):
        self.launch = launch
        self.lock = threading.Lock()
        self.held: dict[str, Any] | None = None  # rank 0's closing message, when it carries an error
        self.held_line: str | None = None
        self.closed_cleanly = False
        self.outcomes = [MachineOutcome() for _ in range(launch.machines)]
        self.tasks: list[Any] = []

    def say(self, line: str) -> None:
        with self.lock:
            print(line, flush=True)

    def follow(self, rank: int) -> None:
        import ray

        try:
            for ref in self.tasks[rank]:
                tag, line = ray.get(ref)
                if line.startswith(_EXIT):
                    self.outcomes[rank].exit_code = int(line[len(_EXIT) :])
                elif rank == 0 and tag == "out":
                    exception = pipes_closed_exception(line)
                    if exception:
                        self.held, self.held_line = exception, line
                    else:
                        self.closed_cleanly = self.closed_cleanly or exception is None
                        self.say(line)
                else:
                    self.say(f"[machine {rank}] {line}")
        except ray.exceptions.TaskCancelledError:
            self.outcomes[rank].lost = "cancelled after another machine was lost"
        except ray.exceptions.RayTaskError as err:  # the launcher could not start: a real error
            self.say(f"[machine {rank}] launcher task failed: {err}")
            self.outcomes[rank].exit_code = FAILED_EXIT
        except ray.exceptions.RayError as err:  # node died, worker crashed, object lost
            self.outcomes[rank].lost = f"{type(err).__name__}: {str(err).split('. ')[0]}"
            self.say(f"[machine {rank}] lost: {self.outcomes[rank].lost}")
            for other, task in enumerate(self.tasks):
                if other != rank:
                    ray.cancel(task)

    def verdict(self) -> int:
        code, why = decide(self.outcomes, self.held, self.closed_cleanly)
        self.say(why)
        if code == FAILED_EXIT and self.held_line:
            self.say(self.held_line)  # rank 0's closing message: the Dagster side sees the error
        return code


def run(launch: ClusterLaunch) -> int:
    """Run one training across the cluster this process is connected to (`ray.init()` first)."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    group = placement_group(launch.bundles(), strategy="STRICT_SPREAD")
    try:
        try:
            ray.get(group.ready(), timeout=launch.placement_timeout_s)
        except ray.exceptions.GetTimeoutError:
            alive = sum(1 for n in ray.nodes() if n.get("Alive"))
            print(
                f"the cluster could not place {launch.machines} machines of {launch.bundles()[0]} on distinct nodes "
                f"within {launch.placement_timeout_s:.0f} s ({alive} nodes alive)",
                flush=True,
            )
            return KILLED_EXIT  # a replaced node (KubeRay restarts pods) makes a retry succeed

        def in_bundle(i: int, fn, **options):
            strategy = PlacementGroupSchedulingStrategy(placement_group=group, placement_group_bundle_index=i)
            resources = launch.bundles()[i]
            return ray.remote(fn).options(
                scheduling_strategy=strategy,
                num_cpus=resources.get("CPU", 0),
                num_gpus=resources.get("GPU", 0),
                max_retries=0,  # a machine never restarts alone: the whole training retries, resuming
                **options,
            )

        main_ip, main_port = ray.get(in_bundle(0, _node_address).remote())
        driver = _Driver(launch)
        driver.say(f"rank 0 rendezvous at {main_ip}:{main_port}; {launch.machines} machines")
        driver.tasks = [
            in_bundle(i, _machine, num_returns="streaming").remote(launch.command(i, main_ip, main_port))
            for i in range(launch.machines)
        ]
        followers = [threading.Thread(target=driver.follow, args=(i,)) for i in range(launch.machines)]
        for thread in followers:
            thread.start()
        for thread in followers:
            thread.join()
        return driver.verdict()
    finally:
        remove_placement_group(group)


def parse_args(argv: Sequence[str] | None = None) -> ClusterLaunch:
    parser = argparse.ArgumentParser(
        prog="python -m kto_pipeline.train.cluster_launch",
        description="One training across the machines of a Ray cluster (run as a Ray job).",
    )
    parser.add_argument("--spec", required=True, help="training spec JSON, in storage every node sees")
    parser.add_argument("--module", required=True, help="training process module, e.g. resources.trainer_process")
    parser.add_argument("--machines", type=int, default=2)
    parser.add_argument("--processes-per-machine", type=int, default=1)
    parser.add_argument("--cpus-per-machine", type=float, default=1.0)
    parser.add_argument("--gpus-per-machine", type=float, default=0.0)
    parser.add_argument("--placement-timeout-s", type=float, default=300.0)
    parser.add_argument("accelerate_args", nargs="*", help="after --: extra accelerate launch arguments")
    ns = parser.parse_args(argv)
    return ClusterLaunch(
        spec=ns.spec,
        module=ns.module,
        machines=ns.machines,
        processes_per_machine=ns.processes_per_machine,
        cpus_per_machine=ns.cpus_per_machine,
        gpus_per_machine=ns.gpus_per_machine,
        accelerate_args=tuple(ns.accelerate_args),
        placement_timeout_s=ns.placement_timeout_s,
    )


def main(argv: Sequence[str] | None = None) -> int:
    launch = parse_args(argv)
    import ray

    ray.init(log_to_driver=False)  # the job's cluster (RAY_ADDRESS); our tasks' lines come back as data
    try:
        return run(launch)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
