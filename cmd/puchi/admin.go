package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/puchi-dev/puchi/internal/system"
	"github.com/puchi-dev/puchi/platform/auth"
	"github.com/puchi-dev/puchi/platform/grpcx"
)

// adminIssuer mints the platform's admin tokens from the signing key, for the
// commands that act as an administrator (content import, analytics rebuild).
func adminIssuer(cfg *system.Config) (*auth.Issuer, error) {
	key, err := auth.LoadKey(cfg.KeyFile())
	if err != nil {
		return nil, fmt.Errorf("the signing key (PUCHI_JWT_KEY_FILE=%s) is needed to act as an administrator: %w", cfg.KeyFile(), err)
	}
	return auth.NewIssuer(key, auth.TokenConfig{Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience})
}

// dialService connects to a running service the way services reach each other
// (mutual TLS unless PUCHI_TLS=off), at PUCHI_<SVC>_ADDR or 127.0.0.1:<its port>.
func dialService(cfg *system.Config, name string, timeout time.Duration) (*grpcx.Client, error) {
	target := os.Getenv("PUCHI_" + strings.ToUpper(name) + "_ADDR")
	if target == "" {
		for _, sp := range system.Specs(cfg) {
			if sp.Name == name {
				target = fmt.Sprintf("127.0.0.1:%d", sp.GRPCPort)
			}
		}
	}
	if target == "" {
		return nil, fmt.Errorf("unknown service %q", name)
	}
	return system.DialService(cfg, name, target, timeout)
}
