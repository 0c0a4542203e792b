"""Streaming anomaly detection for AWS CloudTrail events with Sigma rules."""

__version__ = "0.1.0"
