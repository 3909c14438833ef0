"""Everything that talks to the upstream OIDC IdP: discovery, the OAuth client, ID token checks."""
