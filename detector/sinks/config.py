"""The sinks the settings configure, built (`detector.settings.sinks` reads and checks them)."""

from __future__ import annotations

import os
from collections.abc import Mapping

import detector.settings.sinks as settings  # a module: it imports the sink classes too
from detector.metrics import Metrics
from detector.settings.types import SettingsError
from detector.sinks.alertmanager import AlertmanagerConfig, AlertmanagerSink
from detector.sinks.base import Sink, SinkConfig, SinkSet
from detector.sinks.slack import SlackConfig, SlackSink
from detector.sinks.stdout import StdoutConfig, StdoutSink
from detector.sinks.webhook import WebhookConfig, WebhookSink


def load_sinks(metrics: Metrics, environ: Mapping[str, str] | None = None) -> SinkSet:
    """Every sink the environment (and DETECTOR_SINKS_FILE) configures, ready to start.

    Raises SettingsError: the worker checks `settings.sink_configs` before it builds anything,
    so only an environment that changed in between (a secret file gone) gets here with one.
    """
    configs = settings.sink_configs(os.environ if environ is None else environ)
    if isinstance(configs, SettingsError):
        raise configs
    return SinkSet(build_sink(config, metrics) for config in configs)


def build_sink(config: SinkConfig, metrics: Metrics) -> Sink:
    if isinstance(config, WebhookConfig):
        return WebhookSink(config, metrics)
    if isinstance(config, SlackConfig):
        return SlackSink(config, metrics)
    if isinstance(config, AlertmanagerConfig):
        return AlertmanagerSink(config, metrics)
    if isinstance(config, StdoutConfig):
        return StdoutSink(config, metrics)
    raise TypeError(f"no sink for {type(config).__name__}")
