"""``ports.StartOnce`` on Powertools Idempotency (DynamoDB): a job starts once per (user, job id)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.idempotency.serialization.pydantic import PydanticSerializer

from comfyroute.jobs.submit import PreparedJob, StartAnswer
from comfyroute.ports import DifferentRequest, StartInProgress

# Fixed, so the key does not depend on where the function is defined: key_prefix#hash.
KEY_PREFIX = "start_job"


class IdempotentStart:
    def __init__(
        self,
        table_name: str,
        *,
        expires_after_seconds: int,
        lambda_context: Callable[[], Any] = lambda: None,
    ) -> None:
        self._lambda_context = lambda_context
        self.config = IdempotencyConfig(
            event_key_jmespath="[user_id, job_id]",
            # The same job id with another request is refused, not answered with the old job.
            payload_validation_jmespath="request_hash",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=expires_after_seconds,
        )
        # The PreparedJob itself is the payload (Powertools hashes its JSON dump) and the
        # StartAnswer model is stored and replayed: nothing goes through a hand-made dict.
        self._once = idempotent_function(
            data_keyword_argument="request",
            persistence_store=DynamoDBPersistenceLayer(table_name=table_name),
            config=self.config,
            output_serializer=PydanticSerializer(StartAnswer),
            key_prefix=KEY_PREFIX,
        )(_run)

    def __call__(self, request: PreparedJob, start: Callable[[PreparedJob], StartAnswer]) -> StartAnswer:
        context = self._lambda_context()
        if context is not None:
            # Lets Idempotency expire the in-progress record if this invocation times out.
            self.config.register_lambda_context(context)
        try:
            answer: StartAnswer = self._once(request=request, start=start)
        except IdempotencyAlreadyInProgressError:
            raise StartInProgress(request.job_id) from None
        except IdempotencyValidationError:
            raise DifferentRequest(request.job_id) from None
        return answer


def _run(*, request: PreparedJob, start: Callable[[PreparedJob], StartAnswer]) -> StartAnswer:
    return start(request)
