"""Links into the AWS console for an alert's triggering event.

Region and event id come from the event, i.e. from whoever made the API call, so both are
checked against strict patterns before they go into a URL that an analyst will click.
"""

from __future__ import annotations

import re
from urllib.parse import quote

_REGION = re.compile(r"(?P<partition>[a-z]{2}(?:-gov|-iso[a-z]?)?)-[a-z]+-[0-9]{1,2}")
_EVENT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_EVENT_NAME = re.compile(r"[A-Za-z0-9]{1,128}")


def cloudtrail_event_url(
    region: str | None, event_id: str | None, event_name: str | None = None
) -> str | None:
    """The CloudTrail event page, or event history filtered by event name when the id is not
    a CloudTrail UUID; None when the region is unknown or in an isolated partition."""
    match = _REGION.fullmatch(region or "")
    if region is None or match is None:
        return None
    partition = match.group("partition")
    if partition == "us-gov":
        host = "console.amazonaws-us-gov.com"
    elif partition == "cn":
        host = "console.amazonaws.cn"
    elif "-iso" in partition:
        return None
    else:
        host = f"{region}.console.aws.amazon.com"
    base = f"https://{host}/cloudtrailv2/home?region={region}#/events"
    if event_id and _EVENT_ID.fullmatch(event_id):
        return f"{base}/{event_id}"
    if event_name and _EVENT_NAME.fullmatch(event_name):
        return f"{base}?EventName={quote(event_name)}"
    return base

