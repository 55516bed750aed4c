variable "metrics" {
  description = "Run the OpenTelemetry collector sidecar and create the alert policies and the dashboard. false: nothing of this module's outputs is used."
  type        = bool
  default     = false
}

variable "name" {
  description = "Name of the Cloud Run service; the stem of the alert policies' and the dashboard's display names."
  type        = string
}

variable "collector_image" {
  description = "Image of the Google-Built OpenTelemetry Collector sidecar."
  type        = string
  default     = "us-docker.pkg.dev/cloud-ops-agents-artifacts/google-cloud-opentelemetry-collector/otelcol-google:0.160.0"

  validation {
    condition     = can(regex("^[a-z0-9.-]+(:[0-9]+)?/[^\\s]+(:[A-Za-z0-9._-]+|@sha256:[0-9a-f]{64})$", var.collector_image))
    error_message = "collector_image must be a full image reference with a registry host and a tag or digest."
  }
}

variable "collector_cpu" {
  description = "CPU limit of the collector container."
  type        = string
  default     = "1"
}

variable "collector_memory" {
  description = "Memory limit of the collector container; its memory_limiter keeps it under 65 %."
  type        = string
  default     = "256Mi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.collector_memory))
    error_message = "collector_memory must be a quantity such as 256Mi or 1Gi."
  }
}

variable "dead_letter_subscriptions" {
  description = "Ids (short names) of the dead-letter subscriptions: a backlog above 0 on any of them raises an alert."
  type        = list(string)
}

variable "push_subscriptions" {
  description = "Ids (short names) of the push subscriptions that deliver to the service: an oldest unacked message older than 15 minutes raises an alert."
  type        = list(string)
}

variable "replication_lag_p99_seconds" {
  description = "Alert when the p99 replication lag (seconds from a Cloud Storage object's update to its replica's commit, over 5 minutes) stays above this for 5 minutes."
  type        = number
  default     = 900

  validation {
    condition     = var.replication_lag_p99_seconds > 0
    error_message = "replication_lag_p99_seconds must be positive."
  }
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channel ids (projects/PROJECT/notificationChannels/ID) the alert policies notify."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", c))])
    error_message = "notification_channels must be ids of the form projects/PROJECT/notificationChannels/ID."
  }
}
