"""docs/configuration.md is generated from the CRD schema; the committed file must match it."""

from pathlib import Path

from infer_operator.api.crd import build_crd
from infer_operator.api.reference import EMBEDDED, field_paths, render_reference

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"


def _schema_paths(node, path):
    """Every field path below `path` in the CRD schema, independently of the renderer's walk, not
    looking into Kubernetes' own embedded types (their docs are Kubernetes')."""
    for name, prop in (node.get("properties") or {}).items():
        child = f"{path}.{name}"
        yield child
        if child in EMBEDDED:
            continue
        yield from _schema_paths(prop, child)
        items = prop.get("items")
        if isinstance(items, dict):
            yield from _schema_paths(items, f"{child}[]")


def _schema():
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_committed_reference_matches_the_crd():
    assert DOC.read_text() == render_reference(), (
        "docs/configuration.md is stale: regenerate it with `make docs` "
        "(or `infer-operator reference > docs/configuration.md`)"
    )


def test_every_spec_field_is_documented():
    text = render_reference()
    paths = list(_schema_paths(_schema()["properties"]["spec"], "spec"))
    assert "spec.lifecycle.drainSeconds" in paths and "spec.registry.etcd.credentialsSecret.name" in paths
    missing = [path for path in paths if f"`{path}`" not in text]
    assert not missing, f"spec fields missing from the reference: {missing}"
    assert set(paths) == set(field_paths("spec"))


def test_status_fields_rules_and_columns_are_documented():
    text = render_reference()
    for path in _schema_paths(_schema()["properties"]["status"], "status"):
        assert f"`{path}`" in text, path
    for column in build_crd()["spec"]["versions"][0]["additionalPrinterColumns"]:
        assert f"| {column['name'].upper()} |" in text, column["name"]
    assert "lifecycle.terminationGracePeriodSeconds must exceed lifecycle.drainSeconds" in text
    assert "metadata.name must be at most 52 characters" in text
    assert "set spec.sync.readinessProbe and spec.async.readinessProbe instead" in text


def test_cli_prints_the_reference(capsys):
    from infer_operator.cli import main

    assert main(["reference"]) == 0
    assert capsys.readouterr().out == render_reference()


def test_every_link_within_the_reference_has_its_section():
    """A link to `#spectemplate` with no such section sent readers nowhere."""
    import re

    from infer_operator.api import reference

    text = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    anchors = {reference._anchor(heading) for heading in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}
    links = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert links and links <= anchors, sorted(links - anchors)
