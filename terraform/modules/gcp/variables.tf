variable "project_id" {
  description = "Google Cloud project that hosts the service."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id (6-30 characters of lower-case letters, digits and '-')."
  }
}

variable "region" {
  description = "Region of the Cloud Run service and the Eventarc triggers, e.g. europe-west1. Eventarc triggers (gcs_event_delivery = \"eventarc\") must be in the bucket's location (or a region inside its multi-region)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a Google Cloud region such as europe-west1."
  }
}

variable "name" {
  description = "Name of the Cloud Run service; also the stem of the service accounts, topics and trigger."
  type        = string
  default     = "gcp-aws-bridge"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,21}[a-z0-9]$", var.name))
    error_message = "name must be 6-23 characters of lower-case letters, digits and '-', starting with a letter, so that \"<name>-events\" and \"<name>-tasks\" are still valid service account ids."
  }
}

variable "image" {
  description = "Container image of the service, e.g. europe-west1-docker.pkg.dev/PROJECT/REPO/gcp-aws-bridge:TAG. Used when the service is created; later rollouts come from Cloud Build."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9.-]+(:[0-9]+)?/[^\\s]+$", var.image))
    error_message = "image must be a full image reference with a registry host."
  }
}

variable "aws_role_arn" {
  description = "ARN of the AWS role the service assumes (AWS_ROLE_ARN); the role_arn output of the aws module."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$", var.aws_role_arn))
    error_message = "aws_role_arn must be an IAM role ARN."
  }
}

variable "aws_region" {
  description = "AWS region of the bucket and of the regional STS endpoint (AWS_REGION)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]$", var.aws_region))
    error_message = "aws_region must be an AWS region such as eu-west-1."
  }
}

variable "aws_role_duration_seconds" {
  description = "Session length the service asks STS for (AWS_ROLE_DURATION_SECONDS). Must not exceed the role's maximum session duration; the root module feeds both from one variable."
  type        = number
  default     = 3600

  validation {
    condition     = var.aws_role_duration_seconds >= 900 && var.aws_role_duration_seconds <= 43200 && floor(var.aws_role_duration_seconds) == var.aws_role_duration_seconds
    error_message = "aws_role_duration_seconds must be a whole number from 900 to 43200."
  }
}

variable "s3_bucket" {
  description = "S3 bucket the service works in (S3_BUCKET)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.s3_bucket))
    error_message = "s3_bucket must be a valid S3 bucket name."
  }
}

variable "s3_prefix" {
  description = "Key prefix the service is confined to (S3_PREFIX); empty for the whole bucket."
  type        = string
  default     = ""

  validation {
    condition     = var.s3_prefix == "" || (can(regex("/$", var.s3_prefix)) && !startswith(var.s3_prefix, "/"))
    error_message = "s3_prefix must be empty or end with '/' and not start with '/'."
  }
}

variable "target_audience" {
  description = "Audience of the ID token the service presents to AWS STS (TARGET_AUDIENCE); the role's trust policy requires it as accounts.google.com:oaud."
  type        = string

  validation {
    condition     = length(trimspace(var.target_audience)) > 0
    error_message = "target_audience must not be empty."
  }
}

variable "auth_mode" {
  description = "How the service authenticates its callers (AUTH_MODE): \"verify\" checks the Google signature itself, \"cloud-run-iam\" relies on Cloud Run's IAM check and still checks aud, exp and the allowed emails. The binary's \"none\" is for local use only and refused here."
  type        = string
  default     = "cloud-run-iam"

  validation {
    condition     = contains(["verify", "cloud-run-iam"], var.auth_mode)
    error_message = "auth_mode must be verify or cloud-run-iam (\"none\" is for local use only)."
  }
}

variable "command_ops" {
  description = "COMMAND_OPS: the ops the outside doors (/pubsub, /events, /v1/*) accept; any of put, copy, delete, replicate, sync. Another op answers 403 op_not_allowed. The service's own tasks reach /tasks whatever this says."
  type        = list(string)
  default     = ["put", "copy", "delete", "replicate", "sync"]

  validation {
    condition     = length(var.command_ops) > 0 && alltrue([for op in var.command_ops : contains(["put", "copy", "delete", "replicate", "sync"], op)]) && length(distinct(var.command_ops)) == length(var.command_ops)
    error_message = "command_ops must be a non-empty list of distinct ops among put, copy, delete, replicate, sync."
  }
}

