"""Benchmarks 12-13: `detector scan` where nearly every record alerts, and rule start-up.

12. AssumedRole-heavy traffic of many accounts, where a rule of the shape of SigmaHQ's
    `aws_sts_assumerole_misuse` (any call of an assumed-role session) fires on nearly every
    record. Three contenders alternate over the same JSON-lines file: decode only
    (`orjson.loads` of each line, one pass), `detector.scan.scan` in-process writing alerts
    as JSON lines to a file (`JsonLines`: decode, engine, event-time order, each alert's
    JSON: the per-record path, start-up excluded), and `python -m detector scan` as a process (its
    start-up included). A fourth, the same process over a single record, is its start-up.
13. Rule start-up: `load_rules` + `make_engine` over the shipped packs plus copies of the
    SigmaHQ rules under new ids, 570 rules in all, as a deployment with a big rule set has.

The AssumedRole rule is written by the benchmark (the SigmaHQ selection in ../shared/data
does not include that rule); the rest are the SigmaHQ CloudTrail rules and their lists.
"""

from __future__ import annotations

import math
import random
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bench.data import REGIONS, START, USER_AGENTS
from bench.report import Result, new_result
from bench.rules import SHIPPED, SIGMA_DIR, load, write_sigma_lists
from bench.timing import alternate, median, paired_ratio, profile_call, timed
from detector.engine import RuleSet, load_rules
from detector.engine.factory import make_engine
from detector.events import DEFAULT_LIMITS
from detector.scan import JsonLines, scan

REPO = Path(__file__).resolve().parents[1]
_NAMESPACE = uuid.UUID("0c5e2f8a-4d71-4b0e-9a36-7e1d2c9b5f40")
_ID_LINE = re.compile(r"^id: .*$", re.MULTILINE)


@dataclass(frozen=True)
class Sizes:
    records: int
    repetitions: int
    startup_rules: int  # benchmark 13's rule count
    startup_repetitions: int


FULL = Sizes(records=50_000, repetitions=5, startup_rules=570, startup_repetitions=5)
QUICK = Sizes(records=2_000, repetitions=2, startup_rules=150, startup_repetitions=2)


@dataclass
class Context:
    sizes: Sizes
    work: Path


# (weight, eventSource, eventName, readOnly): what assumed-role sessions of workloads and
# people call all day; AWS services and a few IAM users make the rest of the traffic.
CALLS: tuple[tuple[float, str, str, bool], ...] = (
    (10.0, "ec2.amazonaws.com", "DescribeInstances", True),
    (6.0, "s3.amazonaws.com", "GetBucketLocation", True),
    (6.0, "kms.amazonaws.com", "Decrypt", True),
    (5.0, "sts.amazonaws.com", "AssumeRole", True),
    (5.0, "sts.amazonaws.com", "GetCallerIdentity", True),
    (4.0, "ssm.amazonaws.com", "GetParameter", True),
    (4.0, "secretsmanager.amazonaws.com", "GetSecretValue", True),
    (3.0, "lambda.amazonaws.com", "ListFunctions20150331", True),
    (3.0, "logs.amazonaws.com", "CreateLogStream", False),
    (3.0, "dynamodb.amazonaws.com", "DescribeTable", True),
    (2.0, "ecr.amazonaws.com", "GetAuthorizationToken", True),
    (2.0, "kinesisvideo.amazonaws.com", "GetDataEndpoint", True),
    (2.0, "iam.amazonaws.com", "GetRole", True),
    (1.0, "cloudformation.amazonaws.com", "DescribeStacks", True),
    (1.0, "ec2.amazonaws.com", "DescribeSecurityGroups", True),
    (0.5, "ec2.amazonaws.com", "RunInstances", False),
    (0.2, "s3.amazonaws.com", "PutBucketVersioning", False),
)
ROLES = ("CIDeploy", "EKSNodeRole", "LambdaExecution", "DataPipeline", "ReadOnly",
         "OrganizationAccountAccessRole", "Developer", "BackupService")
SERVICES = ("ec2.amazonaws.com", "lambda.amazonaws.com", "cloudtrail.amazonaws.com")
ASSUMED_ROLE_SHARE = 0.94  # of the records; AWS services and IAM users are the rest
SERVICE_SHARE = 0.04


