"""Turn pydantic validation errors into the messages users see in conditions and events."""

from __future__ import annotations

import pydantic


def describe_validation_error(error: pydantic.ValidationError) -> str:
    """One clause per problem, each naming the field as a user writes it: `spec.sync.port: ...`."""
    parts = []
    for item in error.errors():
        location = ".".join(str(part) for part in ("spec", *item["loc"]))
        message = item["msg"].removeprefix("Value error, ")
        parts.append(message if message.startswith("spec.") else f"{location}: {message}")
    return "; ".join(parts)
