variable "project_id" {
  description = "Google Cloud project that hosts the service."
  type        = string
}

variable "region" {
  description = "Google Cloud region of the service (and of the Eventarc triggers, if used)."
  type        = string
  default     = "europe-west1"
}

variable "name" {
  description = "Name of the Cloud Run service and stem of the Google resources."
  type        = string
  default     = "gcp-aws-bridge"
}

variable "image" {
  description = "Container image the service is created with (Cloud Build deploys later ones)."
  type        = string
}

variable "aws_region" {
  description = "AWS region of the bucket and STS endpoint."
  type        = string
  default     = "eu-west-1"
}

variable "s3_bucket" {
  description = "S3 bucket the service works in."
  type        = string
}

variable "create_bucket" {
  description = "Create the S3 bucket; false to use an existing one."
  type        = bool
  default     = true
}

variable "s3_prefix" {
  description = "Key prefix the service is confined to; empty for the whole bucket."
  type        = string
  default     = ""
}

variable "target_audience" {
  description = "Audience of the ID token the service presents to AWS STS; matched as accounts.google.com:oaud."
  type        = string
  default     = "sts.amazonaws.com"
}

variable "role_duration_seconds" {
  description = "STS session length: the service's AWS_ROLE_DURATION_SECONDS and the role's maximum session duration (at least IAM's 3600)."
  type        = number
  default     = 3600

  validation {
    condition     = var.role_duration_seconds >= 900 && var.role_duration_seconds <= 43200
    error_message = "role_duration_seconds must be from 900 to 43200."
  }
}

variable "aws_role_name" {
  description = "Name of the IAM role."
  type        = string
  default     = "gcp-aws-bridge"
}

variable "allow_list_all_buckets" {
  description = "Grant s3:ListAllMyBuckets for the GET /v1/buckets demo route."
  type        = bool
  default     = true
}

variable "auth_mode" {
  description = "AUTH_MODE of the service: cloud-run-iam or verify (\"none\" is for local use only and refused)."
  type        = string
  default     = "cloud-run-iam"

  validation {
    condition     = contains(["verify", "cloud-run-iam"], var.auth_mode)
    error_message = "auth_mode must be verify or cloud-run-iam (\"none\" is for local use only)."
  }
}

variable "command_ops" {
  description = "COMMAND_OPS: ops the outside doors (/pubsub, /events, /v1/*) accept, among put, copy, delete, replicate, sync."
  type        = list(string)
  default     = ["put", "copy", "delete", "replicate", "sync"]

  validation {
    condition     = length(var.command_ops) > 0 && alltrue([for op in var.command_ops : contains(["put", "copy", "delete", "replicate", "sync"], op)]) && length(distinct(var.command_ops)) == length(var.command_ops)
    error_message = "command_ops must be a non-empty list of distinct ops among put, copy, delete, replicate, sync."
  }
}

variable "sync_delete" {
  description = "SYNC_DELETE: whether a sync may ask for \"delete\": true."
  type        = bool
  default     = false
}

variable "additional_invokers" {
  description = "Extra members allowed to call the HTTP API (serviceAccount:EMAIL, user:EMAIL, group:EMAIL)."
  type        = list(string)
  default     = []
}

variable "gcs_source_bucket" {
  description = "Cloud Storage bucket replicated to S3 (all four event types); null for none."
  type        = string
  default     = null
}

variable "gcs_event_delivery" {
  description = "How the source bucket's events reach the service: \"notification\" (Cloud Storage Pub/Sub notification, push subscription with a dead-letter topic) or \"eventarc\" (four Eventarc triggers; no dead letter from Terraform)."
  type        = string
  default     = "notification"

  validation {
    condition     = contains(["notification", "eventarc"], var.gcs_event_delivery)
    error_message = "gcs_event_delivery must be notification or eventarc."
  }
}

variable "min_instances" {
  description = "Minimum Cloud Run instances."
  type        = number
  default     = 0
}

variable "max_instances" {
  description = "Maximum Cloud Run instances."
  type        = number
  default     = 10
}

variable "concurrency" {
  description = "Concurrent requests per instance."
  type        = number
  default     = 80
}

variable "request_timeout_seconds" {
  description = "Cloud Run request timeout in seconds."
  type        = number
  default     = 300
}

variable "labels" {
  description = "Labels for the Google resources."
  type        = map(string)
  default     = {}
}

variable "aws_tags" {
  description = "Tags for every AWS resource."
  type        = map(string)
  default     = {}
}

variable "use_http2" {
  description = "HTTP/2 end to end: the container port is named h2c and Cloud Run speaks h2c to the service, which lifts Cloud Run's 32 MiB HTTP/1 request limit for PUT /v1/objects. false: HTTP/1 (uploads over 32 MiB then need a presigned URL)."
  type        = bool
  default     = true
}

variable "metrics" {
  description = "Run the Google-Built OpenTelemetry Collector as a sidecar exporting the service's metrics to Managed Service for Prometheus (modules/gcp, README \"Monitoring\"). The alert policies and the Cloud Monitoring dashboard are created either way; the lag alert and the service's charts have data only with metrics."
  type        = bool
  default     = false
}

variable "metric_export_interval_ms" {
  description = "OTEL_METRIC_EXPORT_INTERVAL with metrics: milliseconds between two metric exports of the service."
  type        = number
  default     = 60000
}

variable "replication_lag_p99_seconds" {
  description = "Alert when the p99 replication lag (exported with metrics) stays above this many seconds for 5 minutes."
  type        = number
  default     = 900
}

variable "alert_notification_channels" {
  description = "Cloud Monitoring notification channel ids (projects/PROJECT/notificationChannels/ID) the alert policies notify."
  type        = list(string)
  default     = []
}
