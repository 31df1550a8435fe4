package kafka

import (
	"errors"
	"fmt"
	"os"
	"strings"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// SASL mechanisms accepted in [Config.SASLMechanism] (KAFKA_SASL_MECHANISM).
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// saslMechanism returns the normalised (upper-case) mechanism.
func (c Config) saslMechanism() string {
	return strings.ToUpper(strings.TrimSpace(c.SASLMechanism))
}

// sasl reports whether SASL authentication is configured.
func (c Config) sasl() bool { return c.saslMechanism() != "" }

// SecurityProtocol is the librdkafka security.protocol cfg implies: PLAINTEXT,
// SASL_PLAINTEXT, SSL or SASL_SSL.
func (c Config) SecurityProtocol() string {
	switch {
	case c.sasl() && c.TLS:
		return "SASL_SSL"
	case c.sasl():
		return "SASL_PLAINTEXT"
	case c.TLS:
		return "SSL"
	}
	return "PLAINTEXT"
}

// SecurityConfig returns the librdkafka properties of c's SASL and TLS settings
// (empty for a plaintext, unauthenticated cluster). Every client Puchi builds,
// the operator commands included, merges it into its configuration. The map
// holds the SASL password: never log it.
func (c Config) SecurityConfig() ck.ConfigMap {
	m := ck.ConfigMap{}
	if !c.sasl() && !c.TLS {
		return m
	}
	m["security.protocol"] = c.SecurityProtocol()
	if c.sasl() {
		m["sasl.mechanisms"] = c.saslMechanism()
		m["sasl.username"] = c.SASLUsername
		m["sasl.password"] = string(c.SASLPassword)
	}
	if c.TLS {
		if c.TLSCAFile != "" {
			m["ssl.ca.location"] = c.TLSCAFile
		}
		if c.TLSCertFile != "" {
			m["ssl.certificate.location"] = c.TLSCertFile
			m["ssl.key.location"] = c.TLSKeyFile
		}
		if c.TLSInsecureSkipVerify {
			m["enable.ssl.certificate.verification"] = false
			m["ssl.endpoint.identification.algorithm"] = "none"
		}
	}
	return m
}

// ValidateSecurity reports every invalid or half-configured SASL/TLS setting,
// each error naming its environment variable. [Config.Validate] includes it.
func (c Config) ValidateSecurity() error {
	var errs []error
	mech := c.saslMechanism()
	switch mech {
	case "":
		if c.SASLUsername != "" || c.SASLPassword != "" {
			errs = append(errs, errors.New("KAFKA_SASL_MECHANISM: must be set (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512) when KAFKA_SASL_USERNAME or KAFKA_SASL_PASSWORD is"))
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if strings.TrimSpace(c.SASLUsername) == "" {
			errs = append(errs, fmt.Errorf("KAFKA_SASL_USERNAME: required with KAFKA_SASL_MECHANISM=%s", mech))
		}
		if c.SASLPassword == "" {
			errs = append(errs, fmt.Errorf("KAFKA_SASL_PASSWORD: required with KAFKA_SASL_MECHANISM=%s", mech))
		}
		if mech == SASLPlain && !c.TLS {
			errs = append(errs, errors.New("KAFKA_SASL_MECHANISM: PLAIN sends the password in clear text; set KAFKA_TLS=true or use SCRAM-SHA-256/SCRAM-SHA-512"))
		}
	default:
		errs = append(errs, fmt.Errorf("KAFKA_SASL_MECHANISM: %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.SASLMechanism))
	}

	files := []struct{ env, path string }{
		{"KAFKA_TLS_CA", c.TLSCAFile},
		{"KAFKA_TLS_CERT", c.TLSCertFile},
		{"KAFKA_TLS_KEY", c.TLSKeyFile},
	}
	if !c.TLS {
		for _, f := range files {
			if f.path != "" {
				errs = append(errs, fmt.Errorf("KAFKA_TLS: must be true when %s is set", f.env))
			}
		}
		if c.TLSInsecureSkipVerify {
			errs = append(errs, errors.New("KAFKA_TLS: must be true when KAFKA_TLS_INSECURE_SKIP_VERIFY is set"))
		}
		return errors.Join(errs...)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		if c.TLSCertFile == "" {
			errs = append(errs, errors.New("KAFKA_TLS_CERT: required with KAFKA_TLS_KEY (client certificate and key go together)"))
		} else {
			errs = append(errs, errors.New("KAFKA_TLS_KEY: required with KAFKA_TLS_CERT (client certificate and key go together)"))
		}
	}
	if c.TLSInsecureSkipVerify && c.TLSCAFile != "" {
		errs = append(errs, errors.New("KAFKA_TLS_INSECURE_SKIP_VERIFY: contradicts KAFKA_TLS_CA (a CA is given to verify the broker); unset one"))
	}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		if st, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.env, err))
		} else if st.IsDir() {
			errs = append(errs, fmt.Errorf("%s: %s is a directory, want a PEM file", f.env, f.path))
		}
	}
	return errors.Join(errs...)
}
