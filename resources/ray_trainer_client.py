"""dagster-ray's `PipesRayJobClient`, telling a killed training on a Ray cluster from a failed one.

The trainer resource's `launcher: ray` submits `python -m kto_pipeline.train.cluster_launch` as a
Ray job (one `accelerate launch` per machine; see that module). dagster-ray's client submits it
with the Pipes bootstrap variables in the job's runtime env, tails the job's log for rank 0's
Pipes messages, and raises a plain `RuntimeError` when the job ends FAILED or STOPPED, whatever
the reason. The job driver has already sorted the reasons out: it forwards rank 0's closing
message with an error only for an error inside training, and drops it when a machine or rank was
lost. So, as for a local process (resources/trainer.py): a failed job whose Pipes session closed
raises `dg.Failure(allow_retries=False)`; one whose session never closed raises
`TrainingProcessKilled`, which the asset's retry policy retries, resuming from the checkpoint in
shared storage.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
from dagster_pipes import PipesParams
from dagster_ray.core.pipes import PipesRayJobClient, PipesRayJobMessageReader, SubmitJobParams

from resources.trainer import TrainingProcessKilled


class _SessionAwareReader(PipesRayJobMessageReader):
    """The stock reader, keeping the session's message handler so the client can ask, once the
    session has ended (all log lines read), whether the training closed it."""

    handler: dg.PipesMessageHandler | None = None

    @contextmanager
    def read_messages(self, handler: dg.PipesMessageHandler) -> Iterator[PipesParams]:
        self.handler = handler
        with super().read_messages(handler) as params:
            yield params


class RayTrainerPipesClient(PipesRayJobClient):
    """`PipesRayJobClient` whose failures are `TrainingProcessKilled` (retried) or a `dg.Failure`
    that bypasses the retry policy."""

    def __init__(self, address: str | None, **kwargs: Any):
        self._reader = _SessionAwareReader()
        super().__init__(address=address, message_reader=self._reader, **kwargs)

    def run(  # type: ignore[override]
        self,
        *,
        context: dg.AssetExecutionContext | dg.OpExecutionContext,
        submit_job_params: SubmitJobParams,
        extras: dict[str, Any] | None = None,
    ) -> dg.PipesClientCompletedInvocation:
        try:
            return super().run(context=context, submit_job_params=submit_job_params, extras=extras)
        except RuntimeError as err:  # the job ended FAILED or STOPPED; the session has been read to its end
            if "[pipes] Ray job" not in str(err):
                raise
            closed = self._reader.handler is not None and self._reader.handler.received_closed_message
            if closed:
                raise dg.Failure(
                    description=f"the training failed on the Ray cluster; see its error above. Not retried: a retry "
                    f"would fail the same way.\n{err}",
                    allow_retries=False,
                ) from None
            raise TrainingProcessKilled(
                f"the training on the Ray cluster ended without closing its Pipes session: a machine or rank was "
                f"lost (node died, process killed). Its last saved checkpoint is kept in shared storage; a retry "
                f"resumes from it.\n{err}"
            ) from None
