# What the Cloud Run service is given and who may call it, computed from the
# inputs alone: the gcp module uses it to build the service, the push
# subscriptions and the Cloud Storage event delivery, and
# tests/integration/terraform_env.rs renders it offline and runs the binary
# with exactly this environment behind the test kit's Cloud Run front end.

locals {
  # Cloud Run's deterministic URL (https://SERVICE-PROJECT_NUMBER.REGION.run.app)
  # is known before the service exists, so the service's own AUTH_AUDIENCES can
  # name it without a dependency cycle.
  service_url = "https://${var.name}-${var.project_number}.${var.region}.run.app"

  runtime_account_id = var.name
  push_account_id    = "${var.name}-push"
  events_account_id  = "${var.name}-events"
  # The tasks subscription's push identity: an account of its own, which only
  # the /tasks door accepts (TASKS_PUSH_EMAIL). "<name>-tasks" rather than
  # "<name>-tasks-push": account ids are at most 30 characters.
  tasks_account_id = "${var.name}-tasks"
  sa_domain        = "${var.project_id}.iam.gserviceaccount.com"
  runtime_email    = "${local.runtime_account_id}@${local.sa_domain}"
  push_email       = "${local.push_account_id}@${local.sa_domain}"
  tasks_email      = "${local.tasks_account_id}@${local.sa_domain}"
  with_gcs_events  = var.gcs_source_bucket != null
  events_email     = local.with_gcs_events ? "${local.events_account_id}@${local.sa_domain}" : null

  # Pub/Sub mints the push tokens for this audience; Eventarc mints its
  # tokens for the service URL.
  push_audience = local.service_url
  push_endpoint = "${local.service_url}/pubsub"

  # The outside commands topic (outside publishers publish there, the service
  # does not) and the service's own tasks topic (sync pages, replicate,
  # replicate_part and delete_replica tasks), pushed to the inside door.
  commands_topic_name = "${var.name}-commands"
  tasks_topic_name    = "${var.name}-tasks"
  tasks_topic         = "projects/${var.project_id}/topics/${local.tasks_topic_name}"
  tasks_push_endpoint = "${local.service_url}/tasks"

  # The four Cloud Storage event types of the source bucket: the Eventarc
  # CloudEvent type (one trigger each, to /events) and the Pub/Sub
  # notification event type (one notification for all four, pushed to
  # /pubsub), by short name.
  gcs_event_types = {
    finalized = {
      eventarc     = "google.cloud.storage.object.v1.finalized"
      notification = "OBJECT_FINALIZE"
    }
    deleted = {
      eventarc     = "google.cloud.storage.object.v1.deleted"
      notification = "OBJECT_DELETE"
    }
    archived = {
      eventarc     = "google.cloud.storage.object.v1.archived"
      notification = "OBJECT_ARCHIVE"
    }
    metadataUpdated = {
      eventarc     = "google.cloud.storage.object.v1.metadataUpdated"
      notification = "OBJECT_METADATA_UPDATE"
    }
  }
  gcs_events      = local.with_gcs_events ? local.gcs_event_types : {}
  gcs_events_path = var.gcs_event_delivery == "eventarc" ? "/events" : "/pubsub"

  otlp_endpoint = "http://localhost:4318"

  additional_emails = [
    for m in var.additional_invokers : split(":", m)[1]
    if startswith(m, "serviceAccount:") || startswith(m, "user:")
  ]

  # The tasks account invokes the service (roles/run.invoker) but is not in
  # AUTH_ALLOWED_EMAILS: the service accepts it at /tasks only, by
  # TASKS_PUSH_EMAIL.
  invoker_members = distinct(concat(
    ["serviceAccount:${local.push_email}"],
    ["serviceAccount:${local.tasks_email}"],
    local.with_gcs_events ? ["serviceAccount:${local.events_email}"] : [],
    var.additional_invokers,
  ))

  auth_audiences = distinct(concat([local.service_url], var.additional_auth_audiences))
  auth_allowed_emails = distinct(concat(
    [local.push_email],
    local.with_gcs_events ? [local.events_email] : [],
    local.additional_emails,
  ))

  env = merge(var.extra_env, {
    TARGET_AUDIENCE           = var.target_audience
    AWS_ROLE_ARN              = var.aws_role_arn
    AWS_REGION                = var.aws_region
    AWS_ROLE_DURATION_SECONDS = tostring(var.aws_role_duration_seconds)
    S3_BUCKET                 = var.s3_bucket
    S3_PREFIX                 = var.s3_prefix
    AUTH_MODE                 = var.auth_mode
    AUTH_AUDIENCES            = join(",", local.auth_audiences)
    AUTH_ALLOWED_EMAILS       = join(",", local.auth_allowed_emails)
    GOOGLE_CLOUD_PROJECT      = var.project_id
    LOG_FORMAT                = var.log_format
    MAX_BODY_BYTES            = tostring(var.max_body_bytes)
    MAX_OBJECT_BYTES          = tostring(var.max_object_bytes)
    BUFFER_BUDGET_BYTES       = var.buffer_budget_bytes == null ? "" : tostring(var.buffer_budget_bytes)
    REQUEST_TIMEOUT_SECONDS   = tostring(max(var.request_timeout_seconds - 5, 1))
    GCS_SOURCE_BUCKETS        = local.with_gcs_events ? var.gcs_source_bucket : ""
    TASKS_TOPIC               = local.tasks_topic
    TASKS_PUSH_EMAIL          = local.tasks_email
    COMMAND_OPS               = join(",", var.command_ops)
    SYNC_DELETE               = tostring(var.sync_delete)
    PART_TASK_BYTES           = tostring(var.part_task_bytes)
    # OTLP/HTTP to the collector sidecar (../monitoring), which shares the
    # instance's loopback; unset without metrics (no export).
    OTEL_EXPORTER_OTLP_ENDPOINT = var.metrics ? local.otlp_endpoint : ""
    OTEL_METRIC_EXPORT_INTERVAL = var.metrics ? tostring(var.metric_export_interval_ms) : ""
  })
}
