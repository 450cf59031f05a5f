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

    Rules added after objects were stored must let those objects be (their finalizers could never
    be removed, nor a /scale go through):
    - `at`: the rule sits on that schema node below the model (its CEL `self` is that node), as
      deep as the fields it reads, so the API server's validation ratcheting skips it while that
      node is unchanged (a scale, a status or a finalizer write);
    - `on_create`: for a rule on a node every write changes (the whole object) about a field that
      never changes (metadata.name), a CEL transition rule that checks it on create only;
    - `report_only`: the operator does not refuse an object breaking it (only one stored before
      the rule can), it reports it (`reported`) and goes on.
    """

    cel: str
    message: str
    holds: Callable[[Any], bool]
    field_path: str | None = None
    at: tuple[str, ...] = ()
    on_create: bool = False
    report_only: bool = False

    def as_cel(self) -> dict[str, Any]:
        rule = self.cel
        validation: dict[str, Any] = {"rule": rule, "message": self.message}
        if self.on_create:
            validation["rule"] = f"oldSelf.hasValue() || ({rule})"  # an update has an old object
            validation["optionalOldSelf"] = True
        if self.field_path:
            validation["fieldPath"] = self.field_path
        return validation


def _schema_extra(schema: dict[str, Any], model: type[BaseModel]) -> None:
    for key, value in getattr(model, "schema_extra", {}).items():
        schema[key] = value
    rules = [rule for rule in getattr(model, "rules", ()) if not rule.at]
    if rules:
        schema["x-kubernetes-validations"] = [rule.as_cel() for rule in rules]


def attach_rules(schema: dict[str, Any], rules: tuple[Rule, ...]) -> None:
    """Put the rules that sit below the model (`Rule.at`) onto their nodes of its schema."""
    for rule in rules:
        if not rule.at:
            continue
        node = schema
        for name in rule.at:
            node = node["properties"][name]
        node.setdefault("x-kubernetes-validations", []).append(rule.as_cel())


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
            if not rule.report_only and not rule.holds(self):
                raise RuleViolation(rule.message, rule.field_path)
        return self

    def reported(self) -> list[str]:
        """Messages of the report-only rules this object breaks (it was stored before them)."""
        return [rule.message for rule in type(self).rules if rule.report_only and not rule.holds(self)]


class SecretReference(Model):
    name: str = Field(
        min_length=1,
        max_length=253,
        description="Name of a Secret in the InferenceService's namespace.",
    )