class AlertingGenerator:
    """CloudTrail records of `accounts` accounts, most of them calls by assumed-role sessions,
    in event-time order with a little disorder; the same seed gives the same records."""

    def __init__(self, seed: int = 20261202, *, accounts: int = 60,
                 span_hours: float = 2.0) -> None:
        self.rng = random.Random(seed)
        self.accounts = [f"{self.rng.randrange(10**11, 10**12):012d}" for _ in range(accounts)]
        self.span = span_hours * 3600
        self.weights = [entry[0] for entry in CALLS]
        self.agent_weights = [weight for weight, _ in USER_AGENTS]
        self.addresses = [f"10.{self.rng.randrange(1, 250)}.{self.rng.randrange(256)}."
                          f"{self.rng.randrange(1, 255)}" for _ in range(400)]

    def records(self, count: int) -> list[dict[str, Any]]:
        step = self.span / max(count, 1)
        rng = self.rng
        return [self.record(START + timedelta(seconds=max(0.0, n * step + rng.uniform(-10, 3))))
                for n in range(count)]

    def _identity(self, account: str) -> tuple[dict[str, Any], str, str]:
        """The caller: (userIdentity, sourceIPAddress, userAgent)."""
        rng = self.rng
        draw = rng.random()
        if draw < ASSUMED_ROLE_SHARE:
            role = rng.choice(ROLES)
            number = rng.randrange(1 << 40)
            session = f"i-{number:010x}" if role == "EKSNodeRole" else f"session-{number % 5000}"
            role_id = f"AROA{int(account) % 10**8:08d}{ROLES.index(role):09X}"
            identity = {
                "type": "AssumedRole",
                "principalId": f"{role_id}:{session}",
                "arn": f"arn:aws:sts::{account}:assumed-role/{role}/{session}",
                "accountId": account,
                "accessKeyId": f"ASIA{rng.getrandbits(64):016X}",
                "sessionContext": {
                    "sessionIssuer": {"type": "Role", "principalId": role_id,
                                      "arn": f"arn:aws:iam::{account}:role/{role}",
                                      "accountId": account, "userName": role},
                    "attributes": {"creationDate": "2026-01-15T00:00:00Z",
                                   "mfaAuthenticated": "false"},
                },
            }
        elif draw < ASSUMED_ROLE_SHARE + SERVICE_SHARE:
            service = rng.choice(SERVICES)
            return {"type": "AWSService", "invokedBy": service}, service, service
        else:
            user = f"user{rng.randrange(30)}"
            identity = {"type": "IAMUser", "principalId": f"AIDA{rng.getrandbits(64):016X}",
                        "arn": f"arn:aws:iam::{account}:user/{user}", "accountId": account,
                        "accessKeyId": f"AKIA{rng.getrandbits(64):016X}", "userName": user}
        agent = rng.choices(USER_AGENTS, self.agent_weights)[0][1]
        return identity, rng.choice(self.addresses), agent

    def record(self, when: datetime) -> dict[str, Any]:
        rng = self.rng
        _, source, name, read_only = rng.choices(CALLS, self.weights)[0]
        account = rng.choice(self.accounts)
        identity, address, agent = self._identity(account)
        region = rng.choice(REGIONS)
        record: dict[str, Any] = {
            "eventVersion": "1.09",
            "userIdentity": identity,
            "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "eventSource": source,
            "eventName": name,
            "awsRegion": region,
            "sourceIPAddress": address,
            "userAgent": agent,
            "requestParameters": _parameters(rng, source, name, account),
            "responseElements": None,
            "requestID": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "eventID": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "readOnly": read_only,
            "eventType": "AwsApiCall",
            "managementEvent": True,
            "recipientAccountId": account,
            "eventCategory": "Management",
        }
        if identity["type"] != "AWSService":
            record["tlsDetails"] = {"tlsVersion": "TLSv1.3",
                                    "cipherSuite": "TLS_AES_128_GCM_SHA256",
                                    "clientProvidedHostHeader": f"{source.split('.')[0]}."
                                                                f"{region}.amazonaws.com"}
        return record


