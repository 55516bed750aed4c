# A stock Terraform configuration for the credential-server tests
# (tests/integration/sdk_clients.rs). The AWS provider is given no credentials: it finds
# them through AWS_CONTAINER_CREDENTIALS_FULL_URI and
# AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE). The endpoints point at the test
# rig (moto behind the test proxies).

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0, < 6.0"
    }
  }
}

variable "endpoint" {
  type        = string
  description = "The rig's AWS endpoint (STS and S3)."
}

variable "bucket" {
  type        = string
  description = "The bucket to write to."
}

variable "key" {
  type        = string
  description = "The key of the object to write."
}

provider "aws" {
  region                  = "us-east-1"
  s3_use_path_style       = true
  skip_metadata_api_check = true
  skip_region_validation  = true
  endpoints {
    s3  = var.endpoint
    sts = var.endpoint
  }
}

data "aws_caller_identity" "current" {}

resource "aws_s3_object" "hello" {
  bucket  = var.bucket
  key     = var.key
  content = "written by Terraform with credentials from gcp-aws-bridge credential-server"
}

output "arn" {
  description = "The caller's ARN, as STS GetCallerIdentity answers it."
  value       = data.aws_caller_identity.current.arn
}
