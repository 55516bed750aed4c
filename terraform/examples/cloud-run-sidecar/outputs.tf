output "service_url" {
  description = "URL of the Cloud Run service."
  value       = google_cloud_run_v2_service.app.uri
}

output "service_account_email" {
  description = "The service account both containers run as."
  value       = google_service_account.app.email
}

output "service_account_unique_id" {
  description = "The service account's numeric unique id: the trust policy's accounts.google.com:aud and accounts.google.com:sub (terraform/modules/aws variable google_service_account_unique_id)."
  value       = google_service_account.app.unique_id
}

output "credentials_token_secret" {
  description = "Secret Manager secret holding the token the application presents to the sidecar."
  value       = google_secret_manager_secret.credentials_token.id
}
