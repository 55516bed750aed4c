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
  description = "AUTH_MODE: cloud-run-iam (Cloud Run checks the signature and roles/run.invoker) or verify. \"none\" (no authentication) is for local use and never deployed."
  type        = string
  default     = "cloud-run-iam"

  validation {
    condition     = contains(["verify", "cloud-run-iam"], var.auth_mode)
    error_message = "auth_mode must be verify or cloud-run-iam (\"none\" is for local use only)."
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
  description = "Cloud Storage bucket whose events (all four types) are delivered to the service and which replication reads (GCS_SOURCE_BUCKETS); null for none."
  type        = string
  default     = null
}

variable "gcs_event_delivery" {
  description = "How the source bucket's events reach the service: \"notification\" (a Cloud Storage Pub/Sub notification to a topic of this deployment, pushed to /pubsub by a subscription with a dead-letter policy) or \"eventarc\" (one Eventarc trigger per event type to /events; Eventarc's own transport subscriptions have no dead-letter topic unless set outside Terraform)."
  type        = string
  default     = "notification"

  validation {
    condition     = contains(["notification", "eventarc"], var.gcs_event_delivery)
    error_message = "gcs_event_delivery must be notification or eventarc."
  }
}

variable "command_ops" {
  description = "COMMAND_OPS: the ops the outside doors (/pubsub, /events, /v1/*) accept; any of put, copy, delete, replicate, sync."
  type        = list(string)
  default     = ["put", "copy", "delete", "replicate", "sync"]

  validation {
    condition     = length(var.command_ops) > 0 && alltrue([for op in var.command_ops : contains(["put", "copy", "delete", "replicate", "sync"], op)]) && length(distinct(var.command_ops)) == length(var.command_ops)
    error_message = "command_ops must be a non-empty list of distinct ops among put, copy, delete, replicate, sync (an empty COMMAND_OPS would fall back to the service's default, all of them)."
  }
}

variable "sync_delete" {
  description = "SYNC_DELETE: whether a sync command may ask for \"delete\": true (removing replicas whose object is gone)."
  type        = bool
  default     = false
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

  validation {
    condition     = !contains(keys(var.extra_env), "PUBSUB_TOPIC")
    error_message = "extra_env must not set PUBSUB_TOPIC: the service publishes its tasks to TASKS_TOPIC, which this module sets, and refuses PUBSUB_TOPIC."
  }
}

variable "part_task_bytes" {
  description = "PART_TASK_BYTES: objects of at least this size are replicated in parts, one Pub/Sub command per part."
  type        = number
  default     = 1073741824
}

variable "metrics" {
  description = "The OpenTelemetry collector runs as a sidecar: OTEL_EXPORTER_OTLP_ENDPOINT names it (http://localhost:4318) and OTEL_METRIC_EXPORT_INTERVAL is set. false: neither is set and the service exports no metrics."
  type        = bool
  default     = false
}

variable "metric_export_interval_ms" {
  description = "OTEL_METRIC_EXPORT_INTERVAL with metrics: milliseconds between two metric exports."
  type        = number
  default     = 60000

  validation {
    condition     = var.metric_export_interval_ms >= 1000 && floor(var.metric_export_interval_ms) == var.metric_export_interval_ms
    error_message = "metric_export_interval_ms must be a whole number of at least 1000."
  }
}
