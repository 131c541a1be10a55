"""Running distilabel's pipeline (LoadDataFromDicts → ChatGeneration) in a child interpreter.

distilabel 1.5.3 needs care to run inside a pipeline step (details at `run_chat_generation`
and `_child_main`):
- worker processes: distilabel forks its step workers from the process that runs the
  pipeline; if that process has used torch's OpenMP thread pool before, the forked worker
  deadlocks in libgomp. The pipeline therefore runs in a fresh child interpreter, which also
  keeps distilabel's process-wide side effects (root logger handlers and level, a SIGINT
  handler it never restores, env vars) out of the caller (Dagster, pytest, a plain script).
- cache: `Pipeline(cache_dir=...)` plus DISTILABEL_CACHE_DIR, both a fresh folder under the
  caller's directory (batch files are written even with `use_cache=False`); nothing goes to
  ~/.cache/distilabel.
- no Distiset: `Pipeline.run` ends with `create_distiset`, which writes the datasets cache
  under ~ and fetches BibTeX citations from arxiv2bibtex.org with an untimed `requests.get`.
  In the child it is replaced by a stub and the leaf step's parquet files are read directly.
- logs: DISTILABEL_LOG_LEVEL (default WARNING here) for the child and its workers; the
  child's console output is forwarded to this module's logger.

The api_key of an OpenAI-compatible endpoint reaches the child over stdin only, is kept out
of reprs and logs, and distilabel leaves any `api_key` field out of the pipeline.yaml it
writes (utils/serialization.py:197).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kto_pipeline.curate.synthesis.config import TeacherConfig
from kto_pipeline.curate.synthesis.llm import build_llm, import_distilabel

__all__ = ["PIPELINE_NAME", "ChatGenerationRun", "run_chat_generation"]

logger = logging.getLogger(__name__)

PIPELINE_NAME = "kto-synthetic-topup"
LOAD_STEP = "load_requests"
TEACHER_STEP = "teacher"

RESULT_FILE = "result.json"
_PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # the checkout root, above kto_pipeline/
# Appended, not prepended: the checkout root also holds top-level `assets`, `resources` and
# `tests` folders, which must not shadow anything. An installed kto_pipeline is found first;
# `_child_main` checks it is this very file.
_CHILD_ENTRY = (
    f"import sys; sys.path.append({str(_PACKAGE_ROOT)!r}); "
    "from kto_pipeline.curate.synthesis.child import _child_main; _child_main()"
)


@dataclass
class ChatGenerationRun:
    generations: dict[str, str | None]  # request_id → text (None: the LLM call failed)
    timings: dict[str, float]  # wall_s (parent), child_import_s, pipeline_s (inside the child)


# distilabel logs this when a step cannot load (local.py, base.py), then tears the pipeline down;
# that teardown has been seen to hang on a dead worker (its manager waiting forever).
LOAD_FAILED = "Failed to load"
LOAD_FAILURE_GRACE_S = 30.0
# After the child has written its result it has nothing left to do; an exit that takes longer
# than this (a worker or manager process it waits for) is cut short and the result kept.
EXIT_GRACE_S = 30.0


class GenerationTimeout(TimeoutError):
    """One generation child ran past its time limit (killed, with its workers)."""


def _pump(stream: Any, level: int, tail: deque, load_failed: threading.Event) -> None:
    """Forward the child's console output (distilabel's log lines) to our logger."""
    for line in stream:
        line = line.rstrip()
        if line:
            tail.append(line)
            logger.log(level, "%s", line)
            if LOAD_FAILED in line:
                load_failed.set()


def _wait(
    proc: subprocess.Popen, timeout_s: float | None, load_failed: threading.Event, tail: deque, result_path: Path
) -> int:
    """The child's exit code (0 once its result is written and it lingers EXIT_GRACE_S);
    GenerationTimeout past `timeout_s`; RuntimeError when a step failed to load and the child has
    not exited LOAD_FAILURE_GRACE_S later. The caller kills the child's group in every case."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    failed_at = done_at = None
    while True:
        try:
            return proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if done_at is None and result_path.is_file():
            done_at = now
        if done_at is not None and now - done_at > EXIT_GRACE_S:
            logger.warning("the generation child wrote its result but did not exit in %.0f s; ending it", EXIT_GRACE_S)
            return 0
        if deadline is not None and now > deadline:
            raise GenerationTimeout(f"synthetic generation did not finish within {timeout_s} s")
        if failed_at is None and load_failed.is_set():
            failed_at = now
        if failed_at is not None and now - failed_at > LOAD_FAILURE_GRACE_S:
            raise RuntimeError(
                "synthetic generation failed: a distilabel step could not load and the pipeline did not "
                f"exit within {LOAD_FAILURE_GRACE_S:.0f} s; its last output:\n" + "\n".join(list(tail))
            )


