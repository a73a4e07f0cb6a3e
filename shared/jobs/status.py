"""The job's status names, internal and public: the only place they are spelled.

    queued ─submit─▶ submitted ─poll─▶ running ─poll─▶ settling ─▶ ingesting ─▶ completed
       └────────────────┴─────────────────┴──▶ failed | cancelled (hold released)
                                                     settling ──▶ failed (hold released)
                                                                 ingesting ──▶ failed (refunded)

The API shows five public statuses; every internal one maps to exactly one of them.
"""

from __future__ import annotations

from enum import StrEnum


class PublicStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """Completed, failed or cancelled: the job will not change again."""
        return self is not PublicStatus.QUEUED and self is not PublicStatus.PROCESSING

    @property
    def internal(self) -> tuple[JobStatus, ...]:
        """The internal statuses shown as this one (for filtering lists)."""
        return tuple(status for status in JobStatus if status.public is self)


class JobStatus(StrEnum):
    QUEUED = "queued"
    SUBMITTED = "submitted"
    RUNNING = "running"
    SETTLING = "settling"
    INGESTING = "ingesting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def public(self) -> PublicStatus:
        if self in (JobStatus.SUBMITTED, JobStatus.RUNNING, *DELIVERED):
            return PublicStatus.PROCESSING
        return PublicStatus(self.value)

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


ACTIVE_AT_PROVIDER = (JobStatus.SUBMITTED, JobStatus.RUNNING)
CANCELLABLE = (JobStatus.QUEUED, *ACTIVE_AT_PROVIDER)
# The provider delivered: the job is paid for and on its way into the library.
DELIVERED = (JobStatus.SETTLING, JobStatus.INGESTING)
TERMINAL = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)
