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
  description = "Full id of the topic that carries commands to the service."
  value       = google_pubsub_topic.commands.id
}

output "push_subscription" {
  description = "Full id of the push subscription."
  value       = google_pubsub_subscription.push.id
}

output "dead_letter_topic" {
  description = "Full id of the dead-letter topic."
  value       = google_pubsub_topic.dead_letter.id
}

output "dead_letter_subscription" {
  description = "Full id of the pull subscription that keeps dead-lettered messages."
  value       = google_pubsub_subscription.dead_letter.id
}

output "push_service_account_email" {
  description = "Identity Pub/Sub push calls the service with."
  value       = google_service_account.push.email
}

output "eventarc_service_account_email" {
  description = "Identity Eventarc calls the service with (null without a trigger)."
  value       = local.with_eventarc ? google_service_account.events[0].email : null
}

output "eventarc_trigger" {
  description = "Id of the Eventarc trigger on the Cloud Storage bucket (null without one)."
  value       = local.with_eventarc ? google_eventarc_trigger.gcs_finalized[0].id : null
}

output "auth_audiences" {
  description = "AUTH_AUDIENCES given to the service."
  value       = split(",", module.env.env["AUTH_AUDIENCES"])
}

output "auth_allowed_emails" {
  description = "AUTH_ALLOWED_EMAILS given to the service."
  value       = split(",", module.env.env["AUTH_ALLOWED_EMAILS"])
}
