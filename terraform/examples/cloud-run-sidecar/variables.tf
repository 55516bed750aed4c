variable "project_id" {
  type        = string
  description = "Google Cloud project of the service."
}

variable "region" {
  type        = string
  description = "Region of the Cloud Run service."
}

variable "service_name" {
  type        = string
  description = "Name of the Cloud Run service (and prefix of its service account and secret)."
  default     = "aws-app"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,21}[a-z0-9]$", var.service_name))
    error_message = "service_name: lower-case letters, digits and hyphens, 2-23 characters, starting with a letter."
  }
}

variable "app_image" {
  type        = string
  description = "The application's image: any language, using its stock AWS SDK. It listens on $PORT (8080)."
}

variable "bridge_image" {
  type        = string
  description = "The gcp-aws-bridge image, run as the sidecar with the argument credential-server."
}

variable "target_audience" {
  type        = string
  description = "aud of the Google ID token presented to STS (the trust policy's accounts.google.com:oaud)."
  default     = "sts.amazonaws.com"
}

variable "aws_region" {
  type        = string
  description = "AWS region of STS (regional endpoint) and of the application's AWS calls."
}

variable "aws_role_arn" {
  type        = string
  description = "The role served at /v1/credentials. Its trust policy names the service account's unique id (output service_account_unique_id; terraform/modules/aws writes it)."

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$", var.aws_role_arn))
    error_message = "aws_role_arn must be an IAM role ARN (arn:aws:iam::123456789012:role/NAME)."
  }
}

variable "aws_roles" {
  type        = map(string)
  description = "Further roles by name, served at /v1/credentials/{name} (AWS_ROLES)."
  default     = {}

  validation {
    condition     = alltrue([for n, arn in var.aws_roles : can(regex("^[A-Za-z0-9_.-]{1,64}$", n)) && can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$", arn))])
    error_message = "aws_roles: names of 1-64 characters of A-Z a-z 0-9 _ . -, values role ARNs."
  }
}

variable "role_duration_seconds" {
  type        = number
  description = "STS session duration, 900-43200; at most the role's maximum session duration."
  default     = 3600

  validation {
    condition     = var.role_duration_seconds >= 900 && var.role_duration_seconds <= 43200
    error_message = "role_duration_seconds must be between 900 and 43200."
  }
}

variable "credentials_port" {
  type        = number
  description = "Loopback port of the credential server (CREDENTIALS_ADDR 127.0.0.1:PORT)."
  default     = 9911
}

variable "health_port" {
  type        = number
  description = "Port of the sidecar's /healthz-only listener, for its startup probe (CREDENTIALS_HEALTH_ADDR)."
  default     = 9912
}

variable "max_instance_count" {
  type        = number
  description = "Upper bound of instances."
  default     = 10
}

variable "invoker_members" {
  type        = list(string)
  description = "Principals given roles/run.invoker on the service (it is private)."
  default     = []
}
