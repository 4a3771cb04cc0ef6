"""The backend's key of a client's job id. Standard library only: $connect (resume_job) uses it."""

from __future__ import annotations

import hashlib


def job_key(user_id: str, job_id: str) -> str:
    """The job's key in the backend (jobs table, Step Functions execution name, S3 prefix,
    ComfyUI prompt id) for the client's ``job_id``: scoped to the user, so one user's ids are
    neither visible to nor blocked by another's. At most 80 characters of the job id alphabet
    (an execution name's limit); the client's id leads, so logs stay readable."""
    digest = hashlib.sha256(f"{user_id}\0{job_id}".encode()).hexdigest()[:32]
    return f"{job_id[:47]}-{digest}"