def _kill_group(proc: subprocess.Popen) -> None:
    """End the child and the distilabel workers it forked (its own process group)."""
    if proc.poll() is not None:
        # The child has exited; a worker it left behind keeps the group (its pid) alive, and
        # goes with it. An empty group is ESRCH.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def run_chat_generation(
    records: Sequence[Mapping[str, Any]],
    teacher: TeacherConfig,
    cache_dir: str | os.PathLike,
    *,
    log_level: str = "WARNING",
    keep_cache: bool = False,
    timeout_s: float | None = None,
    attempts: int = 1,
) -> ChatGenerationRun:
    """Run LoadDataFromDicts → ChatGeneration over `records` ({"request_id", "messages"}).

    The pipeline runs in a fresh Python child (see `_child_main`) because distilabel forks its
    step workers from the process that calls `Pipeline.run`: after that process has used
    torch's OpenMP threads (an embedding or scoring step earlier in the same Dagster process,
    or another test under pytest), the forked worker deadlocks in its first parallel op
    (observed: gomp_team_barrier_wait_end in libgomp). A fresh child has never started that
    thread pool. It also keeps distilabel's process-wide changes (root logger handlers and
    level, a SIGINT handler it never restores, env vars, our patches) out of the caller.

    The request payload, api key included, goes over the child's stdin: never argv, env or
    disk. distilabel's cache, the child's working directory and its result file are a fresh
    folder inside `cache_dir`, deleted afterwards unless `keep_cache`. The child's console
    output (distilabel's log lines at `log_level` and above) is forwarded to this module's
    logger at that level.

    `timeout_s` bounds one child; a child past it is killed with its workers and, up to
    `attempts` children in all, a fresh one starts: distilabel 1.5.3's pipeline has been seen
    to hang in its worker teardown with no output (CI, about one run in a few hundred), and a
    rerun of the same requests is the cure. A step that failed to load is not retried.
    """
    started = time.perf_counter()
    if not records:
        return ChatGenerationRun({}, {"wall_s": 0.0})
    level = log_level.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError(f"log_level must be a logging level name, got {log_level!r}")
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, attempts + 1):
        try:
            result = _run_child(records, teacher, cache_dir, level, keep_cache, timeout_s)
            break
        except GenerationTimeout:
            if attempt == attempts:
                raise
            logger.warning("synthetic generation attempt %d of %d timed out; starting it again", attempt, attempts)
    timings = {"wall_s": round(time.perf_counter() - started, 3), **result["timings"], "attempts": attempt}
    return ChatGenerationRun(result["generations"], timings)


def _run_child(
    records: Sequence[Mapping[str, Any]],
    teacher: TeacherConfig,
    cache_dir: Path,
    level: str,
    keep_cache: bool,
    timeout_s: float | None,
) -> dict[str, Any]:
    """One generation child, start to finish: its result.json ({"generations", "timings"})."""
    run_dir = Path(tempfile.mkdtemp(prefix="distilabel-", dir=cache_dir)).resolve()
    payload = json.dumps(
        {
            "records": [{"request_id": str(r["request_id"]), "messages": list(r["messages"])} for r in records],
            "teacher": asdict(teacher),
            "run_dir": str(run_dir),
            "module_file": str(Path(__file__).resolve()),
        }
    )
    env = dict(os.environ)
    env.update(
        {
            "DISTILABEL_LOG_LEVEL": level,  # read by distilabel's setup_logging in the child and its workers
            "DISTILABEL_CACHE_DIR": str(run_dir),  # also covers a Pipeline rebuilt from YAML without cache_dir
            "COLUMNS": "200",  # Rich wraps log lines at 80 columns when not writing to a terminal
        }
    )
    tail: deque = deque(maxlen=60)
    result_path = run_dir / RESULT_FILE
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD_ENTRY],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=env,
            cwd=run_dir,
            start_new_session=True,  # its own process group: one killpg ends it and its workers
        )
        try:
            load_failed = threading.Event()
            reader = threading.Thread(
                target=_pump, args=(proc.stdout, logging.getLevelName(level), tail, load_failed), daemon=True
            )
            reader.start()
            try:
                proc.stdin.write(payload)
                proc.stdin.close()
            except BrokenPipeError:
                pass  # the child died at startup; its exit code and output say why
            rc = _wait(proc, timeout_s, load_failed, tail, result_path)
        finally:
            _kill_group(proc)  # workers left behind, a hung child, KeyboardInterrupt / run termination
        reader.join(timeout=30)
        if rc != 0:
            raise RuntimeError(
                f"synthetic generation failed (child exit code {rc}); its last output:\n" + "\n".join(tail)
            )
        if not result_path.is_file():
            raise RuntimeError(f"synthetic generation child exited without writing {RESULT_FILE}")
        return json.loads(result_path.read_text(encoding="utf-8"))
    finally:
        if not keep_cache:
            shutil.rmtree(run_dir, ignore_errors=True)


