# What the Cloud Run service is given and who may call it, computed from the
# inputs alone: the gcp module uses it to build the service, the push
# subscription and the Eventarc trigger, and tests/integration/terraform_env.rs renders
# it offline and runs the binary with exactly this environment behind the
# test kit's Cloud Run front end.

locals {
  # Cloud Run's deterministic URL (https://SERVICE-PROJECT_NUMBER.REGION.run.app)
  # is known before the service exists, so the service's own AUTH_AUDIENCES can
  # name it without a dependency cycle.
  service_url = "https://${var.name}-${var.project_number}.${var.region}.run.app"

  runtime_account_id = var.name
  push_account_id    = "${var.name}-push"
  events_account_id  = "${var.name}-events"
  sa_domain          = "${var.project_id}.iam.gserviceaccount.com"
  runtime_email      = "${local.runtime_account_id}@${local.sa_domain}"
  push_email         = "${local.push_account_id}@${local.sa_domain}"
  with_eventarc      = var.gcs_source_bucket != null
  events_email       = local.with_eventarc ? "${local.events_account_id}@${local.sa_domain}" : null

  # Pub/Sub mints the push token for this audience; Eventarc mints its
  # tokens for the service URL.
  push_audience = local.service_url
  push_endpoint = "${local.service_url}/pubsub"

  # Sync pages and part tasks publish further commands to the commands topic.
  commands_topic = "projects/${var.project_id}/topics/${var.name}-commands"

  additional_emails = [
    for m in var.additional_invokers : split(":", m)[1]
    if startswith(m, "serviceAccount:") || startswith(m, "user:")
  ]

  invoker_members = distinct(concat(
    ["serviceAccount:${local.push_email}"],
    local.with_eventarc ? ["serviceAccount:${local.events_email}"] : [],
    var.additional_invokers,
  ))

  auth_audiences = distinct(concat([local.service_url], var.additional_auth_audiences))
  auth_allowed_emails = distinct(concat(
    [local.push_email],
    local.with_eventarc ? [local.events_email] : [],
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
    GCS_SOURCE_BUCKETS        = local.with_eventarc ? var.gcs_source_bucket : ""
    PUBSUB_TOPIC              = local.commands_topic
    PART_TASK_BYTES           = tostring(var.part_task_bytes)
  })
}
