"""Every SigmaHQ CloudTrail rule in ../shared/data loads unmodified and fires on a positive
event written for it, and stays silent on a negative one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import SHARED_DATA, record

from detector.engine import load_rules
from detector.engine.factory import make_engine

SIGMA_DIR = SHARED_DATA / "sigma" / "aws-cloudtrail"
pytestmark = pytest.mark.skipif(not SIGMA_DIR.is_dir(), reason=f"{SIGMA_DIR} is absent")

UPDATE_FUNCTION = "UpdateFunctionConfiguration20150331v2"
PLACEHOLDER_RULE = "aws_cloudtrail_console_login_success_from_susp_locations.yml"
ADMIN = {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/alice", "userName": "alice"}
# file -> (positive event fields, negative event fields)
CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "aws_cloudtrail_bedrock_guardrail_deleted.yml": (
        {"eventSource": "bedrock.amazonaws.com", "eventName": "DeleteGuardrail"},
        {"eventSource": "bedrock.amazonaws.com", "eventName": "GetGuardrail"}),
    "aws_cloudtrail_bedrock_guardrail_updated.yml": (
        {"eventSource": "bedrock.amazonaws.com", "eventName": "UpdateGuardrail"},
        {"eventSource": "bedrock.amazonaws.com", "eventName": "ListGuardrails"}),
    "aws_cloudtrail_bucket_deleted.yml": (
        {"eventSource": "s3.amazonaws.com", "eventName": "DeleteBucket"},
        {"eventSource": "s3.amazonaws.com", "eventName": "DeleteBucket",
         "errorCode": "AccessDenied"}),
    "aws_cloudtrail_console_login_failed_authentication.yml": (
        {"eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin",
         "errorMessage": "Failed authentication"},
        {"eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin",
         "responseElements": {"ConsoleLogin": "Success"}}),
    "aws_cloudtrail_console_login_success_from_susp_locations.yml": (
        {"eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin",
         "responseElements": {"ConsoleLogin": "Success"}, "src_country": "Atlantis",
         "src_ip": "203.0.113.77"},
        {"eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin",
         "responseElements": {"ConsoleLogin": "Success"}, "src_country": "Atlantis",
         "src_ip": "198.51.100.20"}),
    "aws_cloudtrail_disable_logging.yml": (
        {"eventSource": "cloudtrail.amazonaws.com", "eventName": "StopLogging"},
        {"eventSource": "cloudtrail.amazonaws.com", "eventName": "StartLogging"}),
    "aws_cloudtrail_new_acl_entries.yml": (
        {"eventSource": "ec2.amazonaws.com", "eventName": "CreateNetworkAclEntry"},
        {"eventSource": "ec2.amazonaws.com", "eventName": "DescribeNetworkAcls"}),
    "aws_cloudtrail_new_route_added.yml": (
        {"eventSource": "ec2.amazonaws.com", "eventName": "CreateRoute"},
        {"eventSource": "ec2.amazonaws.com", "eventName": "DeleteRoute"}),
    "aws_cloudtrail_pua_trufflehog.yml": (
        {"eventSource": "s3.amazonaws.com", "eventName": "ListBuckets", "userAgent": "TruffleHog"},
        {"eventSource": "s3.amazonaws.com", "eventName": "ListBuckets",
         "userAgent": "TruffleHog/3.63 (scanner)"}),
    "aws_cloudtrail_security_group_change_ingress_egress.yml": (
        {"eventSource": "ec2.amazonaws.com", "eventName": "AuthorizeSecurityGroupIngress"},
        {"eventSource": "ec2.amazonaws.com", "eventName": "DescribeSecurityGroups"}),
    "aws_cloudtrail_security_group_change_loadbalancer.yml": (
        {"eventSource": "elasticloadbalancing.amazonaws.com", "eventName": "SetSecurityGroups"},
        {"eventSource": "elasticloadbalancing.amazonaws.com",
         "eventName": "DescribeLoadBalancers"}),
    "aws_cloudtrail_security_group_change_rds.yml": (
        {"eventSource": "rds.amazonaws.com", "eventName": "CreateDBSecurityGroup"},
        {"eventSource": "rds.amazonaws.com", "eventName": "DescribeDBSecurityGroups"}),
    "aws_config_disable_recording.yml": (
        {"eventSource": "config.amazonaws.com", "eventName": "StopConfigurationRecorder"},
        {"eventSource": "config.amazonaws.com", "eventName": "StartConfigurationRecorder"}),
    "aws_delete_identity.yml": (
        {"eventSource": "ses.amazonaws.com", "eventName": "DeleteIdentity"},
        {"eventSource": "ses.amazonaws.com", "eventName": "VerifyEmailIdentity"}),
    "aws_disable_bucket_versioning.yml": (
        {"eventSource": "s3.amazonaws.com", "eventName": "PutBucketVersioning",
         "requestParameters": {"bucketName": "b", "VersioningConfiguration": {
             "Status": "Suspended"}}},
        {"eventSource": "s3.amazonaws.com", "eventName": "PutBucketVersioning",
         "requestParameters": {"bucketName": "b", "VersioningConfiguration": {
             "Status": "Enabled"}}}),
    "aws_ec2_disable_encryption.yml": (
        {"eventSource": "ec2.amazonaws.com", "eventName": "DisableEbsEncryptionByDefault"},
        {"eventSource": "ec2.amazonaws.com", "eventName": "EnableEbsEncryptionByDefault"}),
    "aws_ec2_import_key_pair_activity.yml": (
        {"eventSource": "ec2.amazonaws.com", "eventName": "ImportKeyPair"},
        {"eventSource": "ec2.amazonaws.com", "eventName": "DescribeKeyPairs"}),
    "aws_ec2_vm_export_failure.yml": (
        {"eventSource": "ec2.amazonaws.com", "eventName": "CreateInstanceExportTask",
         "responseElements": {"exportTask": {"state": "active"}}},
        {"eventSource": "ec2.amazonaws.com", "eventName": "CreateInstanceExportTask",
         "errorCode": "UnauthorizedOperation", "errorMessage": "You are not authorized"}),
    "aws_ecs_task_definition_cred_endpoint_query.yml": (
        {"eventSource": "ecs.amazonaws.com", "eventName": "RegisterTaskDefinition",
         "requestParameters": {"containerDefinitions": [{"command": [
             "sh", "-c", "curl 169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]}]}},
        {"eventSource": "ecs.amazonaws.com", "eventName": "RegisterTaskDefinition",
         "requestParameters": {"containerDefinitions": [{"command": ["nginx"]}]}}),
    "aws_efs_fileshare_mount_modified_or_deleted.yml": (
        {"eventSource": "elasticfilesystem.amazonaws.com", "eventName": "DeleteMountTarget"},
        {"eventSource": "elasticfilesystem.amazonaws.com", "eventName": "CreateMountTarget"}),
    "aws_eks_cluster_created_or_deleted.yml": (
        {"eventSource": "eks.amazonaws.com", "eventName": "DeleteCluster"},
        {"eventSource": "eks.amazonaws.com", "eventName": "DescribeCluster"}),
    "aws_elasticache_security_group_created.yml": (
        {"eventSource": "elasticache.amazonaws.com", "eventName": "CreateCacheSecurityGroup"},
        {"eventSource": "elasticache.amazonaws.com", "eventName": "DescribeCacheClusters"}),
    "aws_elasticache_security_group_modified_or_deleted.yml": (
        {"eventSource": "elasticache.amazonaws.com", "eventName": "DeleteCacheSecurityGroup"},
        {"eventSource": "elasticache.amazonaws.com", "eventName": "CreateCacheSecurityGroup"}),
    "aws_guardduty_disruption.yml": (
        {"eventSource": "guardduty.amazonaws.com", "eventName": "CreateIPSet"},
        {"eventSource": "guardduty.amazonaws.com", "eventName": "ListIPSets"}),
    "aws_iam_backdoor_users_keys.yml": (
        {"eventSource": "iam.amazonaws.com", "eventName": "CreateAccessKey", "userIdentity": ADMIN,
         "responseElements": {"accessKey": {"userName": "mallory"}}},
        {"eventSource": "iam.amazonaws.com", "eventName": "ListAccessKeys",
         "userIdentity": ADMIN}),
    "aws_iam_s3browser_loginprofile_creation.yml": (
        {"eventSource": "iam.amazonaws.com", "eventName": "CreateLoginProfile",
         "userAgent": "S3 Browser 11.5.7 https://s3browser.com"},
        {"eventSource": "iam.amazonaws.com", "eventName": "CreateLoginProfile",
         "userAgent": "aws-cli/2.15.0"}),
    "aws_iam_s3browser_user_or_accesskey_creation.yml": (
        {"eventSource": "iam.amazonaws.com", "eventName": "CreateUser",
         "userAgent": "S3 Browser 11.5.7 https://s3browser.com"},
        {"eventSource": "iam.amazonaws.com", "eventName": "CreateUser",
         "userAgent": "console.amazonaws.com"}),
    "aws_new_lambda_layer_attached.yml": (
        {"eventSource": "lambda.amazonaws.com", "eventName": UPDATE_FUNCTION,
         "requestParameters": {"functionName": "f", "layers": [
             "arn:aws:lambda:us-east-1:444455556666:layer:evil:1"]}},
        {"eventSource": "lambda.amazonaws.com", "eventName": UPDATE_FUNCTION,
         "requestParameters": {"functionName": "f", "timeout": 30}}),
    "aws_passed_role_to_glue_development_endpoint.yml": (
        {"eventSource": "glue.amazonaws.com", "eventName": "CreateDevEndpoint"},
        {"eventSource": "glue.amazonaws.com", "eventName": "GetDevEndpoints"}),
    "aws_rds_dbcluster_actions.yml": (
        {"eventSource": "rds.amazonaws.com", "eventName": "ModifyDBCluster"},
        {"eventSource": "rds.amazonaws.com", "eventName": "DescribeDBClusters"}),
    "aws_rds_public_db_restore.yml": (
        {"eventSource": "rds.amazonaws.com", "eventName": "RestoreDBInstanceFromDBSnapshot",
         "responseElements": {"publiclyAccessible": True}},
        {"eventSource": "rds.amazonaws.com", "eventName": "RestoreDBInstanceFromDBSnapshot",
         "responseElements": {"publiclyAccessible": False}}),
    "aws_route_53_domain_transferred_lock_disabled.yml": (
        {"eventSource": "route53.amazonaws.com", "eventName": "DisableDomainTransferLock"},
        {"eventSource": "route53.amazonaws.com", "eventName": "EnableDomainTransferLock"}),
    "aws_securityhub_finding_evasion.yml": (
        {"eventSource": "securityhub.amazonaws.com", "eventName": "BatchUpdateFindings"},
        {"eventSource": "securityhub.amazonaws.com", "eventName": "GetFindings"}),
    "aws_sts_getcalleridentity_trufflehog.yml": (
        {"eventSource": "sts.amazonaws.com", "eventName": "GetCallerIdentity",
         "userAgent": "TruffleHog/3.63.0"},
        {"eventSource": "sts.amazonaws.com", "eventName": "GetCallerIdentity",
         "userAgent": "aws-cli/2.15.0"}),
    "aws_sts_getsessiontoken_misuse.yml": (
        {"eventSource": "sts.amazonaws.com", "eventName": "GetSessionToken",
         "userIdentity": ADMIN},
        {"eventSource": "sts.amazonaws.com", "eventName": "GetSessionToken",
         "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::1:assumed-role/r/s"}}),
}
PLACEHOLDER_LISTS = {
    "Legitimate_Countries": ["Wonderland"],
    "Legitimate_IP_Ranges": ["198.51.100.0/24", "10.0.0.0/8"],
}


@pytest.fixture(scope="module")
def lists_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("lists")
    (directory / "legitimate.yml").write_text("".join(
        f"{name}:\n" + "".join(f"  - '{value}'\n" for value in values)
        for name, values in PLACEHOLDER_LISTS.items()
    ))
    return directory


def test_every_rule_file_has_a_case() -> None:
    assert sorted(CASES) == sorted(path.name for path in SIGMA_DIR.glob("*.yml"))


def test_all_rules_load_unmodified_given_the_placeholder_lists(lists_dir: Path) -> None:
    result = load_rules([SIGMA_DIR], [lists_dir])
    assert result.errors == []
    assert len(result.ruleset.rules) == len(CASES)


def test_the_placeholder_rule_is_refused_without_its_lists() -> None:
    result = load_rules([SIGMA_DIR])
    assert len(result.errors) == 1
    error = result.errors[0]
    assert error.location.path.endswith(PLACEHOLDER_RULE)
    assert "%Legitimate_Countries%" in error.message
    assert "lists directory" in error.message


@pytest.mark.parametrize("filename", sorted(CASES))
def test_rule_fires_on_its_positive_event_only(filename: str, lists_dir: Path) -> None:
    result = load_rules([SIGMA_DIR / filename], [lists_dir])
    assert result.errors == []
    (rule,) = result.ruleset.rules
    engine = make_engine(result.ruleset)
    positive, negative = CASES[filename]
    assert [a.rule_id for a in engine.process(record(**positive))] == [rule.id]
    assert engine.process(record(**negative)) == []