def _no_distiset(*args: Any, **kwargs: Any) -> Any:
    """Stands in for distilabel's create_distiset: no datasets cache, no citation lookup."""
    from distilabel.distiset import Distiset

    return Distiset()


def _child_main() -> None:
    """The generation child: payload on stdin, result.json in the run folder.

    A throwaway process, so its patches are not undone:
    - `create_distiset` is replaced in both modules that call it (pipeline/local.py:255 at the
      end of every run, pipeline/base.py:398 on a cache hit). The real one loads the outputs
      with `datasets.load_dataset` (writes ~/.cache/huggingface/datasets) and calls
      `_grab_citations` (distiset.py:749), whose `get_bibtex` (utils/docstring.py:240) does an
      untimed `requests.get` to arxiv2bibtex.org for any step whose docstring cites arXiv.
    - `_grab_citations` itself is stubbed too, for any other path to a Distiset.
    The outputs are read from the leaf step's parquet files instead.
    """
    payload = json.loads(sys.stdin.read())
    if str(Path(__file__).resolve()) != payload["module_file"]:
        raise RuntimeError(f"the child imported {__file__}, the caller runs {payload['module_file']}")
    started = time.perf_counter()
    import_distilabel()
    import distilabel.distiset
    import distilabel.pipeline.base
    import distilabel.pipeline.local
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts
    from distilabel.steps.tasks import ChatGeneration

    distilabel.pipeline.local.create_distiset = _no_distiset
    distilabel.pipeline.base.create_distiset = _no_distiset
    distilabel.distiset._grab_citations = lambda dag: []
    # distilabel 1.5.3 reads `model_fields` on instances, which pydantic >= 2.11 deprecates:
    # tens of thousands of warnings per run. The workers inherit the filter through fork.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"distilabel\.")
    imported = time.perf_counter()

    run_dir = Path(payload["run_dir"])
    teacher = TeacherConfig(**payload["teacher"])
    quiet = os.environ.get("DISTILABEL_LOG_LEVEL", "WARNING") != "DEBUG"
    with Pipeline(name=PIPELINE_NAME, cache_dir=run_dir) as pipeline:
        load = LoadDataFromDicts(name=LOAD_STEP, data=payload["records"], batch_size=teacher.batch_size)
        task = ChatGeneration(
            name=TEACHER_STEP, llm=build_llm(teacher, quiet=quiet), input_batch_size=teacher.batch_size
        )
        load >> task
    pipeline.run(use_cache=False)
    generations = _read_outputs(pipeline._cache_location["data"] / "steps_outputs" / TEACHER_STEP)
    timings = {"child_import_s": round(imported - started, 3), "pipeline_s": round(time.perf_counter() - imported, 3)}
    result = {"generations": generations, "timings": timings}
    tmp = run_dir / (RESULT_FILE + ".tmp")
    tmp.write_text(json.dumps(result), encoding="utf-8")
    tmp.replace(run_dir / RESULT_FILE)
    # Nothing is left to do: skip the interpreter's exit, whose multiprocessing hook joins any
    # distilabel worker or manager process still alive (the parent ends the group anyway).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _read_outputs(out_dir: Path) -> dict[str, str | None]:
    import pyarrow.parquet as pq

    result: dict[str, str | None] = {}
    for path in sorted(out_dir.glob("*.parquet")):
        table = pq.read_table(path, columns=["request_id", "generation"])
        for rid, gen in zip(table.column("request_id").to_pylist(), table.column("generation").to_pylist()):
            result[rid] = gen
    return result
