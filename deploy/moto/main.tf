# Test fixture: applies terraform/modules/aws against a local moto server.
# The moto-specific provider settings live here only, never in the module.

terraform {
  # State goes where check.sh points it (-backend-config=path=...).
  backend "local" {}

  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40.0, < 7.0.0"
    }
  }
}

variable "moto_endpoint" {
  description = "Base URL of the moto server, e.g. http://127.0.0.1:5599."
  type        = string
}

variable "access_key" {
  description = "Access key id of the moto admin user (any value when moto runs without auth)."
  type        = string
  sensitive   = true
}

variable "secret_key" {
  description = "Secret access key of the moto admin user."
  type        = string
  sensitive   = true
}

variable "region" {
  description = "Region to create the bucket in."
  type        = string
  default     = "us-east-1"
}

variable "bucket_name" {
  description = "Bucket created for the end-to-end tests."
  type        = string
  default     = "gcp-aws-bridge-e2e"
}

variable "s3_prefix" {
  description = "Prefix the role is confined to."
  type        = string
  default     = "bridge/"
}

variable "google_service_account_unique_id" {
  description = "Unique id the trust policy admits; the default is the unique id testkit's metadata emulator puts in sub and azp."
  type        = string
  default     = "104857600000000000001"
}

variable "target_audience" {
  description = "Audience the trust policy admits."
  type        = string
  default     = "sts.amazonaws.com"
}

variable "role_duration_seconds" {
  description = "Role maximum session duration and service AWS_ROLE_DURATION_SECONDS."
  type        = number
  default     = 3600
}

provider "aws" {
  region                      = var.region
  access_key                  = var.access_key
  secret_key                  = var.secret_key
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  s3_use_path_style           = true

  endpoints {
    iam = var.moto_endpoint
    s3  = var.moto_endpoint
    sts = var.moto_endpoint
  }
}

module "aws" {
  source = "../../terraform/modules/aws"

  bucket_name                      = var.bucket_name
  s3_prefix                        = var.s3_prefix
  google_service_account_unique_id = var.google_service_account_unique_id
  target_audience                  = var.target_audience
  role_name                        = "gcp-aws-bridge-e2e"
  role_duration_seconds            = var.role_duration_seconds
  force_destroy                    = true
  tags = {
    purpose = "gcp-aws-bridge-e2e"
  }
}

output "role_arn" {
  description = "ARN of the role the service assumes."
  value       = module.aws.role_arn
}

output "role_name" {
  description = "Name of the role."
  value       = module.aws.role_name
}

output "role_max_session_duration" {
  description = "Role maximum session duration in seconds."
  value       = module.aws.role_max_session_duration
}

output "role_duration_seconds" {
  description = "AWS_ROLE_DURATION_SECONDS for the service."
  value       = module.aws.role_duration_seconds
}

output "bucket_name" {
  description = "S3_BUCKET for the service."
  value       = module.aws.bucket_name
}

output "bucket_arn" {
  description = "ARN of the bucket."
  value       = module.aws.bucket_arn
}

output "s3_prefix" {
  description = "S3_PREFIX for the service."
  value       = module.aws.s3_prefix
}

output "target_audience" {
  description = "TARGET_AUDIENCE for the service."
  value       = module.aws.target_audience
}

output "google_service_account_unique_id" {
  description = "Unique id the trust policy admits."
  value       = module.aws.google_service_account_unique_id
}

output "region" {
  description = "AWS_REGION for the service."
  value       = var.region
}

output "trust_policy_json" {
  description = "Trust policy as rendered by Terraform."
  value       = module.aws.trust_policy_json
}
