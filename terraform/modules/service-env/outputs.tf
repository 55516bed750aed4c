output "service_url" {
  description = "Deterministic URL of the service: the audience of push and Eventarc tokens."
  value       = local.service_url
}

output "env" {
  description = "The container's environment; empty values (e.g. S3_PREFIX for the whole bucket) are left out."
  value       = { for k, v in local.env : k => v if v != "" }
}

output "invoker_members" {
  description = "Members given roles/run.invoker on the service."
  value       = local.invoker_members
}

output "custom_audiences" {
  description = "Cloud Run custom audiences: tokens for these are accepted by Cloud Run besides the service URL."
  value       = var.additional_auth_audiences
}

output "push_audience" {
  description = "aud of the Pub/Sub push subscription's OIDC token."
  value       = local.push_audience
}

output "push_endpoint" {
  description = "The push subscription's endpoint."
  value       = local.push_endpoint
}

output "runtime_account_id" {
  description = "account_id of the service's runtime service account."
  value       = local.runtime_account_id
}

output "push_account_id" {
  description = "account_id of the Pub/Sub push service account."
  value       = local.push_account_id
}

output "push_service_account_email" {
  description = "Email of the Pub/Sub push service account (the push token's email)."
  value       = local.push_email
}

output "tasks_account_id" {
  description = "account_id of the tasks subscription's push service account."
  value       = local.tasks_account_id
}

output "tasks_push_service_account_email" {
  description = "Email of the tasks subscription's push service account (TASKS_PUSH_EMAIL): an invoker of the service, accepted at /tasks only."
  value       = local.tasks_email
}

output "commands_topic_name" {
  description = "Name of the outside commands topic, pushed to /pubsub."
  value       = local.commands_topic_name
}

output "tasks_topic_name" {
  description = "Name of the service's own tasks topic (TASKS_TOPIC is its full id)."
  value       = local.tasks_topic_name
}

output "tasks_push_endpoint" {
  description = "The tasks subscription's push endpoint: the service's inside door."
  value       = local.tasks_push_endpoint
}

output "gcs_events" {
  description = "The Cloud Storage event types delivered from the source bucket, by short name: the Eventarc CloudEvent type and the Pub/Sub notification event type of each. Empty without a source bucket."
  value       = local.gcs_events
}

output "gcs_event_delivery" {
  description = "How the source bucket's events reach the service: notification or eventarc."
  value       = var.gcs_event_delivery
}

output "gcs_events_path" {
  description = "Path the source bucket's events are delivered to: /pubsub for notifications, /events for Eventarc."
  value       = local.gcs_events_path
}

output "events_account_id" {
  description = "account_id of the account that delivers the source bucket's events (the notification subscription's push identity, or the Eventarc triggers' account)."
  value       = local.events_account_id
}

output "eventarc_service_account_email" {
  description = "Email of the account that delivers the source bucket's events (notification push identity or Eventarc trigger account); null without a source bucket."
  value       = local.events_email
}

output "container_port_name" {
  description = "Name of the container port: h2c for HTTP/2 end to end, else http1."
  value       = var.use_http2 ? "h2c" : "http1"
}
