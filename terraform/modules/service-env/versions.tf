terraform {
  # No provider: everything here is computed from the inputs, so a test can
  # render it offline (tests/integration/terraform_env.rs).
  required_version = ">= 1.5.0, < 2.0.0"
}
