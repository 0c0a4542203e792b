"""Benchmark inputs: a seeded, realistic mix of CloudTrail records, and the real files.

The mix imitates one AWS account's management events: mostly read-only calls by a few dozen
IAM users and assumed roles from the corporate network, AWS services assuming roles and
decrypting, Kinesis Video Streams producers and players asking for endpoints, a handful of
writes, ~3 % AccessDenied, the root user rarely. The same seed gives the same bytes, so two
runs measure the same work.
"""

from __future__ import annotations

import json
import random
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from detector.events import Record, decode

ACCOUNT = "111122223333"
REGIONS = ("us-east-1", "us-east-1", "us-east-1", "eu-west-1", "eu-central-1", "us-west-2")
START = datetime(2026, 1, 15, tzinfo=UTC)
EXTERNAL_IPS = (
    "198.51.100.23", "198.51.100.77", "203.0.113.9", "203.0.113.150", "192.0.2.44",
    "185.220.101.4", "2001:db8:85a3::8a2e:370:7334",
)
USER_AGENTS = (
    (30, "aws-cli/2.17.43 ua/2.0 os/linux#6.8.0-45-generic md/arch#x86_64 lang/python#3.12.6"),
    (25, "Boto3/1.34.162 md/Botocore#1.34.162 ua/2.0 os/linux#5.10.226 lang/python#3.11.9"),
    (10, "aws-sdk-java/2.25.60 Linux/5.10.223 OpenJDK_64-Bit_Server_VM/17.0.12 Java/17.0.12"),
    (10, "aws-sdk-go-v2/1.30.4 os/linux lang/go#1.22.6 md/GOOS#linux md/GOARCH#amd64"),
    (8, "AWS Internal"),
    (7, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/129.0.0.0 Safari/537.36"),
    (5, "aws-sdk-js/3.637.0 ua/2.1 os/linux#5.10 lang/js md/nodejs#20.17.0 api/kinesis-video"),
    (5, "terraform-provider-aws/5.64.0 (+https://registry.terraform.io) aws-sdk-go-v2/1.30.4"),
)
STREAMS = tuple(f"{site}-camera-{n:02d}" for site in ("lobby", "dock", "gate", "lab")
                for n in range(1, 7))
BUCKETS = ("corp-logs", "video-archive", "terraform-state", "analytics-raw", "web-assets")


@dataclass(frozen=True)
class Principal:
    kind: str  # IAMUser | AssumedRole | Root | AWSService
    identity: dict[str, Any]
    name: str


def _users(count: int) -> list[Principal]:
    names = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]
    principals = []
    for n in range(count):
        user = f"{names[n % len(names)]}{n // len(names) or ''}"
        principals.append(Principal("IAMUser", {
            "type": "IAMUser",
            "principalId": f"AIDA{n:016X}",
            "arn": f"arn:aws:iam::{ACCOUNT}:user/{user}",
            "accountId": ACCOUNT,
            "accessKeyId": f"AKIA{n:016X}",
            "userName": user,
        }, user))
    return principals


def _roles() -> list[Principal]:
    roles = ["VideoPlatformAdmin", "VideoIngest", "VideoPlayer", "CIDeploy", "ReadOnly",
             "DataEngineering", "SecurityAudit", "Developer", "OrganizationAccountAccessRole",
             "LambdaExecution", "EKSNodeRole", "BackupService"]
    principals = []
    for n, role in enumerate(roles):
        session = f"session-{n}" if n % 3 else f"user{n}@example.com"
        issuer = {
            "type": "Role",
            "principalId": f"AROA{n:017X}",
            "arn": f"arn:aws:iam::{ACCOUNT}:role/{role}",
            "accountId": ACCOUNT,
            "userName": role,
        }
        principals.append(Principal("AssumedRole", {
            "type": "AssumedRole",
            "principalId": f"AROA{n:017X}:{session}",
            "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}",
            "accountId": ACCOUNT,
            "accessKeyId": f"ASIA{n:016X}",
            "sessionContext": {
                "sessionIssuer": issuer,
                "attributes": {"creationDate": "2026-01-15T00:00:00Z",
                               "mfaAuthenticated": "true" if n % 2 else "false"},
            },
        }, role))
    return principals


ROOT = Principal("Root", {
    "type": "Root", "principalId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:root",
    "accountId": ACCOUNT, "accessKeyId": "ASIAROOT0000000000",
}, "root")


def _service(name: str) -> Principal:
    return Principal("AWSService", {"type": "AWSService", "invokedBy": name}, name)


Params = Callable[[random.Random, str], dict[str, Any] | None]


