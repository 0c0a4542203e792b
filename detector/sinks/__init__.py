"""Where alerts go: webhook, Alertmanager, Slack, stdout (the Kafka alerts topic is the
stream worker's own).

How the stream worker wires it (all on the worker's event loop)::

    from detector.sinks import load_sinks

    sinks = load_sinks(metrics)        # SinkSet from env / DETECTOR_SINKS_FILE; raises
                                       # SettingsError naming the variable or file key
    await sinks.start()                # on worker start: HTTP sessions + one task per sink
    ...
    sinks.submit(alert)                # per alert: never blocks, never raises; returns how
                                       # many sinks queued it (routing may skip some)
    ...
    await sinks.close(timeout=5.0)     # on shutdown: drain for up to `timeout`, then stop;
                                       # what is left is counted as dropped

`submit` is synchronous and must be called from the event loop's thread (it uses
`asyncio.Queue.put_nowait`). It may be called before `start()`: alerts wait in the queues.
An empty SinkSet (nothing configured) is valid and does nothing. `SinkSet` is also an async
context manager (start on enter, close on exit).

The document the webhook and stdout sinks write (and the worker writes to the alerts topic) is
`encode_alert(alert, alert_format)`: `native` or `ocsf` (`formats`, docs/sinks.md).

Each sink owns a bounded queue and a consumer task, so a slow or dead receiver only fills
its own queue; overflow is dropped and counted (`detector_sink_dropped_total{sink}`).
Configuration and every setting: docs/sinks.md.
"""

from detector.settings.types import Secret
from detector.sinks.alertmanager import AlertmanagerConfig, AlertmanagerSink
from detector.sinks.base import HttpSinkConfig, RetryPolicy, Sink, SinkConfig, SinkSet
from detector.sinks.config import build_sink, load_sinks
from detector.sinks.formats import ALERT_FORMATS, AlertFormat, alert_format, encode_alert
from detector.sinks.routing import Route
from detector.sinks.slack import SlackConfig, SlackSink
from detector.sinks.stdout import StdoutConfig, StdoutSink
from detector.sinks.webhook import WebhookConfig, WebhookSink, verify_signature

__all__ = [
    "ALERT_FORMATS",
    "AlertFormat",
    "AlertmanagerConfig",
    "AlertmanagerSink",
    "HttpSinkConfig",
    "RetryPolicy",
    "Route",
    "Secret",
    "Sink",
    "SinkConfig",
    "SinkSet",
    "SlackConfig",
    "SlackSink",
    "StdoutConfig",
    "StdoutSink",
    "WebhookConfig",
    "WebhookSink",
    "alert_format",
    "build_sink",
    "encode_alert",
    "load_sinks",
    "verify_signature",
]
