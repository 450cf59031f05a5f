"""What every API model shares: wire naming, cross-field rules declared once, Secret references.

A cross-field rule is written once, as a `Rule`: its CEL expression goes into the CRD (so the API
server rejects a bad object and names the field), and its Python check runs when the operator
parses an object (so objects that bypassed the API server, or were stored under an older CRD,
are caught with the same message). Registry backends import this module to declare their spec
section, so it must not import anything else of the API.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RuleViolation(ValueError):
    """A cross-field rule does not hold; `field_path` (e.g. ".args") refines where, like CEL's fieldPath."""

    def __init__(self, message: str, field_path: str | None):
        super().__init__(message)
        self.field_path = field_path


@dataclass(frozen=True)
class Rule:
    """One cross-field rule: `cel` for the API server, `holds` for the operator, one `message`.

    `holds(model)` must say the same as `cel` evaluated with `self` = the model's object.

    `ratchet`: objects stored before the rule existed keep working. The API server then enforces
    it on create and on updates that bring the violation in, not on updates of an object that
    already broke it (its finalizers could otherwise never be removed, nor a /scale go through);
    the operator does not refuse such an object but reports it (`ratcheted`).
    """

    cel: str
    message: str
    holds: Callable[[Any], bool]
    field_path: str | None = None
    ratchet: bool = False

    def as_cel(self) -> dict[str, Any]:
        rule = self.cel
        validation: dict[str, Any] = {"rule": rule, "message": self.message}
        if self.ratchet:
            # `self` in the rule, read on the old object instead (the rules here name it only as
            # `self.`, so this rewrite is exact).
            old = self.cel.replace("self.", "oldSelf.value().")
            validation["rule"] = f"({rule}) || (oldSelf.hasValue() && !({old}))"
            validation["optionalOldSelf"] = True
        if self.field_path:
            validation["fieldPath"] = self.field_path
        return validation


def _schema_extra(schema: dict[str, Any], model: type[BaseModel]) -> None:
    for key, value in getattr(model, "schema_extra", {}).items():
        schema[key] = value
    rules = getattr(model, "rules", ())
    if rules:
        schema["x-kubernetes-validations"] = [rule.as_cel() for rule in rules]


class Model(BaseModel):
    """Base: camelCase on the wire, snake_case in Python, unknown fields rejected.

    Subclasses declare `rules` (checked here and emitted as CEL) and `schema_extra` (more
    schema keywords, such as a description).
    """

    model_config = ConfigDict(populate_by_name=True, extra="forbid", json_schema_extra=_schema_extra)
    rules: ClassVar[tuple[Rule, ...]] = ()
    schema_extra: ClassVar[dict[str, Any]] = {}

    @model_validator(mode="after")
    def _check_rules(self) -> Any:
        for rule in type(self).rules:
            if not rule.ratchet and not rule.holds(self):
                raise RuleViolation(rule.message, rule.field_path)
        return self

    def ratcheted(self) -> list[str]:
        """Messages of the ratcheted rules this object breaks (stored before they existed)."""
        return [rule.message for rule in type(self).rules if rule.ratchet and not rule.holds(self)]


class SecretReference(Model):
    name: str = Field(
        min_length=1,
        max_length=253,
        description="Name of a Secret in the InferenceService's namespace.",
    )
