# Google side of gcp-aws-bridge: the service's identity, the Cloud Run service,
# its Pub/Sub and Eventarc triggers and the identities they call it with.

data "google_project" "this" {
  project_id = var.project_id
}

# The service's environment, its invokers and the push audience: computed
# without any provider in ../service-env, so that a test renders exactly what
# is deployed (tests/integration/terraform_env.rs).
module "env" {
  source = "../service-env"

  project_id                = var.project_id
  project_number            = data.google_project.this.number
  region                    = var.region
  name                      = var.name
  target_audience           = var.target_audience
  aws_role_arn              = var.aws_role_arn
  aws_region                = var.aws_region
  aws_role_duration_seconds = var.aws_role_duration_seconds
  s3_bucket                 = var.s3_bucket
  s3_prefix                 = var.s3_prefix
  auth_mode                 = var.auth_mode
  additional_auth_audiences = var.additional_auth_audiences
  additional_invokers       = var.additional_invokers
  gcs_source_bucket         = var.gcs_source_bucket
  gcs_event_delivery        = var.gcs_event_delivery
  command_ops               = var.command_ops
  sync_delete               = var.sync_delete
  log_format                = var.log_format
  max_body_bytes            = var.max_body_bytes
  max_object_bytes          = var.max_object_bytes
  buffer_budget_bytes       = var.buffer_budget_bytes
  part_task_bytes           = var.part_task_bytes
  request_timeout_seconds   = var.request_timeout_seconds
  use_http2                 = var.use_http2
  extra_env                 = var.extra_env
  metrics                   = var.metrics
  metric_export_interval_ms = var.metric_export_interval_ms
}

locals {
  service_url          = module.env.service_url
  pubsub_service_agent = "service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  with_gcs_events      = var.gcs_source_bucket != null
  with_notification    = local.with_gcs_events && var.gcs_event_delivery == "notification"
  with_eventarc        = local.with_gcs_events && var.gcs_event_delivery == "eventarc"

  apis = toset(concat([
    "run.googleapis.com",
    "pubsub.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "eventarc.googleapis.com",
    "storage.googleapis.com",
  ], module.monitoring.apis))
}

