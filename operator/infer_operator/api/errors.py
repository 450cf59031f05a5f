"""Turn pydantic validation errors into the messages users see in conditions and events."""

from __future__ import annotations

import pydantic

from infer_operator.api.base import RuleViolation


def describe_validation_error(error: pydantic.ValidationError) -> str:
    """One clause per problem, each naming the field as a user writes it: `spec.sync.port: ...`.

    A broken cross-field rule is located at its field path, as the API server reports a CEL rule.
    """
    parts = []
    for item in error.errors():
        location = ".".join(str(part) for part in ("spec", *item["loc"]))
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, RuleViolation) and cause.field_path:
            location += cause.field_path
        message = item["msg"].removeprefix("Value error, ")
        parts.append(message if message.startswith("spec.") else f"{location}: {message}")
    return "; ".join(parts)
