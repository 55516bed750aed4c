variable "bucket_name" {
  description = "Name of the S3 bucket the service works in. Created by this module when create_bucket is true, otherwise it must already exist."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name)) && !can(regex("\\.\\.", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name: 3-63 characters of lower-case letters, digits, '.' and '-', starting and ending with a letter or digit."
  }
}

variable "create_bucket" {
  description = "Create the bucket (with public access blocked, encryption, versioning, TLS-only policy and lifecycle rules). Set to false to grant access to an existing bucket only."
  type        = bool
  default     = true
}

variable "s3_prefix" {
  description = "Key prefix the service is confined to (S3_PREFIX), e.g. \"replicas/\". Empty for the whole bucket. The role's policy grants object access under this prefix only."
  type        = string
  default     = ""

  validation {
    condition     = var.s3_prefix == "" || (can(regex("/$", var.s3_prefix)) && !startswith(var.s3_prefix, "/") && length(var.s3_prefix) <= 512)
    error_message = "s3_prefix must be empty or end with '/', must not start with '/', and be at most 512 characters."
  }
}

variable "google_service_account_unique_id" {
  description = "Numeric unique id (21 digits) of the Google service account the service runs as. Metadata-server ID tokens carry it in both azp and sub, so the trust policy matches accounts.google.com:aud and accounts.google.com:sub on it."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{10,32}$", var.google_service_account_unique_id))
    error_message = "google_service_account_unique_id must be the numeric unique id of the service account (google_service_account.unique_id), not its email."
  }
}

variable "target_audience" {
  description = "Audience of the Google ID token the service presents to STS (TARGET_AUDIENCE). The trust policy requires accounts.google.com:oaud to equal it."
  type        = string

  validation {
    condition     = length(trimspace(var.target_audience)) > 0 && length(var.target_audience) <= 1024
    error_message = "target_audience must be a non-empty string of at most 1024 characters."
  }
}

variable "role_name" {
  description = "Name of the IAM role the service assumes with AssumeRoleWithWebIdentity."
  type        = string
  default     = "gcp-aws-bridge"

  validation {
    condition     = can(regex("^[\\w+=,.@-]{1,64}$", var.role_name))
    error_message = "role_name must be 1-64 characters of letters, digits and +=,.@_-."
  }
}

variable "role_path" {
  description = "Path of the IAM role."
  type        = string
  default     = "/"

  validation {
    condition     = can(regex("^/([\\x21-\\x7e]*/)?$", var.role_path))
    error_message = "role_path must start and end with '/'."
  }
}

variable "role_duration_seconds" {
  description = "Session length the service asks STS for (AWS_ROLE_DURATION_SECONDS); also the role's maximum session duration (at least IAM's 3600), so the service never asks for more than the role allows."
  type        = number
  default     = 3600

  validation {
    condition     = var.role_duration_seconds >= 900 && var.role_duration_seconds <= 43200 && floor(var.role_duration_seconds) == var.role_duration_seconds
    error_message = "role_duration_seconds must be a whole number from 900 to 43200."
  }
}

variable "permissions_boundary_arn" {
  description = "ARN of a permissions boundary to put on the role, when the account requires one. Null for none."
  type        = string
  default     = null

  validation {
    condition     = var.permissions_boundary_arn == null || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:policy/", var.permissions_boundary_arn))
    error_message = "permissions_boundary_arn must be an IAM policy ARN."
  }
}

variable "allow_list_all_buckets" {
  description = "Grant s3:ListAllMyBuckets, which only the GET /v1/buckets demo route needs. It reveals bucket names in the account, nothing inside them."
  type        = bool
  default     = true
}

variable "kms_key_arn" {
  description = "ARN of a KMS key for default bucket encryption (SSE-KMS with an S3 bucket key) and granted to the role. Null for SSE-S3 (AES256)."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "access_log_bucket" {
  description = "Name of an existing bucket that receives the server access logs of the created bucket. Null for no access logging."
  type        = string
  default     = null
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which noncurrent object versions of the created bucket are deleted. Incomplete multipart uploads are always aborted after 7 days, and the service's bookkeeping under \"<s3_prefix>.gcp-aws-bridge/\" expires after 7 days (its noncurrent versions a day later)."
  type        = number
  default     = 90

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1 && floor(var.noncurrent_version_expiration_days) == var.noncurrent_version_expiration_days
    error_message = "noncurrent_version_expiration_days must be a whole number of at least 1."
  }
}

variable "force_destroy" {
  description = "Allow terraform destroy to delete the created bucket with its objects. Keep false outside test environments."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for the role and the bucket."
  type        = map(string)
  default     = {}
}