resource "google_project_service" "apis" {
  for_each = local.apis

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# ---------------------------------------------------------------------------
# Identities
# ---------------------------------------------------------------------------

# The service runs as this account. Its numeric unique_id is what the AWS
# trust policy matches (accounts.google.com:aud and :sub).
resource "google_service_account" "runtime" {
  project      = var.project_id
  account_id   = module.env.runtime_account_id
  display_name = "${var.name} runtime"
  description  = "Identity of the ${var.name} Cloud Run service; federated into AWS with its ID token."
}

# Pub/Sub signs its push requests with a token of this account.
resource "google_service_account" "push" {
  project      = var.project_id
  account_id   = module.env.push_account_id
  display_name = "${var.name} Pub/Sub push"
  description  = "Pub/Sub push identity that invokes ${var.name}."
}

# The tasks subscription pushes the service's own tasks to /tasks with a
# token of this account (TASKS_PUSH_EMAIL). It is an invoker of the service
# but not in AUTH_ALLOWED_EMAILS: the service accepts it at /tasks only.
resource "google_service_account" "tasks_push" {
  project      = var.project_id
  account_id   = module.env.tasks_account_id
  display_name = "${var.name} tasks push"
  description  = "Pub/Sub push identity of ${var.name}'s own tasks subscription (POST /tasks only)."
}

# The source bucket's events are delivered with a token of this account: the
# notification subscription's push identity, or the Eventarc triggers' account.
resource "google_service_account" "events" {
  count = local.with_gcs_events ? 1 : 0

  project      = var.project_id
  account_id   = module.env.events_account_id
  display_name = "${var.name} Cloud Storage events"
  description  = "Identity that delivers the Cloud Storage events of gs://${var.gcs_source_bucket} to ${var.name}."
}

# The Pub/Sub service agent mints the push tokens.
resource "google_service_account_iam_member" "push_token_creator" {
  for_each = merge(
    {
      push  = google_service_account.push.name
      tasks = google_service_account.tasks_push.name
    },
    local.with_notification ? { events = google_service_account.events[0].name } : {},
  )

  service_account_id = each.value
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${local.pubsub_service_agent}"

  depends_on = [google_project_service.apis]
}

# ---------------------------------------------------------------------------
# Cloud Run service
# ---------------------------------------------------------------------------

resource "google_cloud_run_v2_service" "this" {
  project             = var.project_id
  name                = var.name
  location            = var.region
  ingress             = var.ingress
  deletion_protection = var.deletion_protection
  labels              = var.labels
  description         = "Keyless S3 access through AWS STS AssumeRoleWithWebIdentity."
  # Tokens for these audiences pass Cloud Run's IAM check as well as the
  # service URL's (the service accepts them in AUTH_AUDIENCES).
  custom_audiences = module.env.custom_audiences

  template {
    service_account                  = google_service_account.runtime.email
    timeout                          = "${var.request_timeout_seconds}s"
    max_instance_request_concurrency = var.concurrency
    labels                           = var.labels

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    containers {
      # With metrics the service starts after the collector sidecar has
      # passed its startup probe (monitoring.tf); a single container needs
      # no name.
      name       = module.monitoring.main_container_name
      image      = var.image
      depends_on = module.monitoring.main_depends_on

      # h2c: HTTP/2 end to end (the service serves h2c), so that PUT
      # /v1/objects is not cut at Cloud Run's 32 MiB HTTP/1 request limit.
      ports {
        name           = module.env.container_port_name
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        # CPU only during requests, except with metrics: the collector and
        # the service's periodic export run between requests.
        cpu_idle = module.monitoring.cpu_idle
      }

      dynamic "env" {
        # An empty value (S3_PREFIX for the whole bucket) is left unset.
        for_each = module.env.env
        content {
          name  = env.key
          value = env.value
        }
      }

      # /healthz answers without any outbound call.
      startup_probe {
        http_get {
          path = "/healthz"
        }
        period_seconds    = 2
        failure_threshold = 15
        timeout_seconds   = 1
      }

      liveness_probe {
        http_get {
          path = "/healthz"
        }
        period_seconds    = 30
        failure_threshold = 3
        timeout_seconds   = 2
      }
    }

    # With metrics: the Google-Built OpenTelemetry Collector, receiving
    # OTLP/HTTP on localhost:4318 and exporting to Managed Service for
    # Prometheus as the runtime account. No port: the service's container
    # is the only ingress.
    dynamic "containers" {
      for_each = module.monitoring.collector == null ? [] : [module.monitoring.collector]
      content {
        name  = containers.value.name
        image = containers.value.image
        args  = containers.value.args

        resources {
          limits = {
            cpu    = containers.value.cpu
            memory = containers.value.memory
          }
          cpu_idle = module.monitoring.cpu_idle
        }

        volume_mounts {
          name       = containers.value.volume
          mount_path = containers.value.config_dir
        }

        # The health_check extension; the service's container starts once
        # this passes (depends_on above).
        startup_probe {
          http_get {
            path = containers.value.health_path
            port = containers.value.health_port
          }
          period_seconds    = 1
          failure_threshold = 30
          timeout_seconds   = 1
        }

        liveness_probe {
          http_get {
            path = containers.value.health_path
            port = containers.value.health_port
          }
          period_seconds    = 30
          failure_threshold = 3
          timeout_seconds   = 2
        }
      }
    }

    dynamic "volumes" {
      for_each = module.monitoring.collector == null ? [] : [module.monitoring.collector]
      content {
        name = volumes.value.volume
        secret {
          secret = google_secret_manager_secret.collector_config[0].secret_id
          items {
            version = google_secret_manager_secret_version.collector_config[0].version
            path    = volumes.value.config_file
          }
        }
      }
    }
  }

  lifecycle {
    # Cloud Build rolls out new images (cloudbuild.yaml); Terraform owns the rest
    # of the configuration and does not roll the image back.
    ignore_changes = [
      client,
      client_version,
      template[0].containers[0].image,
    ]
  }

  depends_on = [
    google_project_service.apis,
    google_secret_manager_secret_iam_member.collector_config,
    google_project_iam_member.runtime_monitoring,
  ]
}

# No allUsers binding: every caller needs roles/run.invoker. The members
# (push and Eventarc accounts, additional_invokers) come from ../service-env.
resource "google_cloud_run_v2_service_iam_member" "invokers" {
  for_each = toset(module.env.invoker_members)

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.this.name
  role     = "roles/run.invoker"
  member   = each.value
}

# ---------------------------------------------------------------------------
# Pub/Sub: the outside commands topic, the service's own tasks topic, their
# push subscriptions and the dead-letter topic
# ---------------------------------------------------------------------------

# Outside publishers publish commands here (the service does not); they are
# pushed to POST /pubsub, an outside door (COMMAND_OPS).
resource "google_pubsub_topic" "commands" {
  project                    = var.project_id
  name                       = module.env.commands_topic_name
  kms_key_name               = var.kms_key_name
  message_retention_duration = var.message_retention_duration
  labels                     = var.labels

  depends_on = [google_project_service.apis]
}

# The service's own tasks (sync pages, replicate, replicate_part,
# delete_replica): only the runtime account publishes here (TASKS_TOPIC).
resource "google_pubsub_topic" "tasks" {
  project                    = var.project_id
  name                       = module.env.tasks_topic_name
  kms_key_name               = var.kms_key_name
  message_retention_duration = var.message_retention_duration
  labels                     = var.labels

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "dead_letter" {
  project                    = var.project_id
  name                       = "${var.name}-dead-letter"
  kms_key_name               = var.kms_key_name
  message_retention_duration = var.message_retention_duration
  labels                     = var.labels

  depends_on = [google_project_service.apis]
}

# Messages that can never succeed (400) or that exhausted their attempts are
# kept here for inspection and replay; a topic without a subscription would
# drop them. Every push subscription dead-letters here; the message's
# CloudPubSubDeadLetterSourceSubscription attribute names the one it came from.
resource "google_pubsub_subscription" "dead_letter" {
  project                    = var.project_id
  name                       = "${var.name}-dead-letter"
  topic                      = google_pubsub_topic.dead_letter.id
  ack_deadline_seconds       = 60
  message_retention_duration = var.message_retention_duration
  retain_acked_messages      = false
  labels                     = var.labels

  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_subscription" "push" {
  project                    = var.project_id
  name                       = "${var.name}-push"
  topic                      = google_pubsub_topic.commands.id
  ack_deadline_seconds       = var.ack_deadline_seconds
  message_retention_duration = var.message_retention_duration
  labels                     = var.labels

  push_config {
    push_endpoint = module.env.push_endpoint

    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = module.env.push_audience
    }
  }

  retry_policy {
    minimum_backoff = var.retry_minimum_backoff
    maximum_backoff = var.retry_maximum_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.invokers,
    google_service_account_iam_member.push_token_creator,
  ]
}

# The service's own tasks, pushed to the inside door POST /tasks with a token
# of the tasks account, which the service accepts there and nowhere else.
resource "google_pubsub_subscription" "tasks" {
  project                    = var.project_id
  name                       = "${var.name}-tasks"
  topic                      = google_pubsub_topic.tasks.id
  ack_deadline_seconds       = var.ack_deadline_seconds
  message_retention_duration = var.message_retention_duration
  labels                     = var.labels

  push_config {
    push_endpoint = module.env.tasks_push_endpoint

    oidc_token {
      service_account_email = google_service_account.tasks_push.email
      audience              = module.env.push_audience
    }
  }

  retry_policy {
    minimum_backoff = var.retry_minimum_backoff
    maximum_backoff = var.retry_maximum_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.invokers,
    google_service_account_iam_member.push_token_creator,
  ]
}

# Sync pages and part tasks publish the service's own tasks: the runtime
# account is the only publisher of the tasks topic, and publishes nowhere else.
resource "google_pubsub_topic_iam_member" "runtime_tasks_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.tasks.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.runtime.email}"
}

