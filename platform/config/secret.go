package config

import (
	"fmt"
	"log/slog"
)

// Secret is a string that never shows up in logs or formatted output: fmt, slog
// and JSON all print [Secret.String] ("[REDACTED]", or "" when empty). Use
// string(s) where the real value is needed. Passwords and keys read by [Load]
// (KAFKA_SASL_PASSWORD, PUCHI_MEDIA_S3_SECRET_KEY) have this type.
type Secret string

const redacted = "[REDACTED]"

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return fmt.Sprintf("config.Secret(%q)", s.String()) }

// LogValue keeps slog from printing the value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps encoders (JSON, YAML, ...) from writing the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
