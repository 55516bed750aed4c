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
  log_format                = var.log_format
  max_body_bytes            = var.max_body_bytes
  max_object_bytes          = var.max_object_bytes
  buffer_budget_bytes       = var.buffer_budget_bytes
  part_task_bytes           = var.part_task_bytes
  request_timeout_seconds   = var.request_timeout_seconds
  use_http2                 = var.use_http2
  extra_env                 = var.extra_env
}

locals {
  service_url          = module.env.service_url
  pubsub_service_agent = "service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  with_eventarc        = var.gcs_source_bucket != null

  apis = toset([
    "run.googleapis.com",
    "pubsub.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "eventarc.googleapis.com",
    "storage.googleapis.com",
  ])
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

# Eventarc delivers Cloud Storage events with a token of this account.
resource "google_service_account" "events" {
  count = local.with_eventarc ? 1 : 0

  project      = var.project_id
  account_id   = module.env.events_account_id
  display_name = "${var.name} Eventarc trigger"
  description  = "Eventarc identity that invokes ${var.name}."
}

# The Pub/Sub service agent mints the push tokens.
resource "google_service_account_iam_member" "push_token_creator" {
  service_account_id = google_service_account.push.name
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
      image = var.image

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
        cpu_idle = true
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

  depends_on = [google_project_service.apis]
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
# Pub/Sub: command topic, push subscription, dead-letter topic
# ---------------------------------------------------------------------------

resource "google_pubsub_topic" "commands" {
  project                    = var.project_id
  name                       = "${var.name}-commands"
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
# drop them.
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

# Sync pages and part tasks publish further commands to the commands topic.
resource "google_pubsub_topic_iam_member" "runtime_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.commands.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.runtime.email}"
}

# Dead-lettering needs the Pub/Sub service agent to publish to the dead-letter
# topic and to acknowledge on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${local.pubsub_service_agent}"
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  project      = var.project_id
  subscription = google_pubsub_subscription.push.name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${local.pubsub_service_agent}"
}

# ---------------------------------------------------------------------------
# Eventarc: Cloud Storage finalize events -> POST /events
# ---------------------------------------------------------------------------

data "google_storage_project_service_account" "gcs" {
  count = local.with_eventarc ? 1 : 0

  project = var.project_id
}

# Eventarc's Cloud Storage triggers publish through Pub/Sub as the Cloud
# Storage service agent.
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

# Replication reads the finalized objects as the runtime identity.
resource "google_storage_bucket_iam_member" "source_reader" {
  count = local.with_eventarc && var.grant_source_bucket_read ? 1 : 0

  bucket = var.gcs_source_bucket
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.runtime.email}"
}

resource "google_eventarc_trigger" "gcs_finalized" {
  count = local.with_eventarc ? 1 : 0

  project         = var.project_id
  name            = "${var.name}-gcs-finalized"
  location        = var.region
  service_account = google_service_account.events[0].email
  labels          = var.labels

  matching_criteria {
    attribute = "type"
    value     = "google.cloud.storage.object.v1.finalized"
  }

  matching_criteria {
    attribute = "bucket"
    value     = var.gcs_source_bucket
  }

  destination {
    cloud_run_service {
      service = google_cloud_run_v2_service.this.name
      region  = var.region
      path    = "/events"
    }
  }

  depends_on = [
    google_project_iam_member.gcs_pubsub_publisher,
    google_project_iam_member.events_receiver,
    google_cloud_run_v2_service_iam_member.invokers,
  ]
}
