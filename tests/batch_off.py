"""The batch-jobs half of ``GatewayControl`` for test fakes of the daemon that have none."""

from __future__ import annotations

from typing import Any

from gateway.batch.jobspec import BatchRefused


class NoBatchJobs:
    """``/v1/transcriptions`` answers 503, as a daemon without ``[batch] root`` does."""

    async def create_transcription(self, body: Any) -> dict[str, Any]:
        raise BatchRefused(503, "batch jobs are off")

    async def transcriptions(self, status: str | None) -> list[dict[str, Any]]:
        raise BatchRefused(503, "batch jobs are off")

    async def transcription(self, job_id: str) -> dict[str, Any] | None:
        raise BatchRefused(503, "batch jobs are off")

    async def delete_transcription(self, job_id: str) -> tuple[int, dict[str, Any]] | None:
        raise BatchRefused(503, "batch jobs are off")
