"""Every setting of every command in one model: the worker, the sinks, scan and replay.

Built on pydantic-settings: each command's settings are a `BaseSettings` class
(`common.ScanSettings`, `worker.WorkerSettings`; the sinks' keys in `sinks`) whose fields are
the attributes the code reads. `model.load` fills one from flags, then DETECTOR_* variables
(secrets also from `<VARIABLE>_FILE`), then the defaults, and returns it or a `SettingsError`
whose problems name the setting, where its value came from and what is wrong. The same classes
make the flags (`model.add_flags`) and the docs tables (`python -m detector.settings.docs`).

pydantic-settings does the typing, coercion and validation of every field; its own
environment and CLI sources are not used, since errors must name the exact variable, flag or
file key a value came from, `*_FILE` secrets and DETECTOR_SINK_<KEY> fall-backs are ours, and
the tests and the worker pass the environment as a mapping. The sources here are
`PydanticBaseSettingsSource`s that record where each value came from.

Importing this package is cheap (no Faust, no aiohttp): `worker` and `sinks` import the sink
modules and are imported by the commands that need them.
"""

from detector.settings.types import Problem, Secret, SettingsError

__all__ = ["Problem", "Secret", "SettingsError"]
