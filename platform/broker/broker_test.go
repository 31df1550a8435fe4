package broker_test

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/puchi-dev/puchi/platform/broker"
	"github.com/puchi-dev/puchi/platform/config"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func TestStartRejectsBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  broker.Config
	}{
		{"no port", broker.Config{Addr: "127.0.0.1"}},
		{"bad port", broker.Config{Addr: "127.0.0.1:http"}},
		{"port out of range", broker.Config{Addr: "127.0.0.1:70000"}},
		{"negative retention", broker.Config{Addr: "127.0.0.1:0", Retention: -time.Hour}},
		{"sasl user without password", broker.Config{Addr: "127.0.0.1:0", SASLUser: "u"}},
		{"sasl password without user", broker.Config{Addr: "127.0.0.1:0", SASLPassword: "p"}},
		{"unknown sasl mechanism", broker.Config{Addr: "127.0.0.1:0", SASLUser: "u", SASLPassword: "p", SASLMechanism: "GSSAPI"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := broker.Start(tc.cfg, testLogger(t))
			if err == nil {
				b.Close()
				t.Fatalf("Start(%+v) succeeded, want error", tc.cfg)
			}
		})
	}
}

func TestPortZeroPicksFreePort(t *testing.T) {
	t.Parallel()
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0"}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	addr := b.Addrs()
	if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Fatalf("Addrs() = %q, want 127.0.0.1:<free port>", addr)
	}
	b.Close()
	b.Close() // idempotent
}

// TestDataDirSurvivesRestart produces a record with the confluent client, restarts
// the broker on the same directory and reads the record back.
func TestDataDirSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const topic = "persisted"

	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", DataDir: dir}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	produceOne(t, b.Addrs(), topic, "k1", "hello")
	b.Close()

	b2, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", DataDir: dir}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	key, value := consumeFirst(t, b2.Addrs(), topic)
	if key != "k1" || value != "hello" {
		t.Fatalf("after restart got key=%q value=%q, want k1/hello", key, value)
	}
}

func produceOne(t *testing.T, addrs, topic, key, value string) {
	t.Helper()
	admin, err := ck.NewAdminClient(&ck.ConfigMap{"bootstrap.servers": addrs})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	res, err := admin.CreateTopics(ctx, []ck.TopicSpecification{{Topic: topic, NumPartitions: 1, ReplicationFactor: 1}})
	admin.Close()
	if err != nil || res[0].Error.Code() != ck.ErrNoError {
		t.Fatalf("create topic: %v %v", err, res)
	}

	p, err := ck.NewProducer(&ck.ConfigMap{"bootstrap.servers": addrs, "enable.idempotence": true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	reports := make(chan ck.Event, 1)
	err = p.Produce(&ck.Message{
		TopicPartition: ck.TopicPartition{Topic: new(topic), Partition: ck.PartitionAny},
		Key:            []byte(key), Value: []byte(value),
	}, reports)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-reports:
		if m := ev.(*ck.Message); m.TopicPartition.Error != nil {
			t.Fatalf("delivery: %v", m.TopicPartition.Error)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no delivery report within 30s")
	}
}

func consumeFirst(t *testing.T, addrs, topic string) (key, value string) {
	t.Helper()
	c, err := ck.NewConsumer(&ck.ConfigMap{
		"bootstrap.servers": addrs,
		"group.id":          "restart-check",
		"auto.offset.reset": "earliest",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Assign([]ck.TopicPartition{{Topic: new(topic), Partition: 0, Offset: ck.OffsetBeginning}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if m, ok := c.Poll(200).(*ck.Message); ok && m.TopicPartition.Error == nil {
			return string(m.Key), string(m.Value)
		}
	}
	t.Fatal("no record within 30s after restart")
	return "", ""
}

// TestSASLRequiresCredentials starts the broker with a SCRAM superuser: a client
// with the credentials gets metadata, one with a wrong password or none does not.
// Printing the configuration does not show the password.
func TestSASLRequiresCredentials(t *testing.T) {
	t.Parallel()
	for _, mech := range []string{"SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			t.Parallel()
			cfg := broker.Config{Addr: "127.0.0.1:0", SASLUser: "admin", SASLPassword: "s3cret", SASLMechanism: mech}
			for _, verb := range []string{"%v", "%+v", "%#v"} {
				if s := fmt.Sprintf(verb, cfg); strings.Contains(s, "s3cret") {
					t.Fatalf("%s of the config shows the password: %s", verb, s)
				}
			}
			b, err := broker.Start(cfg, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if err := metadata(t, b.Addrs(), mech, "admin", "s3cret"); err != nil {
				t.Fatalf("right credentials: %v", err)
			}
			if err := metadata(t, b.Addrs(), mech, "admin", "wrong"); err == nil {
				t.Fatal("wrong password: metadata succeeded")
			}
			if err := metadata(t, b.Addrs(), "", "", ""); err == nil {
				t.Fatal("no SASL: metadata succeeded")
			}
		})
	}
}

// TestSASLConfigWinsOverDataDir restarts a persistent broker with other SASL
// settings each time: the configured user and password always apply (kfake on
// its own would keep the users of the directory's first run), and the data
// written before survives.
func TestSASLConfigWinsOverDataDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const topic = "kept"
	start := func(user, pass, mech string) *broker.Broker {
		t.Helper()
		b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", DataDir: dir, SASLUser: user, SASLPassword: config.Secret(pass), SASLMechanism: mech}, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	b := start("", "", "") // first run without SASL
	produceOne(t, b.Addrs(), topic, "k1", "hello")
	b.Close()
	steps := []struct{ user, pass, mech, stale string }{
		{"puchi", "first", "SCRAM-SHA-256", ""},
		{"puchi", "second", "SCRAM-SHA-256", "first"}, // password changed
		{"other", "third", "SCRAM-SHA-512", "second"}, // user and mechanism changed
	}
	for _, st := range steps {
		b := start(st.user, st.pass, st.mech)
		if err := metadata(t, b.Addrs(), st.mech, st.user, st.pass); err != nil {
			b.Close()
			t.Fatalf("%s/%s %s: configured credentials refused: %v", st.user, st.pass, st.mech, err)
		}
		if err := metadata(t, b.Addrs(), "", "", ""); err == nil {
			b.Close()
			t.Fatalf("%s %s: unauthenticated client got metadata", st.user, st.mech)
		}
		if st.stale != "" {
			if err := metadata(t, b.Addrs(), "SCRAM-SHA-256", "puchi", st.stale); err == nil {
				b.Close()
				t.Fatalf("%s %s: the previous run's password %q still works", st.user, st.mech, st.stale)
			}
		}
		b.Close()
	}

	// The record of the first run is still there (read without SASL).
	b = start("", "", "")
	defer b.Close()
	if key, value := consumeFirst(t, b.Addrs(), topic); key != "k1" || value != "hello" {
		t.Fatalf("after the SASL runs got key=%q value=%q, want k1/hello", key, value)
	}
}

// metadata fetches cluster metadata with a raw confluent admin client, with SASL
// (SASL_PLAINTEXT) when mech is set.
func metadata(t *testing.T, addrs, mech, user, pass string) error {
	t.Helper()
	m := ck.ConfigMap{"bootstrap.servers": addrs, "log_level": 0, "enable.metrics.push": false}
	if mech != "" {
		m["security.protocol"] = "SASL_PLAINTEXT"
		m["sasl.mechanisms"] = mech
		m["sasl.username"] = user
		m["sasl.password"] = pass
	}
	a, err := ck.NewAdminClient(&m)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	_, err = a.GetMetadata(nil, false, 3000)
	return err
}
