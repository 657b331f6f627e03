package keycloak

import "log/slog"

// logger is looked up on each use: main installs the default handler after
// package initialisation.
func logger() *slog.Logger { return slog.Default().With("component", "keycloak") }
