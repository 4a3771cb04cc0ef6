"""Per-user executor credentials from Secrets Manager, through Powertools Parameters (cached)."""

from __future__ import annotations

from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError
from pydantic import ValidationError

from comfyroute.credentials import Credentials, CredentialsError
from comfyroute.text import remember_secrets

CACHE_SECONDS = 300


def secret_names(prefix: str, user_id: str) -> tuple[str, str]:
    return f"{prefix}/users/{user_id}", f"{prefix}/default"


def load_credentials(user_id: str, prefix: str = "comfyroute") -> Credentials:
    """The user's own secret, else the deployment's default one, else built-in defaults."""
    for name in secret_names(prefix, user_id):
        try:
            value = parameters.get_secret(name, transform="json", max_age=CACHE_SECONDS)
        except TransformParameterError:
            raise CredentialsError(f"secret {name} is not a JSON object") from None
        except GetParameterError as exc:
            # Only a missing secret falls through to the next one; anything else (access
            # denied, throttling) is a real failure the caller must see.
            if "ResourceNotFoundException" in str(exc):
                continue
            raise CredentialsError(f"cannot read secret {name}: {type(exc.__cause__ or exc).__name__}") from None
        try:
            credentials = Credentials.model_validate(value)
            if name != secret_names(prefix, user_id)[0]:
                credentials = credentials.model_copy(update={"shared": True})
            remember_secrets(credentials.secret_values())
            return credentials
        except ValidationError as exc:
            fields = ", ".join(str(e["loc"][0]) for e in exc.errors(include_url=False) if e["loc"])
            raise CredentialsError(f"secret {name} has invalid fields: {fields}") from None
    return Credentials(shared=True)


class SecretsManagerCredentials:
    """``ports.CredentialSource``: secret ``{prefix}/users/{user_id}``, else ``{prefix}/default``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def load(self, user_id: str) -> Credentials:
        return load_credentials(user_id, self.prefix)
