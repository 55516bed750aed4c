output "service_account_email" {
  description = "Email of the service's runtime service account."
  value       = google_service_account.runtime.email
}

output "service_account_unique_id" {
  description = "Numeric unique id of the runtime service account: the azp and sub of its metadata-server ID tokens, and what the AWS trust policy must match."
  value       = google_service_account.runtime.unique_id
}

output "service_name" {
  description = "Name of the Cloud Run service."
  value       = google_cloud_run_v2_service.this.name
}

output "service_url" {
  description = "Deterministic URL of the service; the audience of the Pub/Sub push and Eventarc tokens."
  value       = local.service_url
}

output "service_uri" {
  description = "Main URL Cloud Run reports for the service."
  value       = google_cloud_run_v2_service.this.uri
}

output "pubsub_topic" {
  description = "Full id of the outside commands topic, pushed to /pubsub. The service does not publish here; grant outside publishers roles/pubsub.publisher on it."
  value       = google_pubsub_topic.commands.id
}

output "push_subscription" {
  description = "Full id of the commands topic's push subscription."
  value       = google_pubsub_subscription.push.id
}

output "tasks_topic" {
  description = "Full id of the service's own tasks topic (TASKS_TOPIC); only the runtime account publishes to it."
  value       = google_pubsub_topic.tasks.id
}

output "tasks_subscription" {
  description = "Full id of the tasks topic's push subscription, which delivers to /tasks."
  value       = google_pubsub_subscription.tasks.id
}

output "tasks_push_service_account_email" {
  description = "Identity the tasks subscription pushes with (TASKS_PUSH_EMAIL); accepted at /tasks only."
  value       = google_service_account.tasks_push.email
}

output "dead_letter_topic" {
  description = "Full id of the dead-letter topic of every push subscription."
  value       = google_pubsub_topic.dead_letter.id
}

output "dead_letter_subscription" {
  description = "Full id of the pull subscription that keeps dead-lettered messages."
  value       = google_pubsub_subscription.dead_letter.id
}

output "push_service_account_email" {
  description = "Identity the commands subscription pushes with."
  value       = google_service_account.push.email
}

output "eventarc_service_account_email" {
  description = "Identity the source bucket's events are delivered with: the notification subscription's push identity or the Eventarc triggers' account (null without a source bucket)."
  value       = local.with_gcs_events ? google_service_account.events[0].email : null
}

output "gcs_event_types" {
  description = "Cloud Storage event types of the source bucket delivered to the service: Eventarc CloudEvent types for gcs_event_delivery = \"eventarc\", notification event types otherwise (empty without a source bucket)."
  value       = [for e in values(module.env.gcs_events) : local.with_eventarc ? e.eventarc : e.notification]
}

output "gcs_notification_topic" {
  description = "Full id of the topic the source bucket's Cloud Storage notification publishes to (null unless gcs_event_delivery = \"notification\" with a source bucket)."
  value       = local.with_notification ? google_pubsub_topic.gcs_events[0].id : null
}

output "gcs_events_subscription" {
  description = "Full id of the push subscription that delivers the source bucket's notifications to /pubsub, with the dead-letter policy (null unless notifications are used)."
  value       = local.with_notification ? google_pubsub_subscription.gcs_events[0].id : null
}

output "eventarc_triggers" {
  description = "Ids of the Eventarc triggers on the source bucket, by event type short name (empty unless gcs_event_delivery = \"eventarc\")."
  value       = { for k, t in google_eventarc_trigger.gcs : k => t.id }
}

output "eventarc_transport_subscriptions" {
  description = "The Pub/Sub subscriptions Eventarc created for its triggers, by event type short name; their dead-letter topic is set outside Terraform (README, \"Cloud Storage events\")."
  value       = { for k, t in google_eventarc_trigger.gcs : k => try(t.transport[0].pubsub[0].subscription, null) }
}

output "auth_audiences" {
  description = "AUTH_AUDIENCES given to the service."
  value       = split(",", module.env.env["AUTH_AUDIENCES"])
}

output "auth_allowed_emails" {
  description = "AUTH_ALLOWED_EMAILS given to the service."
  value       = split(",", module.env.env["AUTH_ALLOWED_EMAILS"])
}

output "alert_policies" {
  description = "Names (projects/PROJECT/alertPolicies/ID) of the alert policies by key (dead_letter_backlog, oldest_unacked, replication_lag_p99)."
  value       = { for k, p in google_monitoring_alert_policy.this : k => p.name }
}

output "dashboard_id" {
  description = "Id of the Cloud Monitoring dashboard."
  value       = google_monitoring_dashboard.this.id
}