def _stream(rng: random.Random, region: str) -> dict[str, Any]:
    name = rng.choice(STREAMS)
    return {"streamName": name,
            "streamARN": f"arn:aws:kinesisvideo:{region}:{ACCOUNT}:stream/{name}/1736900000000"}


def _endpoint(rng: random.Random, region: str) -> dict[str, Any]:
    api = rng.choice(("PUT_MEDIA", "GET_MEDIA", "GET_HLS_STREAMING_SESSION_URL", "GET_CLIP"))
    return {**_stream(rng, region), "aPIName": api}


def _retention(rng: random.Random, region: str) -> dict[str, Any]:
    return {**_stream(rng, region), "currentVersion": "1736900000001",
            "operation": rng.choice(("INCREASE_DATA_RETENTION", "DECREASE_DATA_RETENTION")),
            "dataRetentionChangeInHours": rng.choice((1, 24, 168))}


def _create_stream(rng: random.Random, region: str) -> dict[str, Any]:
    params = {"streamName": f"new-{rng.randrange(10_000)}", "dataRetentionInHours": 24,
              "mediaType": "video/h264"}
    if rng.random() < 0.7:
        key = uuid.UUID(int=rng.getrandbits(128))
        params["kmsKeyId"] = f"arn:aws:kms:{region}:{ACCOUNT}:key/{key}"
    return params


def _bucket(rng: random.Random, region: str) -> dict[str, Any]:
    return {"bucketName": rng.choice(BUCKETS), "Host": "s3.amazonaws.com"}


def _assume(rng: random.Random, region: str) -> dict[str, Any]:
    role = rng.choice(("VideoIngest", "LambdaExecution", "EKSNodeRole", "ReadOnly", "CIDeploy"))
    return {"roleArn": f"arn:aws:iam::{ACCOUNT}:role/{role}",
            "roleSessionName": f"session-{rng.randrange(1000)}", "durationSeconds": 3600}


def _instances(rng: random.Random, region: str) -> dict[str, Any]:
    return {"instancesSet": {"items": [{"instanceId": f"i-{rng.getrandbits(64):016x}"}]},
            "filterSet": {}}


def _run_instances(rng: random.Random, region: str) -> dict[str, Any]:
    return {"instancesSet": {"items": [{"imageId": "ami-0abcdef1234567890", "minCount": 1,
                                        "maxCount": 1}]},
            "instanceType": rng.choice(("t3.micro", "m5.large", "c6i.xlarge"))}


def _decrypt(rng: random.Random, region: str) -> dict[str, Any]:
    return {"encryptionAlgorithm": "SYMMETRIC_DEFAULT",
            "encryptionContext": {"aws:s3:arn": f"arn:aws:s3:::{rng.choice(BUCKETS)}"}}


def _user(rng: random.Random, region: str) -> dict[str, Any]:
    return {"userName": f"svc-{rng.randrange(50)}"}


def _policy(rng: random.Random, region: str) -> dict[str, Any]:
    return {"roleName": "Developer",
            "policyArn": rng.choice(("arn:aws:iam::aws:policy/ReadOnlyAccess",
                                     "arn:aws:iam::aws:policy/AdministratorAccess"))}


def _trail(rng: random.Random, region: str) -> dict[str, Any]:
    return {"name": f"arn:aws:cloudtrail:us-east-1:{ACCOUNT}:trail/org-trail"}


def _none(rng: random.Random, region: str) -> None:
    return None