def _parameters(rng: random.Random, source: str, name: str,
                account: str) -> dict[str, Any] | None:
    if name == "AssumeRole":
        return {"roleArn": f"arn:aws:iam::{account}:role/{rng.choice(ROLES)}",
                "roleSessionName": f"session-{rng.randrange(5000)}", "durationSeconds": 3600}
    if source == "s3.amazonaws.com":
        status = "Suspended" if name == "PutBucketVersioning" and rng.random() < 0.5 else (
            "Enabled")
        return {"bucketName": f"bucket-{account}-{rng.randrange(20)}", "Host": "s3.amazonaws.com",
                **({"VersioningConfiguration": {"Status": status}}
                   if name == "PutBucketVersioning" else {})}
    if name == "Decrypt":
        return {"encryptionAlgorithm": "SYMMETRIC_DEFAULT"}
    if name in ("GetParameter", "GetSecretValue"):
        return {"name": f"/app/{rng.randrange(40)}/config", "withDecryption": True}
    if name == "GetDataEndpoint":
        return {"streamName": f"camera-{rng.randrange(24):02d}", "aPIName": "GET_MEDIA"}
    return None


def assumed_role_rule(directory: Path) -> Path:
    """A rule that fires on every call of an assumed-role session."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "assumed_role_activity.yml").write_text(f"""\
title: Activity of an assumed-role session
id: {uuid.uuid5(_NAMESPACE, "assumed-role")}
status: experimental
description: Any call made with credentials of an assumed role, as SigmaHQ's
  aws_sts_assumerole_misuse selects them.
logsource:
  product: aws
  service: cloudtrail
detection:
  selection:
    userIdentity.type: AssumedRole
    userIdentity.sessionContext.sessionIssuer.type: Role
  condition: selection
level: low
tags:
  - attack.lateral-movement
  - attack.t1550
