terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.10.0, < 8.0.0"
    }
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40.0, < 7.0.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

# Credentials for the AWS side come from the operator's environment (profile,
# SSO); the service itself never holds AWS keys.
provider "aws" {
  region = var.aws_region

  default_tags {
    tags = var.aws_tags
  }
}
