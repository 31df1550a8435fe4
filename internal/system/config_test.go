package system_test

import (
	"strings"
	"testing"
	"time"

	"github.com/puchi-dev/puchi/internal/system"
	"github.com/puchi-dev/puchi/platform/config"
)

// TestKafkaLinger: KAFKA_LINGER reaches every producer; 0 means no lingering
// (not the client library's default); out-of-range values are refused by name.
func TestKafkaLinger(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		env     string
		want    time.Duration // kafka.Config.Linger: negative = none
		wantErr bool
	}{
		{"", time.Millisecond, false},
		{"5ms", 5 * time.Millisecond, false},
		{"0", -1, false},
		{"-1ms", 0, true},
		{"2s", 0, true},
	} {
		t.Run("KAFKA_LINGER="+tt.env, func(t *testing.T) {
			env := map[string]string{}
			if tt.env != "" {
				env["KAFKA_LINGER"] = tt.env
			}
			env["PUCHI_DATA_DIR"] = t.TempDir()
			cfg := &system.Config{}
			err := config.Load(cfg, config.MapLookup(env))
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "KAFKA_LINGER") {
					t.Fatalf("Validate() = %v, want an error naming KAFKA_LINGER", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Kafka("127.0.0.1:9092").Linger; (tt.want < 0 && got >= 0) || (tt.want >= 0 && got != tt.want) {
				t.Errorf("kafka.Config.Linger = %v, want %v", got, tt.want)
			}
		})
	}
}
