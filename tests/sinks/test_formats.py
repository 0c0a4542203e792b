"""Alert documents: `native` (docs/alert.schema.json) or `ocsf` (a Detection Finding)."""

from __future__ import annotations

import orjson
import pytest

from detector.ocsf import detection_finding
from detector.sinks.formats import ALERT_FORMATS, alert_format, encode_alert
from sinks.builders import make_alert


def test_native_is_the_alert_document_and_the_default() -> None:
    alert = make_alert()
    assert encode_alert(alert) == encode_alert(alert, "native") == alert.to_json()


def test_ocsf_is_the_detection_finding_with_sorted_keys() -> None:
    alert = make_alert()
    body = encode_alert(alert, "ocsf")
    assert orjson.loads(body) == detection_finding(alert)
    assert body == orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)


@pytest.mark.parametrize(("text", "expected"),
                         [("native", "native"), ("OCSF", "ocsf"), (" ocsf\n", "ocsf")])
def test_format_names_are_read_like_other_settings(text: str, expected: str) -> None:
    assert alert_format(text) == expected


@pytest.mark.parametrize("text", ["", "json", "ocsf1.5", "native,ocsf"])
def test_an_unknown_format_names_the_choices(text: str) -> None:
    with pytest.raises(ValueError, match="is not an alert format; use one of native, ocsf"):
        alert_format(text)


def test_the_formats() -> None:
    assert ALERT_FORMATS == ("native", "ocsf")
