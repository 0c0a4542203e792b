"""The documents an alert can be written as, on the alerts topic, a webhook or stdout.

`native` is `Alert.to_json()` (docs/alert.schema.json); `ocsf` is the alert as an OCSF
Detection Finding (`detector.ocsf`). Both are compact JSON with sorted keys, so the same
alert always gives the same bytes, whichever process writes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Literal, get_args

import orjson

from detector.alerts import Alert
from detector.ocsf import detection_finding

AlertFormat = Literal["native", "ocsf"]
ALERT_FORMATS: Final[tuple[AlertFormat, ...]] = get_args(AlertFormat)
DEFAULT_FORMAT: Final[AlertFormat] = "native"


def _ocsf(alert: Alert) -> bytes:
    return orjson.dumps(detection_finding(alert), option=orjson.OPT_SORT_KEYS)


_ENCODERS: Final[dict[AlertFormat, Callable[[Alert], bytes]]] = {
    "native": Alert.to_json,
    "ocsf": _ocsf,
}


def alert_format(text: str) -> AlertFormat:
    """A format named in a setting (any case, blanks around it); ValueError says the choices."""
    name = text.strip().lower()
    for known in ALERT_FORMATS:
        if name == known:
            return known
    raise ValueError(f"{text!r} is not an alert format; use one of {', '.join(ALERT_FORMATS)}")


def encode_alert(alert: Alert, alert_format: AlertFormat = DEFAULT_FORMAT) -> bytes:
    """The alert as a JSON document in `alert_format`."""
    return _ENCODERS[alert_format](alert)
