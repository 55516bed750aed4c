variable "project_id" {
  description = "Google Cloud project id."
  type        = string
}

variable "project_number" {
  description = "Google Cloud project number (part of the deterministic service URL)."
  type        = string

  validation {
    condition     = can(regex("^[0-9]+$", var.project_number))
    error_message = "project_number must be digits."
  }
}

variable "region" {
  description = "Region of the Cloud Run service."
  type        = string
}

variable "name" {
  description = "Name of the Cloud Run service; the service accounts are named after it."
  type        = string
}

variable "target_audience" {
  description = "TARGET_AUDIENCE: aud of the service's own ID token, presented to AWS STS."
  type        = string
}

variable "aws_role_arn" {
  description = "AWS_ROLE_ARN: the role the service assumes."
  type        = string
}

variable "aws_region" {
  description = "AWS_REGION: region of STS and S3."
  type        = string
}

variable "aws_role_duration_seconds" {
  description = "AWS_ROLE_DURATION_SECONDS."
  type        = number
  default     = 3600
}

variable "s3_bucket" {
  description = "S3_BUCKET."
  type        = string
}

variable "s3_prefix" {
  description = "S3_PREFIX (empty: the whole bucket)."
  type        = string
  default     = ""
}

variable "auth_mode" {
  description = "AUTH_MODE: cloud-run-iam (Cloud Run checks the signature and roles/run.invoker), verify or none."
  type        = string
  default     = "cloud-run-iam"

  validation {
    condition     = contains(["verify", "cloud-run-iam", "none"], var.auth_mode)
    error_message = "auth_mode must be one of verify, cloud-run-iam, none."
  }
}

variable "additional_auth_audiences" {
  description = "Audiences accepted besides the service URL: the service's AUTH_AUDIENCES and Cloud Run's custom audiences."
  type        = list(string)
  default     = []
}

variable "additional_invokers" {
  description = "Members (serviceAccount:EMAIL, user:EMAIL, group:EMAIL) given roles/run.invoker; their service account and user emails are allowed by the service too."
  type        = list(string)
  default     = []
}

variable "gcs_source_bucket" {
  description = "Cloud Storage bucket wired to Eventarc and replicated (GCS_SOURCE_BUCKETS); null for none."
  type        = string
  default     = null
}

variable "log_format" {
  description = "LOG_FORMAT: json or text."
  type        = string
  default     = "json"
}

variable "max_body_bytes" {
  description = "MAX_BODY_BYTES."
  type        = number
  default     = 33554432
}

variable "max_object_bytes" {
  description = "MAX_OBJECT_BYTES: largest object a PUT or a replication writes (the gcp module validates it against the buffer budget)."
  type        = number
  default     = 1099511627776
}

variable "buffer_budget_bytes" {
  description = "BUFFER_BUDGET_BYTES; null: unset (the service takes half its memory limit)."
  type        = number
  default     = null
}

variable "request_timeout_seconds" {
  description = "Cloud Run's request timeout; the service's own deadline (REQUEST_TIMEOUT_SECONDS) ends 5 s before it, so that the service answers (503, redelivered) rather than Cloud Run (504)."
  type        = number
  default     = 300

  validation {
    condition     = var.request_timeout_seconds >= 1 && var.request_timeout_seconds <= 3600
    error_message = "request_timeout_seconds must be from 1 to 3600."
  }
}

variable "use_http2" {
  description = "HTTP/2 end to end: Cloud Run speaks h2c to the container (port named h2c), which lifts the 32 MiB request limit of HTTP/1 for PUT /v1/objects."
  type        = bool
  default     = true
}

variable "extra_env" {
  description = "Further environment variables; must not repeat the ones computed here."
  type        = map(string)
  default     = {}
}

variable "part_task_bytes" {
  description = "PART_TASK_BYTES: objects of at least this size are replicated in parts, one Pub/Sub command per part."
  type        = number
  default     = 1073741824
}