# Dead-lettering needs the Pub/Sub service agent to publish to the dead-letter
# topic and to acknowledge on each source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${local.pubsub_service_agent}"
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each = merge(
    {
      push  = google_pubsub_subscription.push.name
      tasks = google_pubsub_subscription.tasks.name
    },
    local.with_notification ? { gcs_events = google_pubsub_subscription.gcs_events[0].name } : {},
  )

  project      = var.project_id
  subscription = each.value
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${local.pubsub_service_agent}"
}

# ---------------------------------------------------------------------------
# Cloud Storage events of the source bucket: all four types
# (finalized, deleted, archived, metadataUpdated)
# ---------------------------------------------------------------------------

data "google_storage_project_service_account" "gcs" {
  count = local.with_gcs_events ? 1 : 0

  project = var.project_id
}

# Replication reads the objects as the runtime identity.
resource "google_storage_bucket_iam_member" "source_reader" {
  count = local.with_gcs_events && var.grant_source_bucket_read ? 1 : 0

  bucket = var.gcs_source_bucket
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.runtime.email}"
}

# --- gcs_event_delivery = "notification" (default) ---------------------------
# A Cloud Storage notification publishes every event of the bucket to a topic
# of this deployment, and a push subscription of ours delivers it to POST
# /pubsub with the events account's token, a retry policy and a dead-letter
# policy. Eventarc's Cloud Storage triggers cannot have a dead letter in
# Terraform: their transport subscription is created and managed by Eventarc,
# and a trigger's transport topic can be chosen only for Pub/Sub-sourced
# triggers (README, "Cloud Storage events").

