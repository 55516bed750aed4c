# A Cloud Run service of two containers: any application (the ingress
# container) using its stock AWS SDK, and gcp-aws-bridge as a sidecar
# running `credential-server`. Both share the instance's loopback network and
# its service account; the sidecar trades the service account's Google ID
# token for AWS credentials and hands them to the application's SDK on
# 127.0.0.1, which finds them through AWS_CONTAINER_CREDENTIALS_FULL_URI and
# AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE. No AWS key exists anywhere.
#
# Start-up: the sidecar starts first; its startup probe (GET /healthz on the
# health port) must pass before Cloud Run starts the application
# (depends_on), so the application's first AWS call finds the server up.

locals {
  credentials_uri = "http://127.0.0.1:${var.credentials_port}/v1/credentials"
  token_dir       = "/run/secrets/aws-credentials"
  token_file      = "${local.token_dir}/token"
  aws_roles       = join(",", [for n, arn in var.aws_roles : "${n}=${arn}"])
}

resource "google_service_account" "app" {
  account_id   = "${var.service_name}-run"
  display_name = "${var.service_name} (Cloud Run; federated to AWS by its unique id)"
}

# The token the application's SDK presents to the sidecar. Generated, kept in
# Secret Manager and mounted as a file into both containers; rotating the
# secret's value takes effect without a restart (the server reads the file
# again when it changes).
resource "random_password" "credentials_token" {
  length  = 48
  special = false
}

resource "google_secret_manager_secret" "credentials_token" {
  secret_id = "${var.service_name}-aws-credentials-token"

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "credentials_token" {
  secret      = google_secret_manager_secret.credentials_token.id
  secret_data = random_password.credentials_token.result
}

resource "google_secret_manager_secret_iam_member" "credentials_token" {
  secret_id = google_secret_manager_secret.credentials_token.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.app.email}"
}

resource "google_cloud_run_v2_service" "app" {
  name     = var.service_name
  location = var.region
  ingress  = "INGRESS_TRAFFIC_ALL"

  template {
    service_account = google_service_account.app.email

    scaling {
      max_instance_count = var.max_instance_count
    }

    # The ingress container: the application.
    containers {
      name       = "app"
      image      = var.app_image
      depends_on = ["credentials"]

      ports {
        container_port = 8080
      }

      env {
        name  = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
        value = local.credentials_uri
      }
      env {
        name  = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
        value = local.token_file
      }
      env {
        name  = "AWS_REGION"
        value = var.aws_region
      }
      env {
        # The AWS CLI v1 and boto3 read this one.
        name  = "AWS_DEFAULT_REGION"
        value = var.aws_region
      }

      volume_mounts {
        name       = "aws-credentials-token"
        mount_path = local.token_dir
      }
    }

    # The sidecar: gcp-aws-bridge credential-server.
    containers {
      name  = "credentials"
      image = var.bridge_image
      args  = ["credential-server"]

      resources {
        limits = {
          cpu    = "1"
          memory = "128Mi"
        }
        cpu_idle = true
      }

      env {
        name  = "CREDENTIALS_ADDR"
        value = "127.0.0.1:${var.credentials_port}"
      }
      env {
        name  = "CREDENTIALS_HEALTH_ADDR"
        value = "0.0.0.0:${var.health_port}"
      }
      env {
        name  = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
        value = local.token_file
      }
      env {
        name  = "TARGET_AUDIENCE"
        value = var.target_audience
      }
      env {
        name  = "AWS_ROLE_ARN"
        value = var.aws_role_arn
      }
      env {
        name  = "AWS_ROLES"
        value = local.aws_roles
      }
      env {
        name  = "AWS_ROLE_DURATION_SECONDS"
        value = tostring(var.role_duration_seconds)
      }
      env {
        name  = "AWS_REGION"
        value = var.aws_region
      }
      env {
        name  = "GOOGLE_CLOUD_PROJECT"
        value = var.project_id
      }

      volume_mounts {
        name       = "aws-credentials-token"
        mount_path = local.token_dir
      }

      # The sidecar listens on loopback only; the probe reaches the
      # health listener, which answers GET /healthz and nothing else.
      startup_probe {
        period_seconds    = 1
        timeout_seconds   = 1
        failure_threshold = 30
        http_get {
          path = "/healthz"
          port = var.health_port
        }
      }
    }

    volumes {
      name = "aws-credentials-token"
      secret {
        secret = google_secret_manager_secret.credentials_token.secret_id
        items {
          version = "latest"
          path    = "token"
        }
      }
    }
  }

  depends_on = [
    google_secret_manager_secret_version.credentials_token,
    google_secret_manager_secret_iam_member.credentials_token,
  ]
}

resource "google_cloud_run_v2_service_iam_member" "invokers" {
  for_each = toset(var.invoker_members)

  name     = google_cloud_run_v2_service.app.name
  location = google_cloud_run_v2_service.app.location
  role     = "roles/run.invoker"
  member   = each.value
}
