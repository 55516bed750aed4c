# AWS side of gcp-aws-bridge: the bucket the service writes to and the role it
# assumes with a Google ID token. No IAM OIDC provider is created:
# accounts.google.com is built into AWS as a web identity provider.

data "aws_partition" "current" {}

locals {
  bucket_arn = "arn:${data.aws_partition.current.partition}:s3:::${var.bucket_name}"
  # Object ARNs the role may touch: everything under the prefix ("*" when empty).
  objects_arn = "${local.bucket_arn}/${var.s3_prefix}*"
  # The service's own bookkeeping lives under this reserved key prefix.
  bookkeeping_prefix = "${var.s3_prefix}.gcp-aws-bridge/"
}

# ---------------------------------------------------------------------------
# Role and trust policy
# ---------------------------------------------------------------------------

# Google ID tokens map onto these condition keys (AWS documentation, "Available
# keys for AWS web identity federation"):
#   accounts.google.com:oaud <- the token's aud (the target audience)
#   accounts.google.com:aud  <- the token's azp
#   accounts.google.com:sub  <- the token's sub
# A token from the metadata server carries azp = sub = the service account's
# numeric unique id; its email is never in azp for such tokens, so a policy keyed
# on the email refuses the service.
data "aws_iam_policy_document" "trust" {
  statement {
    sid     = "GoogleServiceAccount"
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = ["accounts.google.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "accounts.google.com:aud"
      values   = [var.google_service_account_unique_id]
    }

    condition {
      test     = "StringEquals"
      variable = "accounts.google.com:oaud"
      values   = [var.target_audience]
    }

    condition {
      test     = "StringEquals"
      variable = "accounts.google.com:sub"
      values   = [var.google_service_account_unique_id]
    }
  }
}

resource "aws_iam_role" "bridge" {
  name                 = var.role_name
  path                 = var.role_path
  description          = "Assumed by the gcp-aws-bridge Cloud Run service with its Google ID token."
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  max_session_duration = max(3600, var.role_duration_seconds) # IAM allows 1 h at least; STS asks for the duration
  permissions_boundary = var.permissions_boundary_arn
  tags                 = var.tags
}

# ---------------------------------------------------------------------------
# Least-privilege access to the bucket and prefix
# ---------------------------------------------------------------------------

data "aws_iam_policy_document" "access" {
  # ListObjectVersions (s3:ListBucketVersions) finds the noncurrent versions
  # of a replica that a removal also removes; both listings take s3:prefix.
  statement {
    sid       = "ListPrefix"
    effect    = "Allow"
    actions   = ["s3:ListBucket", "s3:ListBucketVersions"]
    resources = [local.bucket_arn]

    dynamic "condition" {
      for_each = var.s3_prefix == "" ? [] : [var.s3_prefix]
      content {
        test     = "StringLike"
        variable = "s3:prefix"
        values   = ["${condition.value}*"]
      }
    }
  }

  statement {
    sid       = "MultipartUploadsInBucket"
    effect    = "Allow"
    actions   = ["s3:ListBucketMultipartUploads"]
    resources = [local.bucket_arn]
  }

  statement {
    sid    = "ObjectsUnderPrefix"
    effect = "Allow"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      # On the versioned bucket a replica's removal deletes the version it
      # checked and the noncurrent versions that are replicas of the same
      # bucket, after reading their metadata (HeadObject with versionId).
      "s3:DeleteObjectVersion",
      "s3:GetObjectVersion",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = [local.objects_arn]
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]
    content {
      sid       = "BucketKey"
      effect    = "Allow"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    for_each = var.allow_list_all_buckets ? [true] : []
    content {
      sid       = "ListAllMyBucketsForDemoRoute"
      effect    = "Allow"
      actions   = ["s3:ListAllMyBuckets"]
      resources = ["*"]
    }
  }
}

resource "aws_iam_role_policy" "access" {
  name   = "s3-access"
  role   = aws_iam_role.bridge.id
  policy = data.aws_iam_policy_document.access.json
}

# ---------------------------------------------------------------------------
# Bucket (optional)
# ---------------------------------------------------------------------------

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_144:Cross-region replication is a data-residency decision left to the owner of the bucket.
  #checkov:skip=CKV2_AWS_62:The service writes to the bucket; nothing here consumes S3 event notifications.
  #checkov:skip=CKV_AWS_145:SSE-S3 is the default; SSE-KMS is one variable away (kms_key_arn) and needs a key this module does not own.
  #checkov:skip=CKV_AWS_18:Access logging needs a separate log bucket; it is switched on by access_log_bucket.
  count = var.create_bucket ? 1 : 0

  bucket        = var.bucket_name
  force_destroy = var.force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_public_access_block" "this" {
  count = var.create_bucket ? 1 : 0

  bucket                  = aws_s3_bucket.this[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  count = var.create_bucket ? 1 : 0

  bucket = aws_s3_bucket.this[0].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  count = var.create_bucket ? 1 : 0

  bucket = aws_s3_bucket.this[0].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = var.kms_key_arn != null
  }
}

resource "aws_s3_bucket_versioning" "this" {
  count = var.create_bucket ? 1 : 0

  bucket = aws_s3_bucket.this[0].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  count = var.create_bucket ? 1 : 0

  bucket = aws_s3_bucket.this[0].id

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
  }

  # The service's bookkeeping (sync runs) under the reserved key prefix
  # "<s3_prefix>.gcp-aws-bridge/": expired after 7 days, its noncurrent
  # versions a day later, and the delete markers left behind.
  rule {
    id     = "expire-bridge-bookkeeping"
    status = "Enabled"
    filter {
      prefix = local.bookkeeping_prefix
    }
    expiration {
      days = 7
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }

  rule {
    id     = "remove-bridge-bookkeeping-delete-markers"
    status = "Enabled"
    filter {
      prefix = local.bookkeeping_prefix
    }
    expiration {
      expired_object_delete_marker = true
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

resource "aws_s3_bucket_logging" "this" {
  count = var.create_bucket && var.access_log_bucket != null ? 1 : 0

  bucket        = aws_s3_bucket.this[0].id
  target_bucket = var.access_log_bucket
  target_prefix = "s3/${var.bucket_name}/"
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [local.bucket_arn, "${local.bucket_arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  count = var.create_bucket ? 1 : 0

  bucket = aws_s3_bucket.this[0].id
  policy = data.aws_iam_policy_document.bucket.json

  depends_on = [aws_s3_bucket_public_access_block.this]
}
