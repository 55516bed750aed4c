//! Several roles for one Google identity: the default role (`AWS_ROLE_ARN`)
//! and the named roles of `AWS_ROLES` (`name=arn,name2=arn2`), each assumed
//! with the same Google ID token (one cached [`IdTokenSource`]) by a provider
//! of its own.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::aws::AwsSettings;
use crate::google::identity::IdTokenSource;

use super::{anonymous_sts, http_client, AwsOptions, WebIdentityProvider};

/// One provider per role, all sharing the identity source and the STS client.
#[derive(Debug, Clone)]
pub struct RoleProviders {
    default: Arc<WebIdentityProvider>,
    named: BTreeMap<String, Arc<WebIdentityProvider>>,
}

impl RoleProviders {
    /// Builds the providers. Makes no network call.
    pub fn new(config: &AwsSettings, ids: Arc<IdTokenSource>, opts: &AwsOptions) -> RoleProviders {
        let sts = anonymous_sts(config, http_client(), opts);
        let provider = |arn: &str| {
            Arc::new(WebIdentityProvider::new(
                sts.clone(),
                ids.clone(),
                arn.to_owned(),
                config.role_session_name.clone(),
                config.role_duration,
            ))
        };
        RoleProviders {
            default: provider(&config.role_arn),
            named: config
                .roles
                .iter()
                .map(|(name, arn)| (name.clone(), provider(arn)))
                .collect(),
        }
    }

    /// The provider of the default role (`AWS_ROLE_ARN`).
    pub(crate) fn default_role(&self) -> &Arc<WebIdentityProvider> {
        &self.default
    }

    /// The provider of a named role of `AWS_ROLES`.
    pub(crate) fn named(&self, name: &str) -> Option<&Arc<WebIdentityProvider>> {
        self.named.get(name)
    }

    /// The named roles, in name order.
    pub(crate) fn iter_named(&self) -> impl Iterator<Item = (&str, &Arc<WebIdentityProvider>)> {
        self.named.iter().map(|(n, p)| (n.as_str(), p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn each_role_has_its_provider_and_they_share_the_identity() {
        let config = Config::from_iter_for_cli(
            [
                ("TARGET_AUDIENCE", "sts.amazonaws.com"),
                ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/main"),
                ("AWS_REGION", "us-east-1"),
                (
                    "AWS_ROLES",
                    "reader=arn:aws:iam::123456789012:role/r,ops=arn:aws:iam::210987654321:role/o",
                ),
                ("GCE_METADATA_HOST", "127.0.0.1:9"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        )
        .unwrap();
        let ids = Arc::new(IdTokenSource::from_settings(&config.identity).unwrap());
        let roles = RoleProviders::new(&config.aws, ids.clone(), &AwsOptions::default());
        assert_eq!(
            roles.default_role().role_arn(),
            "arn:aws:iam::123456789012:role/main"
        );
        assert_eq!(
            roles.named("reader").unwrap().role_arn(),
            "arn:aws:iam::123456789012:role/r"
        );
        assert_eq!(
            roles.named("ops").unwrap().role_arn(),
            "arn:aws:iam::210987654321:role/o"
        );
        assert!(roles.named("main").is_none());
        assert_eq!(
            roles.iter_named().map(|(n, _)| n).collect::<Vec<_>>(),
            ["ops", "reader"]
        );
        for (_, p) in roles.iter_named() {
            assert!(Arc::ptr_eq(p.identity(), &ids));
        }
    }
}
