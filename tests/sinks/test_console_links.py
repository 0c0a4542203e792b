"""CloudTrail console links, built only from values that look like what AWS writes."""

from __future__ import annotations

from detector.sinks.console_links import cloudtrail_event_url
from sinks.builders import EVENT_ID

BASE = "https://us-east-1.console.aws.amazon.com/cloudtrailv2/home?region=us-east-1#/events"


def test_an_event_id_links_to_the_event() -> None:
    assert cloudtrail_event_url("us-east-1", EVENT_ID) == f"{BASE}/{EVENT_ID}"


def test_without_a_cloudtrail_event_id_the_link_filters_by_event_name() -> None:
    assert cloudtrail_event_url("us-east-1", "evt-1", "DeleteStream") == (
        f"{BASE}?EventName=DeleteStream"
    )
    assert cloudtrail_event_url("us-east-1", "evt-1", "Delete Stream&x=1") == BASE


def test_other_partitions_use_their_console() -> None:
    assert cloudtrail_event_url("us-gov-west-1", EVENT_ID) == (
        "https://console.amazonaws-us-gov.com/cloudtrailv2/home?region=us-gov-west-1"
        f"#/events/{EVENT_ID}"
    )
    assert str(cloudtrail_event_url("cn-north-1", EVENT_ID)).startswith(
        "https://console.amazonaws.cn/"
    )
    assert cloudtrail_event_url("us-iso-east-1", EVENT_ID) is None


def test_no_link_for_a_missing_or_odd_region() -> None:
    assert cloudtrail_event_url(None, EVENT_ID) is None
    assert cloudtrail_event_url("evil.com/x", EVENT_ID) is None
    assert cloudtrail_event_url("us-east-1#", EVENT_ID) is None
    assert cloudtrail_event_url("us-east-1\n", EVENT_ID) is None
    assert cloudtrail_event_url("us-east-1", EVENT_ID + "\n") == BASE
