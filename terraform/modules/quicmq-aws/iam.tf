# Instance profiles: SSM Session Manager (no SSH needed), reading the cluster
# keys (and the TLS secret) by ARN, fetching the release from S3; nodes may
# also attach their own data volume and write their own DNS record. Each
# role reads only its own cluster TLS secret: a router instance never holds
# the node certificate, which would let it join the cluster.

locals {
  keys_in_sm = can(regex("^arn:[^:]+:secretsmanager:", var.cluster_keys_secret_arn))
  tls_in_sm  = can(regex("^arn:[^:]+:secretsmanager:", var.tls_secret_arn))
  pw_in_sm   = can(regex("^arn:[^:]+:secretsmanager:", var.password_file_secret_arn))

  cluster_tls_node_in_sm   = can(regex("^arn:[^:]+:secretsmanager:", var.cluster_tls_node_secret_arn))
  cluster_tls_router_in_sm = can(regex("^arn:[^:]+:secretsmanager:", var.cluster_tls_router_secret_arn))
  admin_token_in_sm        = can(regex("^arn:[^:]+:secretsmanager:", var.admin_token_secret_arn))
}

data "aws_iam_policy_document" "assume_ec2" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

# Shared by nodes and routers: the cluster keys and the release download.
data "aws_iam_policy_document" "common" {
  statement {
    sid       = "ReadClusterKeys"
    actions   = [local.keys_in_sm ? "secretsmanager:GetSecretValue" : "ssm:GetParameter"]
    resources = [var.cluster_keys_secret_arn]
  }

  dynamic "statement" {
    for_each = var.kms_key_arn != null ? [1] : []
    content {
      sid       = "DecryptWithClusterKey"
      actions   = ["kms:Decrypt"]
      resources = [var.kms_key_arn]
    }
  }

  dynamic "statement" {
    for_each = local.binaries_in_s3 ? [1] : []
    content {
      sid       = "FetchRelease"
      actions   = ["s3:GetObject"]
      resources = [local.binaries_s3_arn]
    }
  }

}

data "aws_iam_policy_document" "node" {
  statement {
    sid       = "ReadOwnSlotTag"
    actions   = ["ec2:DescribeTags"]
    resources = ["*"]
  }

  statement {
    sid       = "ReadNodeClusterCertificate"
    actions   = [local.cluster_tls_node_in_sm ? "secretsmanager:GetSecretValue" : "ssm:GetParameter"]
    resources = [var.cluster_tls_node_secret_arn]
  }

  statement {
    sid       = "ReadAdminToken"
    actions   = [local.admin_token_in_sm ? "secretsmanager:GetSecretValue" : "ssm:GetParameter"]
    resources = [var.admin_token_secret_arn]
  }

  dynamic "statement" {
    for_each = var.tls_secret_arn != null ? [1] : []
    content {
      sid       = "ReadTlsCertificate"
      actions   = [local.tls_in_sm ? "secretsmanager:GetSecretValue" : "ssm:GetParameter"]
      resources = [var.tls_secret_arn]
    }
  }

  dynamic "statement" {
    for_each = var.password_file_secret_arn != null ? [1] : []
    content {
      sid       = "ReadPasswordFile"
      actions   = [local.pw_in_sm ? "secretsmanager:GetSecretValue" : "ssm:GetParameter"]
      resources = [var.password_file_secret_arn]
    }
  }

  statement {
    sid       = "FindDataVolume"
    actions   = ["ec2:DescribeVolumes"]
    resources = ["*"]
  }

  statement {
    sid     = "AttachOwnDataVolume"
    actions = ["ec2:AttachVolume"]
    resources = [
      "arn:${data.aws_partition.current.partition}:ec2:*:*:volume/*",
      "arn:${data.aws_partition.current.partition}:ec2:*:*:instance/*",
    ]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/quicmq:cluster"
      values   = [var.name]
    }
  }

  statement {
    sid       = "WriteOwnDnsRecord"
    actions   = ["route53:ChangeResourceRecordSets"]
    resources = ["arn:${data.aws_partition.current.partition}:route53:::hostedzone/${local.zone_id}"]
    condition {
      test     = "ForAllValues:StringLike"
      variable = "route53:ChangeResourceRecordSetsNormalizedRecordNames"
      values   = ["node-*.${lower(local.zone_name)}"]
    }
  }

  statement {
    sid       = "WaitForDnsChange"
    actions   = ["route53:GetChange"]
    resources = ["arn:${data.aws_partition.current.partition}:route53:::change/*"]
  }
}

data "aws_iam_policy_document" "router" {
  statement {
    sid       = "ReadRouterClusterCertificate"
    actions   = [local.cluster_tls_router_in_sm ? "secretsmanager:GetSecretValue" : "ssm:GetParameter"]
    resources = [var.cluster_tls_router_secret_arn]
  }
}

resource "aws_iam_role" "node" {
  name_prefix        = "${var.name}-node-"
  assume_role_policy = data.aws_iam_policy_document.assume_ec2.json
  tags               = local.common_tags
}

resource "aws_iam_role" "router" {
  name_prefix        = "${var.name}-router-"
  assume_role_policy = data.aws_iam_policy_document.assume_ec2.json
  tags               = local.common_tags
}

resource "aws_iam_role_policy_attachment" "node_ssm" {
  role       = aws_iam_role.node.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_role_policy_attachment" "router_ssm" {
  role       = aws_iam_role.router.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_role_policy" "node_common" {
  name   = "quicmq-common"
  role   = aws_iam_role.node.id
  policy = data.aws_iam_policy_document.common.json
}

resource "aws_iam_role_policy" "node" {
  name   = "quicmq-node"
  role   = aws_iam_role.node.id
  policy = data.aws_iam_policy_document.node.json
}

resource "aws_iam_role_policy" "router_common" {
  name   = "quicmq-common"
  role   = aws_iam_role.router.id
  policy = data.aws_iam_policy_document.common.json
}

resource "aws_iam_role_policy" "router" {
  name   = "quicmq-router"
  role   = aws_iam_role.router.id
  policy = data.aws_iam_policy_document.router.json
}

resource "aws_iam_instance_profile" "node" {
  name_prefix = "${var.name}-node-"
  role        = aws_iam_role.node.name
  tags        = local.common_tags
}

resource "aws_iam_instance_profile" "router" {
  name_prefix = "${var.name}-router-"
  role        = aws_iam_role.router.name
  tags        = local.common_tags
}
