"""OCSF validation for tests: the schema the OCSF project publishes for each release (its
`export/schema` documents, packaged by ocsf-json-schema), turned into JSON Schema with every
referenced object embedded and checked with jsonschema. Attributes the release does not
define, wrong types, enum values and missing required attributes are all errors."""

from __future__ import annotations

from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema, get_packaged_versions

from detector.ocsf import OCSF_VERSION


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


# Every final release packaged, from the one the documents declare on: what they must suit.
RELEASES = sorted(
    (version for version in get_packaged_versions()
     if "-" not in version and _release(version) >= _release(OCSF_VERSION)),
    key=_release,
)


@cache
def _validator(version: str) -> Draft202012Validator:
    schema = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=version)).get_class_schema(
        "detection_finding", profiles=["cloud"]
    )
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def ocsf_errors(document: dict[str, Any], version: str = OCSF_VERSION) -> list[str]:
    """Why `document` is not a Detection Finding (cloud profile) of that release; [] if it is."""
    return sorted(
        f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in _validator(version).iter_errors(document)
    )
