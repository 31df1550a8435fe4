package page

import (
	"testing"

	"github.com/puchi-dev/puchi/platform/apperr"
)

func TestSize(t *testing.T) {
	t.Parallel()
	for in, want := range map[int32]int{-1: Default, 0: Default, 1: 1, 50: 50, 200: 200, 201: Max, 1 << 30: Max} {
		if got := Size(in); got != want {
			t.Errorf("Size(%d) = %d, want %d", in, got, want)
		}
	}
}

func TestTokenRoundTripAndGarbage(t *testing.T) {
	t.Parallel()
	c := Cursor{Key: "2026-11-30T00:00:00Z", ID: "01a2"}
	got, err := Decode(Encode(c))
	if err != nil || got != c {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if got, err := Decode(""); err != nil || got != (Cursor{}) {
		t.Fatalf("empty token: %+v %v", got, err)
	}
	for _, bad := range []string{"!!!", "e30", "bm90IGpzb24"} { // invalid base64, {}, "not json"
		_, err := Decode(bad)
		if e, ok := apperr.As(err); !ok || e.Field != "page_token" {
			t.Errorf("Decode(%q) = %v, want invalid page_token", bad, err)
		}
	}
}

func TestNext(t *testing.T) {
	t.Parallel()
	last := func(s string) Cursor { return Cursor{ID: s} }
	if tok := Next([]string{"a", "b"}, 3, last); tok != "" {
		t.Errorf("short page has a next token %q", tok)
	}
	tok := Next([]string{"a", "b", "c"}, 3, last)
	if c, err := Decode(tok); err != nil || c.ID != "c" {
		t.Errorf("full page: %+v %v", c, err)
	}
}
