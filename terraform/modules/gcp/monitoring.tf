# The alert policies and the dashboard, always; with metrics = true also the
# Google-Built OpenTelemetry Collector as a sidecar of the service (its
# container and volume are in the service, main.tf), its configuration in
# Secret Manager and the runtime account's right to write metrics. What they
# are is computed in ../monitoring, a module without any provider that
# tests/integration/terraform_monitoring.rs renders offline; this file only
# turns its outputs into resources.

locals {
  # The subscriptions of main.tf, by id.
  dead_letter_subscription_ids = ["${var.name}-dead-letter"]
  push_subscription_ids = concat(
    ["${var.name}-push", "${var.name}-tasks"],
    local.with_notification ? ["${var.name}-gcs-events"] : [],
  )
}

module "monitoring" {
  source = "../monitoring"

  metrics                     = var.metrics
  name                        = var.name
  collector_image             = var.collector_image
  dead_letter_subscriptions   = local.dead_letter_subscription_ids
  push_subscriptions          = local.push_subscription_ids
  replication_lag_p99_seconds = var.replication_lag_p99_seconds
  notification_channels       = var.alert_notification_channels
}

# The collector's config.yaml, mounted into the sidecar as a file. The
# service's template names this version, so a changed configuration rolls out
# a new revision.
resource "google_secret_manager_secret" "collector_config" {
  count = module.monitoring.enabled ? 1 : 0

  project   = var.project_id
  secret_id = "${var.name}-otel-collector-config"
  labels    = var.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "collector_config" {
  count = module.monitoring.enabled ? 1 : 0

  secret      = google_secret_manager_secret.collector_config[0].id
  secret_data = module.monitoring.collector_config_yaml
}

resource "google_secret_manager_secret_iam_member" "collector_config" {
  count = module.monitoring.enabled ? 1 : 0

  project   = var.project_id
  secret_id = google_secret_manager_secret.collector_config[0].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.runtime.email}"
}

# The collector exports as the runtime account: roles/monitoring.metricWriter.
resource "google_project_iam_member" "runtime_monitoring" {
  for_each = toset(module.monitoring.runtime_roles)

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.runtime.email}"
}

resource "google_monitoring_alert_policy" "this" {
  for_each = module.monitoring.alert_policies

  project               = var.project_id
  display_name          = each.value.display_name
  combiner              = "OR"
  severity              = each.value.severity
  notification_channels = module.monitoring.notification_channels
  user_labels           = var.labels

  documentation {
    content   = each.value.documentation
    mime_type = "text/markdown"
  }

  conditions {
    display_name = each.value.display_name

    dynamic "condition_threshold" {
      for_each = each.value.threshold == null ? [] : [each.value.threshold]
      content {
        filter          = condition_threshold.value.filter
        comparison      = condition_threshold.value.comparison
        threshold_value = condition_threshold.value.threshold_value
        duration        = condition_threshold.value.duration

        aggregations {
          alignment_period   = condition_threshold.value.period
          per_series_aligner = condition_threshold.value.aligner
        }

        trigger {
          count = 1
        }
      }
    }

    dynamic "condition_prometheus_query_language" {
      for_each = each.value.promql == null ? [] : [each.value.promql]
      content {
        query               = condition_prometheus_query_language.value.query
        duration            = condition_prometheus_query_language.value.duration
        evaluation_interval = condition_prometheus_query_language.value.evaluation_interval
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  depends_on = [google_project_service.apis]
}

resource "google_monitoring_dashboard" "this" {
  project        = var.project_id
  dashboard_json = module.monitoring.dashboard_json

  depends_on = [google_project_service.apis]
}