# (weight, eventSource, eventName, readOnly, request parameters, who: user|role|service|console)
CATALOG: tuple[tuple[float, str, str, bool, Params, str], ...] = (
    (9.0, "kinesisvideo.amazonaws.com", "GetDataEndpoint", True, _endpoint, "role"),
    (5.0, "kinesisvideo.amazonaws.com", "DescribeStream", True, _stream, "role"),
    (3.0, "kinesisvideo.amazonaws.com", "ListStreams", True, _none, "user"),
    (2.0, "kinesisvideo.amazonaws.com", "GetHLSStreamingSessionURL", True, _stream, "role"),
    (1.5, "kinesisvideo.amazonaws.com", "GetSignalingChannelEndpoint", True, _stream, "role"),
    (1.0, "kinesisvideo.amazonaws.com", "DescribeSignalingChannel", True, _stream, "role"),
    (1.0, "kinesisvideo.amazonaws.com", "ListTagsForStream", True, _stream, "user"),
    (0.3, "kinesisvideo.amazonaws.com", "CreateStream", False, _create_stream, "user"),
    (0.2, "kinesisvideo.amazonaws.com", "UpdateDataRetention", False, _retention, "user"),
    (0.2, "kinesisvideo.amazonaws.com", "TagStream", False, _stream, "user"),
    (0.05, "kinesisvideo.amazonaws.com", "UntagStream", False, _stream, "user"),
    (0.1, "kinesisvideo.amazonaws.com", "UpdateStream", False, _stream, "user"),
    (0.05, "kinesisvideo.amazonaws.com", "DeleteStream", False, _stream, "user"),
    (12.0, "sts.amazonaws.com", "AssumeRole", True, _assume, "service"),
    (3.0, "sts.amazonaws.com", "GetCallerIdentity", True, _none, "user"),
    (10.0, "kms.amazonaws.com", "Decrypt", True, _decrypt, "service"),
    (2.0, "kms.amazonaws.com", "GenerateDataKey", True, _decrypt, "service"),
    (8.0, "ec2.amazonaws.com", "DescribeInstances", True, _instances, "role"),
    (3.0, "ec2.amazonaws.com", "DescribeSecurityGroups", True, _none, "role"),
    (2.0, "ec2.amazonaws.com", "DescribeVolumes", True, _none, "role"),
    (0.2, "ec2.amazonaws.com", "RunInstances", False, _run_instances, "role"),
    (0.05, "ec2.amazonaws.com", "AuthorizeSecurityGroupIngress", False, _none, "user"),
    (4.0, "s3.amazonaws.com", "GetBucketAcl", True, _bucket, "service"),
    (3.0, "s3.amazonaws.com", "GetBucketLocation", True, _bucket, "role"),
    (2.0, "s3.amazonaws.com", "ListBuckets", True, _none, "user"),
    (1.0, "s3.amazonaws.com", "GetBucketPolicy", True, _bucket, "user"),
    (0.05, "s3.amazonaws.com", "PutBucketPolicy", False, _bucket, "user"),
    (3.0, "iam.amazonaws.com", "GetRole", True, _none, "role"),
    (2.0, "iam.amazonaws.com", "ListRoles", True, _none, "user"),
    (1.5, "iam.amazonaws.com", "GetUser", True, _user, "user"),
    (1.0, "iam.amazonaws.com", "ListAttachedRolePolicies", True, _none, "role"),
    (0.05, "iam.amazonaws.com", "CreateUser", False, _user, "user"),
    (0.05, "iam.amazonaws.com", "CreateAccessKey", False, _user, "user"),
    (0.05, "iam.amazonaws.com", "AttachRolePolicy", False, _policy, "user"),
    (2.0, "cloudtrail.amazonaws.com", "LookupEvents", True, _none, "user"),
    (1.0, "cloudtrail.amazonaws.com", "DescribeTrails", True, _none, "role"),
    (0.02, "cloudtrail.amazonaws.com", "StopLogging", False, _trail, "user"),
    (1.0, "signin.amazonaws.com", "ConsoleLogin", False, _none, "console"),
    (2.0, "logs.amazonaws.com", "CreateLogStream", False, _none, "service"),
    (2.0, "lambda.amazonaws.com", "ListFunctions20150331", True, _none, "role"),
    (1.0, "ssm.amazonaws.com", "GetParameter", True, _none, "role"),
    (1.0, "secretsmanager.amazonaws.com", "GetSecretValue", True, _none, "role"),
)
SERVICES = ("ec2.amazonaws.com", "lambda.amazonaws.com", "eks.amazonaws.com",
            "cloudtrail.amazonaws.com", "s3.amazonaws.com")
DENIED = {"kinesisvideo.amazonaws.com": "AccessDeniedException",
          "ec2.amazonaws.com": "Client.UnauthorizedOperation"}


