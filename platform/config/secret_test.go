package config_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/puchi-dev/puchi/platform/config"
)

func TestSecretNeverPrinted(t *testing.T) {
	t.Parallel()
	s := config.Secret("hunter2")
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "password", s, "cfg", struct{ P config.Secret }{s})
	js, _ := json.Marshal(struct{ P config.Secret }{s})
	for name, out := range map[string]string{
		"%v": fmt.Sprintf("%v", s), "%s": fmt.Sprintf("%s", s), "%+v": fmt.Sprintf("%+v", struct{ P config.Secret }{s}),
		"%#v": fmt.Sprintf("%#v", s), "slog": logged.String(), "json": string(js),
	} {
		if strings.Contains(out, "hunter2") {
			t.Errorf("%s prints the secret: %s", name, out)
		}
		if !strings.Contains(out, "[REDACTED]") {
			t.Errorf("%s = %q, want [REDACTED]", name, out)
		}
	}
	if string(s) != "hunter2" {
		t.Error("string(s) lost the value")
	}
	if config.Secret("").String() != "" {
		t.Error("an empty secret prints something")
	}
}
