"""The pieces of the multi-node launch that need no cluster: each machine's accelerate command line,
the placement bundles, and the rule that tells a lost machine or peer (retried, resumed) from an
error inside training (not retried). The Ray path itself: tests/test_ray_training.py."""

import json
import subprocess
import sys
import textwrap

import pytest

from kto_pipeline.devtools.ray_cluster import free_port
from kto_pipeline.train.cluster_launch import (
    FAILED_EXIT,
    KILLED_EXIT,
    PIPES_VERSION_FIELD,
    ClusterLaunch,
    MachineOutcome,
    decide,
    is_lost_peer,
    parse_args,
    pipes_closed_exception,
)


def test_each_machine_gets_its_rank_and_rank_zeros_rendezvous():
    launch = ClusterLaunch(
        spec="/shared/spec.json", module="resources.trainer_process", machines=3, processes_per_machine=2
    )
    command = launch.command(2, "10.0.0.5", 29500, python="python")
    assert command[:4] == ["python", "-m", "accelerate.commands.launch", "--multi_gpu"]
    args = dict(zip(command[4:14:2], command[5:14:2]))
    assert args == {
        "--num_machines": "3",
        "--machine_rank": "2",
        "--main_process_ip": "10.0.0.5",
        "--main_process_port": "29500",
        "--num_processes": "6",  # accelerate counts every process of every machine
    }
    assert command[-4:] == ["-m", "resources.trainer_process", "--spec", "/shared/spec.json"]
    with pytest.raises(ValueError, match="machine_rank 3"):
        launch.command(3, "10.0.0.5", 29500)


def test_bundles_reserve_each_machines_cpus_and_gpus():
    assert ClusterLaunch(spec="s", module="m", machines=2).bundles() == [{"CPU": 1.0}, {"CPU": 1.0}]
    gpu = ClusterLaunch(spec="s", module="m", machines=2, cpus_per_machine=8, gpus_per_machine=1)
    assert gpu.bundles() == [{"CPU": 8, "GPU": 1}] * 2
    with pytest.raises(ValueError, match="machines"):
        ClusterLaunch(spec="s", module="m", machines=0)


def test_the_entry_point_reads_its_arguments_and_passes_extra_accelerate_arguments():
    launch = parse_args(["--spec", "s.json", "--module", "m", "--machines", "4", "--", "--mixed_precision", "bf16"])
    assert launch.machines == 4 and launch.accelerate_args == ("--mixed_precision", "bf16")


def _closed(exception=None) -> str:
    return json.dumps({PIPES_VERSION_FIELD: "0.1", "method": "closed", "params": {"exception": exception}})


def test_closing_messages_are_told_apart_from_other_lines():
    error = {"name": "ValueError", "message": "no label column"}
    assert pipes_closed_exception(_closed(error)) == error
    assert pipes_closed_exception(_closed()) is None
    assert pipes_closed_exception(json.dumps({PIPES_VERSION_FIELD: "0.1", "method": "log", "params": {}})) is False
    assert pipes_closed_exception("step 4: {}") is False


PEER_KILLED = """
    import json, os, signal, sys, time
    import torch, torch.distributed as dist
    rank = int(sys.argv[1])
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{sys.argv[2]}", rank=rank, world_size=2)
    t = torch.ones(4)
    dist.all_reduce(t)
    if rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    try:
        for _ in range(200):
            dist.all_reduce(t)
            time.sleep(0.05)
    except Exception as err:
        print(json.dumps({"name": type(err).__name__, "message": str(err)}))
"""


def test_the_error_a_rank_sees_when_its_gloo_peer_is_sigkilled_counts_as_a_lost_peer():
    port, script = str(free_port()), textwrap.dedent(PEER_KILLED)
    peer = subprocess.Popen([sys.executable, "-c", script, "1", port])
    try:
        out = subprocess.run([sys.executable, "-c", script, "0", port], capture_output=True, text=True, timeout=120)
    finally:
        peer.wait(timeout=60)
    error = json.loads(out.stdout.strip().splitlines()[-1])
    assert is_lost_peer(error), error
    assert not is_lost_peer({"name": "ValueError", "message": "the training rows lack a label column"})


def test_a_lost_machine_or_peer_is_killed_and_an_error_of_rank_zero_is_a_failure():
    ok, failed = MachineOutcome(exit_code=0), MachineOutcome(exit_code=1)
    lost = MachineOutcome(lost="NodeDiedError: Task failed because the node it was running on is dead")
    value_error = {"name": "ValueError", "message": "no label column"}
    peer = {"name": "RuntimeError", "message": "Read error [10.0.0.5]:6018: Connection reset by peer"}
    assert decide([ok, ok], None)[0] == 0
    assert decide([failed, lost], value_error)[0] == KILLED_EXIT  # the node loss explains rank 0's error
    assert decide([failed, failed], peer)[0] == KILLED_EXIT  # a rank on machine 1 was killed
    assert decide([failed, failed], None)[0] == KILLED_EXIT  # rank 0 itself was killed
    code, why = decide([failed, failed], value_error)
    assert code == FAILED_EXIT and "ValueError: no label column" in why
    assert decide([ok, failed], None, rank0_closed_cleanly=True)[0] == 0  # saved and reported before
