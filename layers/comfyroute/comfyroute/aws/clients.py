"""boto3 clients, created once per process (Lambda reuses them across invocations).

boto3 reads ``AWS_ENDPOINT_URL`` itself, which is how `comfyroute dev` points every client
at its embedded moto server without the handlers knowing.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    # boto3-stubs (a development dependency): typed calls where the adapters make them.
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient
    from mypy_boto3_dynamodb import DynamoDBServiceResource
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

_BOTO_CONFIG = BotoConfig(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)


@cache
def dynamodb() -> DynamoDBServiceResource:
    return boto3.resource("dynamodb", config=_BOTO_CONFIG)


@cache
def s3() -> S3Client:
    return boto3.client("s3", config=BotoConfig(signature_version="s3v4", retries={"mode": "standard"}))


@cache
def stepfunctions() -> SFNClient:
    return boto3.client("stepfunctions", config=_BOTO_CONFIG)


@cache
def management_api(endpoint_url: str) -> ApiGatewayManagementApiClient:
    # Throttling is left to the caller (notify raises it to Step Functions, which retries
    # with backoff), so only a couple of quick SDK retries here.
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint_url,
        config=BotoConfig(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=3, read_timeout=10),
    )


@cache
def lambda_client() -> LambdaClient:
    # $default hands commands on with asynchronous invokes: quick, and retried by Lambda itself.
    return boto3.client("lambda", config=BotoConfig(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3))


def reset_clients() -> None:
    """Forget cached clients (tests switch moto mocks and environments between cases)."""
    for fn in (dynamodb, s3, stepfunctions, management_api, lambda_client):
        fn.cache_clear()


def error_code(exc: ClientError) -> str:
    """The AWS error code of a failed call (``ConditionalCheckFailedException``, ...), or ""."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: ClientError) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status if isinstance(status, int) else None
