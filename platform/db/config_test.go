package db

import "testing"

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"sqlite", Config{Service: "lesson", DataDir: "data"}, true},
		{"postgres", Config{Service: "user_v2", URL: "postgres://x"}, true},
		{"no service", Config{DataDir: "data"}, false},
		{"upper case", Config{Service: "Lesson", DataDir: "data"}, false},
		{"injection", Config{Service: `a"; DROP`, URL: "postgres://x"}, false},
		{"path", Config{Service: "../etc", DataDir: "data"}, false},
		{"sqlite without dir", Config{Service: "lesson"}, false},
		{"negative conns", Config{Service: "lesson", DataDir: "d", MaxConns: -1}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := tc.cfg.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestRebind(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, sqlite, postgres string
	}{
		{"none", "SELECT 1", "SELECT 1", "SELECT 1"},
		{"two", "SELECT * FROM t WHERE a = ? AND b = ?", "SELECT * FROM t WHERE a = ? AND b = ?", "SELECT * FROM t WHERE a = $1 AND b = $2"},
		{"quoted", "SELECT '?', \"?\" FROM t WHERE a = ?", "SELECT '?', \"?\" FROM t WHERE a = ?", "SELECT '?', \"?\" FROM t WHERE a = $1"},
		{"escaped quote", "SELECT 'it''s ?' WHERE a = ?", "SELECT 'it''s ?' WHERE a = ?", "SELECT 'it''s ?' WHERE a = $1"},
		{"comment", "SELECT ? -- why?\nFROM t WHERE b = ?", "SELECT ? -- why?\nFROM t WHERE b = ?", "SELECT $1 -- why?\nFROM t WHERE b = $2"},
		{"in list", "IN (?, ?, ?)", "IN (?, ?, ?)", "IN ($1, $2, $3)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := rebind(DialectSQLite, tc.in); got != tc.sqlite {
				t.Errorf("sqlite: %q, want %q", got, tc.sqlite)
			}
			if got := rebind(DialectPostgres, tc.in); got != tc.postgres {
				t.Errorf("postgres: %q, want %q", got, tc.postgres)
			}
		})
	}
}
