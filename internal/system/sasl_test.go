package system_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	progressv1 "github.com/puchi-dev/puchi/gen/go/puchi/progress/v1"
	"github.com/puchi-dev/puchi/internal/system"
	"github.com/puchi-dev/puchi/platform/config"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/telemetry/telemetrytest"
	"github.com/puchi-dev/puchi/services/content"
)

const (
	saslUser     = "puchi"
	saslPassword = "correct horse battery staple"
)

// saslEnv is KAFKA_SASL_* for mech, with no KAFKA_BROKERS.
func saslEnv(mech string) map[string]string {
	return map[string]string{"KAFKA_SASL_MECHANISM": mech, "KAFKA_SASL_USERNAME": saslUser, "KAFKA_SASL_PASSWORD": saslPassword}
}

// TestSASLEmbeddedBrokerEndToEnd boots the whole system with KAFKA_SASL_* set and
// no KAFKA_BROKERS: the embedded broker requires SCRAM, the process's own clients
// authenticate (an event goes lesson → outbox → Kafka → progress's consumer), and
// a raw client gets in with the credentials only.
func TestSASLEmbeddedBrokerEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: boots the mesh")
	}
	demo, err := content.Demo()
	if err != nil {
		t.Fatal(err)
	}
	m := boot(t, t.TempDir(), "", saslEnv("scram-sha-512")) // the mechanism's case does not matter
	waitFor(t, "the demo course", m.sys.DemoLoaded)

	tok, _ := m.signUp(t, "sasl@example.com", "sasl_user", "Sasl")
	var courses lessonv1.ListCoursesResponse
	m.rest(t, 200, "GET", "/v1/courses", tok, nil, nil, &courses)
	var outline lessonv1.GetCourseResponse
	m.rest(t, 200, "GET", "/v1/courses/"+courses.GetCourses()[0].GetCourse().GetId(), tok, nil, nil, &outline)
	xp := m.completeLesson(t, tok, outline.GetUnits()[0].GetLessons()[0].GetId(), demo.Course.GetUnits()[0].GetLessons()[0])
	m.waitProgress(t, tok, "XP from the LessonCompleted event", func(p *progressv1.Progress) bool { return xp > 0 && p.GetTotalXp() == int64(xp) })

	if got := strings.Join(m.sys.Listening(), "\n"); !strings.Contains(got, "(embedded, SASL_PLAINTEXT SCRAM-SHA-512 as puchi)") {
		t.Errorf("banner does not say SASL is on:\n%s", got)
	}
	checkSASLRequired(t, m.sys.Brokers, "SCRAM-SHA-512")
}

// checkSASLRequired: a raw confluent client without credentials, or with a
// wrong password, can neither fetch metadata nor produce; with them it can both.
func checkSASLRequired(t *testing.T, brokers, mech string) {
	t.Helper()
	creds := func(pass string) ck.ConfigMap {
		return ck.ConfigMap{"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": mech, "sasl.username": saslUser, "sasl.password": pass}
	}
	// The broker drops an unauthenticated connection at once; the client keeps
	// retrying until its timeout, so a short one is enough to see it fail.
	const refused, accepted = 2 * time.Second, 30 * time.Second
	for name, sec := range map[string]ck.ConfigMap{"no credentials": nil, "wrong password": creds("wrong")} {
		if err := rawMetadata(t, brokers, sec, refused); err == nil {
			t.Errorf("%s: metadata succeeded", name)
		}
		if err := rawProduce(t, brokers, sec, refused); err == nil {
			t.Errorf("%s: produce succeeded", name)
		}
	}
	if err := rawMetadata(t, brokers, creds(saslPassword), accepted); err != nil {
		t.Errorf("with credentials: metadata: %v", err)
	}
	if err := rawProduce(t, brokers, creds(saslPassword), accepted); err != nil {
		t.Errorf("with credentials: produce: %v", err)
	}
}

func rawConfig(brokers string, sec ck.ConfigMap) *ck.ConfigMap {
	m := ck.ConfigMap{"bootstrap.servers": brokers, "log_level": 0, "enable.metrics.push": false}
	for k, v := range sec {
		m[k] = v
	}
	return &m
}

func rawMetadata(t *testing.T, brokers string, sec ck.ConfigMap, timeout time.Duration) error {
	t.Helper()
	a, err := ck.NewAdminClient(rawConfig(brokers, sec))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	_, err = a.GetMetadata(nil, false, int(timeout.Milliseconds()))
	return err
}

// rawProduce produces one record to user-events and waits for its delivery
// report, which comes within timeout.
func rawProduce(t *testing.T, brokers string, sec ck.ConfigMap, timeout time.Duration) error {
	t.Helper()
	cfg := rawConfig(brokers, sec)
	_ = cfg.SetKey("message.timeout.ms", int(timeout.Milliseconds()))
	p, err := ck.NewProducer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	reports := make(chan ck.Event, 1)
	topic := kafka.TopicUserEvents
	if err := p.Produce(&ck.Message{TopicPartition: ck.TopicPartition{Topic: &topic, Partition: ck.PartitionAny}, Key: []byte("sasl-check"), Value: []byte("x")}, reports); err != nil {
		return err
	}
	select {
	case ev := <-reports:
		return ev.(*ck.Message).TopicPartition.Error
	case <-time.After(timeout + 30*time.Second):
		t.Fatal("no delivery report")
		return nil
	}
}

