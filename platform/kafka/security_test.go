package kafka_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/puchi-dev/puchi/platform/broker"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/kafka/kafkatest"
	"github.com/puchi-dev/puchi/platform/telemetry/telemetrytest"
)

func TestSecurityConfigMapping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  kafka.Config
		want map[string]any
	}{
		{"plaintext", kafka.Config{}, map[string]any{}},
		{"scram", kafka.Config{SASLMechanism: "scram-sha-512", SASLUsername: "u", SASLPassword: "p"}, map[string]any{
			"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "u", "sasl.password": "p",
		}},
		{"tls", kafka.Config{TLS: true, TLSCAFile: "/ca.pem"}, map[string]any{
			"security.protocol": "SSL", "ssl.ca.location": "/ca.pem",
		}},
		{"mtls and sasl", kafka.Config{SASLMechanism: "PLAIN", SASLUsername: "u", SASLPassword: "p", TLS: true,
			TLSCAFile: "/ca.pem", TLSCertFile: "/c.pem", TLSKeyFile: "/k.pem"}, map[string]any{
			"security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN", "sasl.username": "u", "sasl.password": "p",
			"ssl.ca.location": "/ca.pem", "ssl.certificate.location": "/c.pem", "ssl.key.location": "/k.pem",
		}},
		{"insecure", kafka.Config{TLS: true, TLSInsecureSkipVerify: true}, map[string]any{
			"security.protocol": "SSL", "enable.ssl.certificate.verification": false, "ssl.endpoint.identification.algorithm": "none",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := tc.cfg.SecurityConfig()
			if len(got) != len(tc.want) {
				t.Fatalf("SecurityConfig() = %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
		})
	}
}

func TestSecurityValidate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pem := filepath.Join(dir, "x.pem")
	if err := os.WriteFile(pem, []byte("-"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	base := kafka.Config{Brokers: "a:1"}
	with := func(f func(*kafka.Config)) kafka.Config { c := base; f(&c); return c }
	tests := []struct {
		name    string
		cfg     kafka.Config
		wantEnv string
	}{
		{"none", base, ""},
		{"scram", with(func(c *kafka.Config) { c.SASLMechanism, c.SASLUsername, c.SASLPassword = "SCRAM-SHA-256", "u", "p" }), ""},
		{"plain over tls", with(func(c *kafka.Config) {
			c.SASLMechanism, c.SASLUsername, c.SASLPassword, c.TLS = "PLAIN", "u", "p", true
		}), ""},
		{"mtls", with(func(c *kafka.Config) { c.TLS, c.TLSCAFile, c.TLSCertFile, c.TLSKeyFile = true, pem, pem, pem }), ""},
		{"unknown mechanism", with(func(c *kafka.Config) { c.SASLMechanism, c.SASLUsername, c.SASLPassword = "GSSAPI", "u", "p" }), "KAFKA_SASL_MECHANISM"},
		{"user without mechanism", with(func(c *kafka.Config) { c.SASLUsername = "u" }), "KAFKA_SASL_MECHANISM"},
		{"password without mechanism", with(func(c *kafka.Config) { c.SASLPassword = "p" }), "KAFKA_SASL_MECHANISM"},
		{"no username", with(func(c *kafka.Config) { c.SASLMechanism, c.SASLPassword = "SCRAM-SHA-512", "p" }), "KAFKA_SASL_USERNAME"},
		{"no password", with(func(c *kafka.Config) { c.SASLMechanism, c.SASLUsername = "SCRAM-SHA-512", "u" }), "KAFKA_SASL_PASSWORD"},
		{"plain without tls", with(func(c *kafka.Config) { c.SASLMechanism, c.SASLUsername, c.SASLPassword = "PLAIN", "u", "p" }), "KAFKA_SASL_MECHANISM"},
		{"ca without tls", with(func(c *kafka.Config) { c.TLSCAFile = pem }), "KAFKA_TLS"},
		{"skip-verify without tls", with(func(c *kafka.Config) { c.TLSInsecureSkipVerify = true }), "KAFKA_TLS"},
		{"cert without key", with(func(c *kafka.Config) { c.TLS, c.TLSCertFile = true, pem }), "KAFKA_TLS_KEY"},
		{"key without cert", with(func(c *kafka.Config) { c.TLS, c.TLSKeyFile = true, pem }), "KAFKA_TLS_CERT"},
		{"missing ca", with(func(c *kafka.Config) { c.TLS, c.TLSCAFile = true, missing }), "KAFKA_TLS_CA"},
		{"ca is a directory", with(func(c *kafka.Config) { c.TLS, c.TLSCAFile = true, dir }), "KAFKA_TLS_CA"},
		{"skip-verify with ca", with(func(c *kafka.Config) { c.TLS, c.TLSCAFile, c.TLSInsecureSkipVerify = true, pem, true }), "KAFKA_TLS_INSECURE_SKIP_VERIFY"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			switch {
			case tc.wantEnv == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.wantEnv != "" && (err == nil || !strings.Contains(err.Error(), tc.wantEnv+":")):
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.wantEnv)
			}
			if err != nil && strings.Contains(err.Error(), `"p"`) {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
}

func TestPasswordNeverPrinted(t *testing.T) {
	t.Parallel()
	cfg := kafka.Config{Brokers: "a:1", SASLMechanism: "SCRAM-SHA-256", SASLUsername: "u", SASLPassword: "hunter2"}
	var sb strings.Builder
	slog.New(slog.NewTextHandler(&sb, nil)).Info("cfg", "kafka", cfg, "password", cfg.SASLPassword)
	js, _ := json.Marshal(cfg)
	for _, out := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), sb.String(), string(js)} {
		if strings.Contains(out, "hunter2") {
			t.Errorf("password printed: %s", out)
		}
	}
	if got := cfg.SecurityConfig()["sasl.password"]; got != "hunter2" {
		t.Errorf("sasl.password = %v, want the real password", got)
	}
}

// startSASL runs an embedded broker that requires SCRAM authentication and
// returns a client config with the right credentials.
func startSASL(t *testing.T, mech string) kafka.Config {
	t.Helper()
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(),
		SASLUser: "puchi-admin", SASLPassword: "correct horse", SASLMechanism: mech}, kafkatest.Logger(t))
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(b.Close)
	return kafka.Config{Brokers: b.Addrs(), ClientID: "sasl-test", SASLMechanism: mech,
		SASLUsername: "puchi-admin", SASLPassword: "correct horse"}
}