class MixGenerator:
    """Yields CloudTrail records (dicts) in event-time order with a little disorder."""

    def __init__(self, seed: int = 20261125, *, users: int = 40, span_hours: float = 6.0) -> None:
        self.rng = random.Random(seed)
        self.users = _users(users)
        self.roles = _roles()
        self.span = span_hours * 3600
        self.weights = [entry[0] for entry in CATALOG]
        self.agent_weights = [weight for weight, _ in USER_AGENTS]
        self.corporate = [f"10.{a}.{b}.{c}" for a, b, c in
                          ((self.rng.randrange(1, 40), self.rng.randrange(256),
                            self.rng.randrange(1, 255)) for _ in range(120))]

    def records(self, count: int) -> list[dict[str, Any]]:
        step = self.span / max(count, 1)
        return [self.record(START + timedelta(seconds=max(0.0, n * step
                                                           + self.rng.uniform(-20, 5))))
                for n in range(count)]

    def _who(self, how: str, event_name: str) -> tuple[Principal, str, str]:
        rng = self.rng
        if how == "service":
            service = rng.choice(SERVICES)
            return _service(service), service, "AWS Internal" if rng.random() < 0.5 else service
        if rng.random() < 0.002:
            principal = ROOT
        elif how == "role" or (how != "user" and rng.random() < 0.4):
            principal = rng.choice(self.roles)
        else:
            principal = rng.choice(self.users)
        ip = rng.choice(EXTERNAL_IPS) if rng.random() < 0.04 else rng.choice(self.corporate)
        if how == "console":
            agent = USER_AGENTS[5][1]
        else:
            agent = rng.choices(USER_AGENTS, self.agent_weights)[0][1]
            if event_name.startswith("List") and rng.random() < 0.3:
                agent = USER_AGENTS[5][1]  # browsing in the console
        return principal, ip, agent

    def record(self, when: datetime) -> dict[str, Any]:
        rng = self.rng
        _, source, name, read_only, params, how = rng.choices(CATALOG, self.weights)[0]
        principal, ip, agent = self._who(how, name)
        region = "us-east-1" if source in ("iam.amazonaws.com", "signin.amazonaws.com") else (
            rng.choice(REGIONS))
        record: dict[str, Any] = {
            "eventVersion": "1.09",
            "userIdentity": principal.identity,
            "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "eventSource": source,
            "eventName": name,
            "awsRegion": region,
            "sourceIPAddress": ip,
            "userAgent": agent,
            "requestParameters": params(rng, region),
            "responseElements": None,
            "requestID": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "eventID": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "readOnly": read_only,
            "eventType": "AwsConsoleSignIn" if how == "console" else "AwsApiCall",
            "managementEvent": True,
            "recipientAccountId": ACCOUNT,
            "eventCategory": "Management",
        }
        if how == "console":
            failed = rng.random() < 0.05
            record["responseElements"] = {"ConsoleLogin": "Failure" if failed else "Success"}
            record["additionalEventData"] = {
                "MFAUsed": "Yes" if rng.random() < 0.9 else "No",
                "LoginTo": "https://console.aws.amazon.com/console/home", "MobileVersion": "No"}
            if failed:
                record["errorMessage"] = "Failed authentication"
        elif principal.kind != "AWSService" and rng.random() < 0.05:  # ~3 % of all records
            record["errorCode"] = DENIED.get(source, "AccessDenied")
            record["errorMessage"] = (f"User: {principal.identity['arn']} is not authorized to "
                                      f"perform: {source.split('.')[0]}:{name}")
        elif principal.kind != "AWSService":
            record["tlsDetails"] = {"tlsVersion": "TLSv1.3",
                                    "cipherSuite": "TLS_AES_128_GCM_SHA256",
                                    "clientProvidedHostHeader": f"{source.split('.')[0]}."
                                                                f"{region}.amazonaws.com"}
        return record


def synthetic(count: int, seed: int = 20261125) -> list[dict[str, Any]]:
    """`count` records of the realistic mix, the same for the same seed."""
    return MixGenerator(seed).records(count)


def jsonl_payloads(records: list[dict[str, Any]], per_payload: int) -> list[bytes]:
    """JSON-lines payloads of `per_payload` records each (the last may be shorter)."""
    return [b"\n".join(orjson.dumps(r) for r in records[start:start + per_payload]) + b"\n"
            for start in range(0, len(records), per_payload)]


def decoded(payloads: list[bytes]) -> list[Record]:
    return [record for payload in payloads for record in decode(payload).records]


def real_data_dir() -> Path:
    return Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cloudtrail"


def real_records() -> list[dict[str, Any]]:
    """The real CloudTrail records under ../shared/data/cloudtrail (empty when absent).

    The AWS documentation example is not valid JSON as published, so it is not used here;
    the Stratus Red Team detonations and the OTRF exfiltration data set are.
    """
    root = real_data_dir()
    records: list[dict[str, Any]] = []
    for path in sorted((root / "stratus-red-team").glob("*.json")):
        loaded = json.loads(path.read_text(encoding="utf-8"))
        records.extend(item for item in loaded if isinstance(item, dict))
    for path in sorted((root / "otrf-ec2-proxy-s3-exfiltration").glob("*.zip")):
        records.extend(_zipped_lines(path))
    return records


def _zipped_lines(path: Path) -> Iterator[dict[str, Any]]:
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            for line in archive.read(member).splitlines():
                if line.strip():
                    item = json.loads(line)
                    if isinstance(item, dict):
                        yield item