variable "sync_delete" {
  description = "SYNC_DELETE: whether a sync command may ask for \"delete\": true, which removes the replicas whose Cloud Storage object is gone. false: such a sync answers 403 op_not_allowed."
  type        = bool
  default     = false
}

variable "additional_auth_audiences" {
  description = "Audiences accepted besides the service URL (AUTH_AUDIENCES), e.g. a custom domain. The Pub/Sub push and Eventarc tokens carry the service URL."
  type        = list(string)
  default     = []
}

variable "additional_invokers" {
  description = "Members (\"serviceAccount:x@p.iam.gserviceaccount.com\") allowed to call the HTTP API. They get roles/run.invoker, and service account emails among them are added to AUTH_ALLOWED_EMAILS."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.additional_invokers : can(regex("^(serviceAccount|user|group):[^@\\s]+@[^\\s]+$", m))])
    error_message = "additional_invokers entries must look like serviceAccount:EMAIL, user:EMAIL or group:EMAIL (never allUsers)."
  }
}

variable "min_instances" {
  description = "Minimum number of instances (0 lets the service scale to zero)."
  type        = number
  default     = 0

  validation {
    condition     = var.min_instances >= 0 && var.min_instances <= 100
    error_message = "min_instances must be from 0 to 100."
  }
}

variable "max_instances" {
  description = "Maximum number of instances; bounds the load on STS and S3."
  type        = number
  default     = 10

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 1000
    error_message = "max_instances must be from 1 to 1000."
  }
}

variable "concurrency" {
  description = "Maximum concurrent requests per instance. Request buffers (upload parts, bodies read whole) come out of the buffer budget whatever the concurrency and object size; what each request holds outside it (connection and SDK buffers, up to about 3 MiB) must fit in the memory the budget leaves: 32 MiB + 3 MiB per request."
  type        = number
  default     = 80

  validation {
    condition     = var.concurrency >= 1 && var.concurrency <= 1000
    error_message = "concurrency must be from 1 to 1000."
  }

  validation {
    # memory (MiB) >= 32 + 3 x concurrency + the budget (MiB).
    condition = try(
      (endswith(var.memory, "Gi") ? tonumber(trimsuffix(var.memory, "Gi")) * 1024 : tonumber(trimsuffix(var.memory, "Mi"))) >= (
        32 + 3 * var.concurrency + (var.buffer_budget_bytes == null
          ? (endswith(var.memory, "Gi") ? tonumber(trimsuffix(var.memory, "Gi")) * 1024 : tonumber(trimsuffix(var.memory, "Mi"))) / 2
        : var.buffer_budget_bytes / 1048576)
      ),
      false
    )
    error_message = "memory minus the buffer budget (half the memory unless buffer_budget_bytes is set) must be at least 32 MiB + 3 MiB per concurrent request: lower concurrency or raise memory."
  }
}

variable "request_timeout_seconds" {
  description = "Cloud Run request timeout. Keep it below the push subscription's ack deadline only when deliveries must not overlap; large replications need minutes."
  type        = number
  default     = 300

  validation {
    condition     = var.request_timeout_seconds >= 1 && var.request_timeout_seconds <= 3600
    error_message = "request_timeout_seconds must be from 1 to 3600."
  }
}

variable "cpu" {
  description = "CPU limit of the container."
  type        = string
  default     = "1"

  validation {
    condition     = contains(["1", "2", "4", "6", "8"], var.cpu)
    error_message = "cpu must be 1, 2, 4, 6 or 8."
  }
}

variable "memory" {
  description = "Memory limit of the container, e.g. 1Gi. Half of it is the buffer budget unless buffer_budget_bytes is set (the service reads the limit from its cgroup)."
  type        = string
  default     = "1Gi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.memory))
    error_message = "memory must be a quantity such as 512Mi or 1Gi."
  }
}

variable "log_format" {
  description = "LOG_FORMAT: json (Cloud Logging structured lines) or text."
  type        = string
  default     = "json"

  validation {
    condition     = contains(["json", "text"], var.log_format)
    error_message = "log_format must be json or text."
  }
}

variable "max_body_bytes" {
  description = "MAX_BODY_BYTES: largest request body accepted on every route but PUT /v1/objects, which streams."
  type        = number
  default     = 33554432

  validation {
    condition     = var.max_body_bytes >= 1024 && var.max_body_bytes <= 33554432
    error_message = "max_body_bytes must be from 1024 to 33554432 (Cloud Run's HTTP/1 request limit is 32 MiB)."
  }
}

