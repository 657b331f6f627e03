package main

// Each plugin registers itself with the runner in its init.
import (
	_ "github.com/apisix-identity-runner/apisix-identity-runner/plugins/orgsync"
	_ "github.com/apisix-identity-runner/apisix-identity-runner/plugins/userinfo"
)