resource "google_pubsub_topic" "gcs_events" {
  count = local.with_notification ? 1 : 0

  project                    = var.project_id
  name                       = "${var.name}-gcs-events"
  kms_key_name               = var.kms_key_name
  message_retention_duration = var.message_retention_duration
  labels                     = var.labels

  depends_on = [google_project_service.apis]
}

# The Cloud Storage service agent publishes the notifications: on this topic
# only, not project-wide.
resource "google_pubsub_topic_iam_member" "gcs_events_publisher" {
  count = local.with_notification ? 1 : 0

  project = var.project_id
  topic   = google_pubsub_topic.gcs_events[0].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.gcs[0].email_address}"
}

resource "google_storage_notification" "gcs_events" {
  count = local.with_notification ? 1 : 0

  bucket         = var.gcs_source_bucket
  topic          = google_pubsub_topic.gcs_events[0].id
  payload_format = "JSON_API_V1"
  event_types    = [for e in values(module.env.gcs_events) : e.notification]

  depends_on = [google_pubsub_topic_iam_member.gcs_events_publisher]
}

resource "google_pubsub_subscription" "gcs_events" {
  count = local.with_notification ? 1 : 0

  project                    = var.project_id
  name                       = "${var.name}-gcs-events"
  topic                      = google_pubsub_topic.gcs_events[0].id
  ack_deadline_seconds       = var.ack_deadline_seconds
  message_retention_duration = var.message_retention_duration
  labels                     = var.labels

  push_config {
    push_endpoint = "${module.env.service_url}${module.env.gcs_events_path}"

    oidc_token {
      service_account_email = google_service_account.events[0].email
      audience              = module.env.push_audience
    }
  }

  retry_policy {
    minimum_backoff = var.retry_minimum_backoff
    maximum_backoff = var.retry_maximum_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.invokers,
    google_service_account_iam_member.push_token_creator,
  ]
}

# --- gcs_event_delivery = "eventarc" -----------------------------------------
# One trigger per event type (a trigger matches one type), all to POST
# /events. Eventarc creates and manages each trigger's transport topic and
# subscription; their retry and dead-letter settings can only be changed on
# that subscription outside Terraform (output eventarc_transport_subscriptions).

# Eventarc's Cloud Storage triggers publish to the transport topics Eventarc
# creates, whose names are not known beforehand, as the Cloud Storage service
# agent: project-wide, as Eventarc documents.
resource "google_project_iam_member" "gcs_pubsub_publisher" {
  count = local.with_eventarc ? 1 : 0

  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.gcs[0].email_address}"
}

resource "google_project_iam_member" "events_receiver" {
  count = local.with_eventarc ? 1 : 0

  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = "serviceAccount:${google_service_account.events[0].email}"
}

resource "google_eventarc_trigger" "gcs" {
  for_each = local.with_eventarc ? module.env.gcs_events : {}

  project         = var.project_id
  name            = "${var.name}-gcs-${lower(each.key)}"
  location        = var.region
  service_account = google_service_account.events[0].email
  labels          = var.labels

  matching_criteria {
    attribute = "type"
    value     = each.value.eventarc
  }

  matching_criteria {
    attribute = "bucket"
    value     = var.gcs_source_bucket
  }

  destination {
    cloud_run_service {
      service = google_cloud_run_v2_service.this.name
      region  = var.region
      path    = module.env.gcs_events_path
    }
  }

  depends_on = [
    google_project_iam_member.gcs_pubsub_publisher,
    google_project_iam_member.events_receiver,
    google_cloud_run_v2_service_iam_member.invokers,
  ]
}

# Earlier addresses of resources that are now one of several.
moved {
  from = google_eventarc_trigger.gcs_finalized[0]
  to   = google_eventarc_trigger.gcs["finalized"]
}

moved {
  from = google_service_account_iam_member.push_token_creator
  to   = google_service_account_iam_member.push_token_creator["push"]
}

moved {
  from = google_pubsub_subscription_iam_member.dead_letter_subscriber
  to   = google_pubsub_subscription_iam_member.dead_letter_subscriber["push"]
}