variable "buffer_budget_bytes" {
  description = "BUFFER_BUDGET_BYTES: bytes all requests of an instance may hold in buffers; over it requests wait, then answer 503 with Retry-After. null: half the memory limit."
  type        = number
  default     = null

  validation {
    condition     = var.buffer_budget_bytes == null || try(var.buffer_budget_bytes >= 67108864, false)
    error_message = "buffer_budget_bytes must be at least 64 MiB (67108864): a Pub/Sub put of 32 MiB holds its body and its decoded data."
  }
}

variable "max_object_bytes" {
  description = "MAX_OBJECT_BYTES: largest object a PUT or a replication writes. S3 allows 10,000 parts, so an object of N bytes needs parts of N/10,000 bytes, and one part must fit in the buffer budget: the default 1 TiB needs 105 MiB parts; 5 TiB (S3's limit) needs 525 MiB, so a buffer budget of at least that (memory 2Gi)."
  type        = number
  default     = 1099511627776

  validation {
    condition     = var.max_object_bytes >= 1 && var.max_object_bytes <= 5497558138880
    error_message = "max_object_bytes must be from 1 to 5497558138880 (5 TiB, S3's limit)."
  }

  validation {
    condition = try(
      max(8, ceil(var.max_object_bytes / 10000 / 1048576)) <= (var.buffer_budget_bytes == null
        ? (endswith(var.memory, "Gi") ? tonumber(trimsuffix(var.memory, "Gi")) * 1024 : tonumber(trimsuffix(var.memory, "Mi"))) / 2
      : var.buffer_budget_bytes / 1048576),
      false
    )
    error_message = "one part of the largest object (max_object_bytes / 10,000, at least 8 MiB) must fit in the buffer budget: raise memory or buffer_budget_bytes, or lower max_object_bytes."
  }
}

variable "part_task_bytes" {
  description = "PART_TASK_BYTES: objects of at least this size are replicated in parts, one Pub/Sub command per part (parts of 64 MiB, more past 640 GiB)."
  type        = number
  default     = 1073741824

  validation {
    condition     = var.part_task_bytes >= 5242880
    error_message = "part_task_bytes must be at least 5242880 (5 MiB, S3's smallest part)."
  }
}

variable "extra_env" {
  description = "Further environment variables for the container (e.g. RUST_LOG). Must not repeat the ones this module sets."
  type        = map(string)
  default     = {}

  validation {
    condition     = !contains(keys(var.extra_env), "PUBSUB_TOPIC")
    error_message = "extra_env must not set PUBSUB_TOPIC: the service publishes its own tasks to TASKS_TOPIC, which this module sets, and refuses PUBSUB_TOPIC."
  }
}

variable "ingress" {
  description = "Cloud Run ingress setting."
  type        = string
  default     = "INGRESS_TRAFFIC_ALL"

  validation {
    condition     = contains(["INGRESS_TRAFFIC_ALL", "INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"], var.ingress)
    error_message = "ingress must be INGRESS_TRAFFIC_ALL, INGRESS_TRAFFIC_INTERNAL_ONLY or INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER."
  }
}

variable "ack_deadline_seconds" {
  description = "Ack deadline of the push subscriptions (commands, tasks, Cloud Storage notifications): how long Pub/Sub waits for the service's answer before redelivering."
  type        = number
  default     = 300

  validation {
    condition     = var.ack_deadline_seconds >= 10 && var.ack_deadline_seconds <= 600
    error_message = "ack_deadline_seconds must be from 10 to 600."
  }
}

variable "retry_minimum_backoff" {
  description = "Minimum delay of the push subscriptions' exponential retry policy, in seconds with an 's' suffix."
  type        = string
  default     = "10s"

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?s$", var.retry_minimum_backoff))
    error_message = "retry_minimum_backoff must be a duration such as \"10s\"."
  }
}

variable "retry_maximum_backoff" {
  description = "Maximum delay of the push subscriptions' exponential retry policy (at most 600s)."
  type        = string
  default     = "600s"

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?s$", var.retry_maximum_backoff))
    error_message = "retry_maximum_backoff must be a duration such as \"600s\"."
  }
}

variable "max_delivery_attempts" {
  description = "Deliveries of one message before it goes to the dead-letter topic."
  type        = number
  default     = 10

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts must be from 5 to 100."
  }
}

