package ops_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/puchi-dev/puchi/internal/ops"
	"github.com/puchi-dev/puchi/platform/broker"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/kafka/kafkatest"
)

// TestConnectUsesSASL: the ops client authenticates with the same SASL settings
// as the services, and wrong credentials fail within the connect timeout with an
// error that names the credential variables.
func TestConnectUsesSASL(t *testing.T) {
	t.Parallel()
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", SASLUser: "ops", SASLPassword: "pw",
		SASLMechanism: kafka.SASLScramSHA512}, kafkatest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	cfg := kafka.Config{Brokers: b.Addrs(), SASLMechanism: kafka.SASLScramSHA512, SASLUsername: "ops", SASLPassword: "pw"}
	c, err := ops.Connect(context.Background(), cfg, 10*time.Second)
	if err != nil {
		t.Fatalf("Connect with SASL: %v", err)
	}
	c.Close()

	bad := cfg
	bad.SASLPassword = "nope"
	start := time.Now()
	_, err = ops.Connect(context.Background(), bad, 2*time.Second)
	var ue *ops.UnreachableError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "KAFKA_SASL_PASSWORD") {
		t.Fatalf("Connect with a wrong password = %v, want an error naming KAFKA_SASL_PASSWORD", err)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("Connect took %s with a 2s connect timeout", d)
	}

	half := cfg
	half.SASLPassword = ""
	if _, err := ops.Connect(context.Background(), half, time.Second); err == nil || !strings.Contains(err.Error(), "KAFKA_SASL_PASSWORD") {
		t.Errorf("Connect without a password = %v, want a KAFKA_SASL_PASSWORD error", err)
	}
}