// TestSASLEmbeddedBrokerLogsWithoutPassword builds a broker-only process with
// SASL settings: the broker's start line says SASL is on, with the mechanism and
// user, and no line carries the password.
func TestSASLEmbeddedBrokerLogsWithoutPassword(t *testing.T) {
	t.Parallel()
	var logs telemetrytest.LogBuffer
	sys := build(t, saslEnv("SCRAM-SHA-256"), slog.New(slog.NewJSONHandler(&logs, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sys.Run(ctx) }()
	checkSASLRequired(t, sys.Brokers, "SCRAM-SHA-256")
	cancel()
	if err := <-done; err != nil {
		t.Errorf("shutdown: %v", err)
	}

	out := logs.String()
	var line string
	for l := range strings.SplitSeq(out, "\n") {
		if strings.Contains(l, "embedded kafka broker started") {
			line = l
		}
	}
	if !strings.Contains(line, `"sasl":"SCRAM-SHA-256"`) || !strings.Contains(line, `"sasl_user":"puchi"`) {
		t.Errorf("broker start line does not say SASL is on: %q", line)
	}
	if strings.Contains(out, saslPassword) {
		t.Error("the SASL password is in the logs")
	}
}

// TestSASLEmbeddedBrokerRefusals: settings the embedded broker cannot honour fail
// Build before it starts the broker, with an error naming the variables.
func TestSASLEmbeddedBrokerRefusals(t *testing.T) {
	t.Parallel()
	with := func(extra map[string]string) map[string]string {
		env := saslEnv("SCRAM-SHA-256")
		for k, v := range extra {
			if v == "" {
				delete(env, k)
			} else {
				env[k] = v
			}
		}
		return env
	}
	tests := []struct {
		name string
		env  map[string]string
		want []string // substrings of the error
	}{
		{"plain without tls", with(map[string]string{"KAFKA_SASL_MECHANISM": "PLAIN"}), []string{"KAFKA_SASL_MECHANISM", "PLAIN", "no TLS", "SCRAM-SHA-256"}},
		{"tls", with(map[string]string{"KAFKA_TLS": "true"}), []string{"KAFKA_TLS", "does not serve TLS", "KAFKA_BROKERS"}},
		{"tls without sasl", map[string]string{"KAFKA_TLS": "true"}, []string{"KAFKA_TLS", "does not serve TLS"}},
		{"plain with tls", with(map[string]string{"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_TLS": "true"}), []string{"KAFKA_TLS", "KAFKA_SASL_MECHANISM: PLAIN"}},
		{"no password", with(map[string]string{"KAFKA_SASL_PASSWORD": ""}), []string{"KAFKA_SASL_PASSWORD"}},
		{"no username", with(map[string]string{"KAFKA_SASL_USERNAME": ""}), []string{"KAFKA_SASL_USERNAME"}},
		{"unknown mechanism", with(map[string]string{"KAFKA_SASL_MECHANISM": "GSSAPI"}), []string{"KAFKA_SASL_MECHANISM", "GSSAPI"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := loadConfig(t, tc.env)
			if _, err := cfg.EmbeddedBroker(); err == nil {
				t.Fatal("EmbeddedBroker accepted the settings")
			}
			var logs telemetrytest.LogBuffer
			sys, err := system.Build(t.Context(), cfg, system.Options{Embedded: true, Lookup: config.MapLookup(nil), Log: slog.New(slog.NewJSONHandler(&logs, nil))})
			if err == nil {
				sys.Broker.Close()
				t.Fatal("Build succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(logs.String(), "embedded kafka broker started") {
				t.Error("the broker was started before the settings were refused")
			}
		})
	}
}

// loadConfig reads a process configuration from env plus a data directory and
// free ports.
func loadConfig(t *testing.T, env map[string]string) *system.Config {
	t.Helper()
	all := map[string]string{"PUCHI_DATA_DIR": t.TempDir(), "PUCHI_BROKER_ADDR": "127.0.0.1:0"}
	for k, v := range env {
		all[k] = v
	}
	cfg := &system.Config{}
	if err := config.Load(cfg, config.MapLookup(all)); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// build builds a process that runs only the embedded broker (with the topics);
// the caller runs it or closes the broker.
func build(t *testing.T, env map[string]string, log *slog.Logger) *system.System {
	t.Helper()
	sys, err := system.Build(t.Context(), loadConfig(t, env), system.Options{Embedded: true, Lookup: config.MapLookup(nil), Log: log})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return sys
}