variable "message_retention_duration" {
  description = "How long the topics and the dead-letter subscription keep messages."
  type        = string
  default     = "604800s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.message_retention_duration))
    error_message = "message_retention_duration must be a duration in seconds such as \"604800s\"."
  }
}

variable "gcs_source_bucket" {
  description = "Cloud Storage bucket replicated to S3: its finalized, deleted, archived and metadataUpdated events reach the service (see gcs_event_delivery), and it is the service's GCS_SOURCE_BUCKETS. Null for none."
  type        = string
  default     = null

  validation {
    condition     = var.gcs_source_bucket == null || can(regex("^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$", var.gcs_source_bucket))
    error_message = "gcs_source_bucket must be a Cloud Storage bucket name."
  }
}

variable "gcs_event_delivery" {
  description = "How gcs_source_bucket's events reach the service. \"notification\" (default): a Cloud Storage Pub/Sub notification (JSON_API_V1, all four event types) to the topic <name>-gcs-events, pushed to /pubsub by a subscription with a retry policy and the dead-letter topic. \"eventarc\": one Eventarc trigger per event type to /events; Eventarc manages their Pub/Sub subscriptions, whose dead-letter topic Terraform cannot set."
  type        = string
  default     = "notification"

  validation {
    condition     = contains(["notification", "eventarc"], var.gcs_event_delivery)
    error_message = "gcs_event_delivery must be notification or eventarc."
  }
}

variable "grant_source_bucket_read" {
  description = "Grant the service account roles/storage.objectViewer on gcs_source_bucket, which replication needs to read the objects."
  type        = bool
  default     = true
}

variable "kms_key_name" {
  description = "Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K) for the Pub/Sub topics. Null for Google-managed encryption."
  type        = string
  default     = null
}

variable "deletion_protection" {
  description = "Refuse to destroy the Cloud Run service through Terraform."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Labels for the service, topics, subscriptions and trigger."
  type        = map(string)
  default     = {}
}

variable "use_http2" {
  description = "HTTP/2 end to end: the container port is named h2c and Cloud Run speaks h2c to the service, which lifts Cloud Run's 32 MiB HTTP/1 request limit for PUT /v1/objects. false: HTTP/1 (uploads over 32 MiB then need a presigned URL)."
  type        = bool
  default     = true
}

variable "metrics" {
  description = "Run the Google-Built OpenTelemetry Collector as a sidecar that exports the service's metrics to Managed Service for Prometheus (the service gets OTEL_EXPORTER_OTLP_ENDPOINT, the runtime account roles/monitoring.metricWriter, CPU stays allocated between requests). The alert policies and the dashboard are created either way; the replication lag alert and the service's charts have data only with metrics."
  type        = bool
  default     = false
}

variable "metric_export_interval_ms" {
  description = "OTEL_METRIC_EXPORT_INTERVAL with metrics: milliseconds between two metric exports of the service."
  type        = number
  default     = 60000

  validation {
    condition     = var.metric_export_interval_ms >= 1000 && floor(var.metric_export_interval_ms) == var.metric_export_interval_ms
    error_message = "metric_export_interval_ms must be a whole number of at least 1000."
  }
}

variable "collector_image" {
  description = "Image of the Google-Built OpenTelemetry Collector sidecar (with metrics)."
  type        = string
  default     = "us-docker.pkg.dev/cloud-ops-agents-artifacts/google-cloud-opentelemetry-collector/otelcol-google:0.160.0"

  validation {
    condition     = can(regex("^[a-z0-9.-]+(:[0-9]+)?/[^\\s]+(:[A-Za-z0-9._-]+|@sha256:[0-9a-f]{64})$", var.collector_image))
    error_message = "collector_image must be a full image reference with a registry host and a tag or digest."
  }
}

variable "replication_lag_p99_seconds" {
  description = "Alert when the p99 replication lag (bridge.replication.lag over 5 minutes, exported with metrics) stays above this many seconds for 5 minutes."
  type        = number
  default     = 900

  validation {
    condition     = var.replication_lag_p99_seconds > 0
    error_message = "replication_lag_p99_seconds must be positive."
  }
}

variable "alert_notification_channels" {
  description = "Cloud Monitoring notification channel ids (projects/PROJECT/notificationChannels/ID) the alert policies notify; empty: the alerts show in the console only."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.alert_notification_channels : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", c))])
    error_message = "alert_notification_channels must be ids of the form projects/PROJECT/notificationChannels/ID."
  }
}
