package config_test

import (
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/puchi-dev/puchi/platform/config"
)

type kafkaConfig struct {
	Brokers    []string      `env:"KAFKA_BROKERS" default:"127.0.0.1:9092" help:"bootstrap servers"`
	Partitions int           `env:"KAFKA_PARTITIONS" default:"3" help:"partitions per topic"`
	Retention  time.Duration `env:"KAFKA_RETENTION" default:"720h" help:"topic retention"`
}

func (c *kafkaConfig) Validate() error {
	if c.Partitions < 1 {
		return errors.New("KAFKA_PARTITIONS: must be at least 1")
	}
	return nil
}

type serviceConfig struct {
	Name     string     `env:"SERVICE_NAME" required:"true" help:"service to run"`
	Debug    bool       `env:"DEBUG" default:"false" help:"verbose output"`
	Level    slog.Level `env:"LOG_LEVEL" default:"info" help:"log level"`
	Ratio    float64    `env:"SAMPLE_RATIO" default:"0.5" help:"trace sampling"`
	Kafka    kafkaConfig
	Logger   *slog.Logger // wiring, not configuration: ignored
	internal string
}

func TestLoad(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		want    func(*serviceConfig)
		wantErr []string
	}{
		{
			name: "defaults",
			env:  map[string]string{"SERVICE_NAME": "lesson"},
			want: func(c *serviceConfig) {
				c.Name = "lesson"
				c.Level = slog.LevelInfo
				c.Ratio = 0.5
				c.Kafka = kafkaConfig{Brokers: []string{"127.0.0.1:9092"}, Partitions: 3, Retention: 720 * time.Hour}
			},
		},
		{
			name: "overrides",
			env: map[string]string{
				"SERVICE_NAME": "quiz", "DEBUG": "true", "LOG_LEVEL": "debug", "SAMPLE_RATIO": "1",
				"KAFKA_BROKERS": " a:1, b:2 ,,", "KAFKA_PARTITIONS": "6", "KAFKA_RETENTION": "1h30m",
			},
			want: func(c *serviceConfig) {
				c.Name = "quiz"
				c.Debug = true
				c.Level = slog.LevelDebug
				c.Ratio = 1
				c.Kafka = kafkaConfig{Brokers: []string{"a:1", "b:2"}, Partitions: 6, Retention: 90 * time.Minute}
			},
		},
		{
			name: "empty value falls back to default",
			env:  map[string]string{"SERVICE_NAME": "user", "KAFKA_PARTITIONS": ""},
			want: func(c *serviceConfig) {
				c.Name = "user"
				c.Level = slog.LevelInfo
				c.Ratio = 0.5
				c.Kafka = kafkaConfig{Brokers: []string{"127.0.0.1:9092"}, Partitions: 3, Retention: 720 * time.Hour}
			},
		},
		{
			name:    "bad integer names variable and value",
			env:     map[string]string{"SERVICE_NAME": "x", "KAFKA_PARTITIONS": "abc"},
			wantErr: []string{`KAFKA_PARTITIONS: "abc" is not an integer`},
		},
		{
			name: "every problem reported",
			env: map[string]string{
				"DEBUG": "maybe", "KAFKA_RETENTION": "forever", "LOG_LEVEL": "loud", "SAMPLE_RATIO": "x",
			},
			wantErr: []string{
				"SERVICE_NAME: required but not set",
				`DEBUG: "maybe" is not a boolean`,
				`KAFKA_RETENTION: "forever" is not a duration`,
				`LOG_LEVEL: "loud" is not a valid slog.Level`,
				`SAMPLE_RATIO: "x" is not a number`,
			},
		},
		{
			name:    "validator runs after loading",
			env:     map[string]string{"SERVICE_NAME": "x", "KAFKA_PARTITIONS": "0"},
			wantErr: []string{"KAFKA_PARTITIONS: must be at least 1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got serviceConfig
			err := config.Load(&got, config.MapLookup(tt.env))
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("Load() = nil, want errors %q", tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("Load() error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Load() = %v", err)
			}
			var want serviceConfig
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Load() = %+v, want %+v", got, want)
			}
		})
	}
}

type topLevel struct {
	Port int `env:"PORT" default:"8000"`
}

func (c topLevel) Validate() error { return errors.New("PORT: top-level validation ran") }

func TestLoadValidatesTopLevelAndNilLookup(t *testing.T) {
	t.Parallel()
	var c topLevel
	err := config.Load(&c, nil)
	if err == nil || !strings.Contains(err.Error(), "top-level validation ran") {
		t.Fatalf("Load() = %v, want validation error", err)
	}
	if c.Port != 8000 {
		t.Errorf("Port = %d, want default 8000", c.Port)
	}
}

func TestLoadPanicsOnNonPointer(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Error("Load(struct value) did not panic")
		}
	}()
	_ = config.Load(topLevel{}, nil)
}

func TestUsage(t *testing.T) {
	t.Parallel()
	got := config.Usage(&serviceConfig{})
	lines := strings.Split(strings.TrimSpace(got), "\n")
	wantPrefixes := []string{
		"VARIABLE", "SERVICE_NAME", "DEBUG", "LOG_LEVEL", "SAMPLE_RATIO",
		"KAFKA_BROKERS", "KAFKA_PARTITIONS", "KAFKA_RETENTION",
	}
	if len(lines) != len(wantPrefixes) {
		t.Fatalf("Usage() has %d lines, want %d:\n%s", len(lines), len(wantPrefixes), got)
	}
	for i, p := range wantPrefixes {
		if !strings.HasPrefix(lines[i], p) {
			t.Errorf("line %d = %q, want prefix %q", i, lines[i], p)
		}
	}
	for _, want := range []string{"(required)", "720h", "partitions per topic"} {
		if !strings.Contains(got, want) {
			t.Errorf("Usage() lacks %q:\n%s", want, got)
		}
	}
}