""", encoding="utf-8")
    return directory


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> int:
    path.write_bytes(b"".join(orjson.dumps(record) + b"\n" for record in records))
    return len(records)


def _sigma_rules(work: Path) -> tuple[list[Path], list[Path], list[str]]:
    """The rule and list paths of benchmark 12: SigmaHQ's rules (when present) and the
    assumed-role rule."""
    paths = [assumed_role_rule(work / "assumed-role")]
    if not SIGMA_DIR.is_dir():
        return paths, [], [f"SigmaHQ rules absent ({SIGMA_DIR}): the assumed-role rule only"]
    return [SIGMA_DIR, *paths], [write_sigma_lists(work / "sigma-lists")], []


def _decode_only(path: Path) -> None:
    for line in path.read_bytes().split(b"\n"):
        if line:
            orjson.loads(line)


class _Scan:
    """`detector.scan.scan` with alerts written as JSON lines to a file (`JsonLines`, what
    the CLI writes); the engine is built before the clock starts."""

    def __init__(self, ruleset: RuleSet, path: Path, output: Path) -> None:
        self.ruleset, self.path, self.output = ruleset, path, output
        self.alerts = 0

    def __call__(self) -> float:
        engine = make_engine(self.ruleset)
        with self.output.open("wb") as out:
            started = time.perf_counter()
            summary = scan([str(self.path)], engine, DEFAULT_LIMITS, JsonLines(out.write),
                           now=time.time())
            elapsed = time.perf_counter() - started
        self.alerts = sum(summary.alerts.values())
        return elapsed


def _process(rules: list[Path], lists: list[Path], path: Path, output: Path) -> Callable[[], float]:
    """`python -m detector scan` as a process, start-up included."""
    command = [sys.executable, "-m", "detector", "scan", "--no-progress", "-o", str(output)]
    for rule_path in rules:
        command += ["--rules", str(rule_path)]
    for list_path in lists:
        command += ["--lists", str(list_path)]
    command.append(str(path))

    def run() -> float:
        started = time.perf_counter()
        completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                                   check=False, timeout=600)
        elapsed = time.perf_counter() - started
        if completed.returncode != 0:
            raise RuntimeError(f"detector scan exited {completed.returncode}: "
                               f"{completed.stderr[-2000:]}")
        return elapsed
    return run


def scan_alerting(ctx: Context) -> Result:
    result = new_result(12)
    rules, lists, notes = _sigma_rules(ctx.work)
    result.notes.extend(notes)
    ruleset = load(rules, lists)
    records = AlertingGenerator().records(ctx.sizes.records)
    path, single = ctx.work / "alerting.jsonl", ctx.work / "one.jsonl"
    count = write_jsonl(path, records)
    write_jsonl(single, records[:1])
    in_process = _Scan(ruleset, path, ctx.work / "alerts.jsonl")
    seconds = alternate({
        "decode only": timed(lambda: _decode_only(path)),
        "scan": in_process,
        "scan process": _process(rules, lists, path, ctx.work / "process-alerts.jsonl"),
        "scan process, one record": _process(rules, lists, single, ctx.work / "one-alert.jsonl"),
    }, ctx.sizes.repetitions)
    for name in ("decode only", "scan", "scan process"):
        rates = [count / run for run in seconds[name]]
        result.measure(name, "records/s", rates, count / median(seconds[name]))
    start = seconds["scan process, one record"]
    result.measure("scan process start-up (one record)", "s", start, median(start))
    ratio = paired_ratio(seconds["scan"], seconds["decode only"])
    result.ratios["scan/decode-only cost"] = round(ratio, 3)
    result.ratios["scan process/decode-only cost"] = round(
        paired_ratio(seconds["scan process"], seconds["decode only"]), 3)
    result.conclude(ratio, "scan/decode-only cost")
    result.profile = profile_call(in_process)
    result.profile["subject"] = f"detector.scan.scan over {count:,} records"
    result.notes.append(
        f"{count:,} records of {len(AlertingGenerator().accounts)} accounts, "
        f"{ASSUMED_ROLE_SHARE:.0%} by assumed-role sessions, as JSON lines "
        f"({path.stat().st_size / count:,.0f} bytes a record); {len(ruleset)} rules "
        f"(SigmaHQ's CloudTrail rules and one on assumed-role sessions); "
        f"{in_process.alerts:,} alerts per pass; decode only is orjson.loads of each line; "
        f"scan is detector.scan.scan in-process writing alerts as JSON lines to a file "
        f"(JsonLines), engine built beforehand; scan process is `python -m detector scan` "
        f"(start-up included), its start-up measured over a one-record file")
    return result


def _copies(work: Path, target: int) -> tuple[list[Path], list[Path], int]:
    """Rule paths holding about `target` rules: the shipped packs and copies of SigmaHQ's
    rules under new ids; the lists; and the number of copies."""
    shipped = len(load([SHIPPED]))
    sigma = sorted(path for path in SIGMA_DIR.glob("*.yml"))
    copies = max(1, math.ceil((target - shipped) / len(sigma)))
    directory = work / "sigma-copies"
    for copy in range(copies):
        folder = directory / f"copy-{copy:02d}"
        folder.mkdir(parents=True)
        for path in sigma:
            text = path.read_text(encoding="utf-8")
            new_id = uuid.uuid5(_NAMESPACE, f"{copy}/{path.name}")
            (folder / path.name).write_text(_ID_LINE.sub(f"id: {new_id}", text, count=1),
                                            encoding="utf-8")
    return [SHIPPED, directory], [write_sigma_lists(work / "sigma-lists")], copies


def rule_startup(ctx: Context) -> Result:
    target = ctx.sizes.startup_rules
    result = new_result(13, f"Rule start-up: load_rules + make_engine at {target:,} rules")
    if not SIGMA_DIR.is_dir():
        return result.unavailable(f"SigmaHQ rules absent ({SIGMA_DIR})")
    rules, lists, copies = _copies(ctx.work, target)
    loaded: list[int] = []

    def start() -> None:
        outcome = load_rules(rules, lists)
        if outcome.errors:
            raise RuntimeError(f"{len(outcome.errors)} rule error(s): {outcome.errors[0]}")
        make_engine(outcome.ruleset)
        loaded.append(len(outcome.ruleset))

    seconds = alternate({"start-up": timed(start)}, ctx.sizes.startup_repetitions)
    runs = seconds["start-up"]
    result.measure("load_rules + make_engine", "s", runs, median(runs))
    result.ratios["s per 100 rules"] = round(median(runs) / loaded[-1] * 100, 4)
    result.conclude(median(runs), "start-up s")
    result.profile = profile_call(start)
    result.profile["subject"] = f"load_rules + make_engine of {loaded[-1]:,} rules"
    result.notes.append(
        f"{loaded[-1]:,} rules: the shipped packs and {copies} copies of SigmaHQ's CloudTrail "
        f"rules under new ids, read from YAML files in a temporary directory")
    return result


BENCHMARKS: tuple[Callable[[Context], Result], ...] = (scan_alerting, rule_startup)