func TestSASLRoundTripAndEnsureTopics(t *testing.T) {
	t.Parallel()
	for _, mech := range []string{kafka.SASLScramSHA256, kafka.SASLScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			t.Parallel()
			cfg := startSASL(t, mech)
			topic := unique("sasl")
			kafkatest.EnsureTopics(t, cfg, topic)
			kafkatest.EnsureTopics(t, cfg, topic) // idempotent, alter path included

			p := kafkatest.NewProducer(t, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), kafkatest.Timeout)
			defer cancel()
			if errs := p.Publish(ctx, []kafka.Message{kafkatest.Event(t, topic, "k1", "hello")}); errs[0] != nil {
				t.Fatalf("produce with SASL: %v", errs[0])
			}
			var got collector
			kafkatest.RunConsumer(t, cfg, kafka.ConsumerConfig{Group: unique("sasl-group"), Topics: []string{topic}}, got.handle)
			kafkatest.WaitFor(t, "message consumed over SASL", func() bool { return got.len() == 1 })
			if m := got.snapshot()[0]; string(m.Key) != "k1" || kafkatest.Text(t, *m) != "hello" {
				t.Errorf("got key %q text %q, want k1 hello", m.Key, kafkatest.Text(t, *m))
			}
		})
	}
}

// TestSASLWrongCredentialsFail: with a wrong password nothing gets through within
// the caller's deadline, and the producer logs the SASL authentication failure
// (kfake closes the connection on a failed exchange, so librdkafka reports the
// authentication error as a log/error event rather than a request result).
func TestSASLWrongCredentialsFail(t *testing.T) {
	t.Parallel()
	cfg := startSASL(t, kafka.SASLScramSHA256)
	topic := unique("denied")
	kafkatest.EnsureTopics(t, cfg, topic)
	bad := cfg
	bad.SASLPassword = "wrong-password"

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := kafka.EnsureTopics(ctx, bad, unique("denied")); err == nil {
		t.Fatal("EnsureTopics with a wrong password succeeded")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("EnsureTopics took %s, want it bounded by the 5s context", d)
	}

	var logs telemetrytest.LogBuffer
	p, err := kafka.NewProducer(bad, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
		defer ccancel()
		_ = p.Close(cctx) // undelivered messages make it fail; only bound the wait
	}()
	pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer pcancel()
	if errs := p.Publish(pctx, []kafka.Message{kafkatest.Event(t, topic, "k", "v")}); errs[0] == nil {
		t.Fatal("Publish with a wrong password succeeded")
	}
	if out := logs.String(); !strings.Contains(out, "SASL authentication") {
		t.Errorf("producer log does not report the SASL failure:\n%s", out)
	} else if strings.Contains(out, "wrong-password") {
		t.Errorf("producer log leaks the password:\n%s", out)
	}
}
