package servicetest_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/puchi-dev/puchi/platform/auth"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/outbox"
	"github.com/puchi-dev/puchi/platform/service/servicetest"
)

func TestOutboxRowsCountAndOfType(t *testing.T) {
	servicetest.ForEachDB(t, nil, func(t *testing.T, d *db.DB) {
		a := servicetest.Event(t, kafka.EventSpec{Topic: "t1", Key: "u1", Subject: "u1", Payload: wrapperspb.String("a")})
		b := servicetest.Event(t, kafka.EventSpec{Topic: "t2", Key: "k2", Source: "src", Payload: wrapperspb.Int64(7)})
		if a.Headers[kafka.HeaderSource] != "test" || b.Headers[kafka.HeaderSource] != "src" {
			t.Fatalf("sources %q %q", a.Headers[kafka.HeaderSource], b.Headers[kafka.HeaderSource])
		}
		if err := d.InTx(context.Background(), func(ctx context.Context, tx *db.Tx) error {
			return outbox.Write(ctx, tx, a, b)
		}); err != nil {
			t.Fatal(err)
		}
		rows := servicetest.OutboxRows(t, d)
		if len(rows) != 2 || rows[0].Topic != "t1" || rows[0].Key != "u1" || rows[0].Subject != "u1" ||
			rows[0].Type != "google.protobuf.StringValue" || string(rows[0].Value) != string(a.Value) ||
			rows[1].Topic != "t2" || rows[1].Key != "k2" || rows[1].Subject != "" || rows[1].Type != "google.protobuf.Int64Value" ||
			rows[1].Headers[kafka.HeaderSource] != "src" {
			t.Fatalf("rows %+v", rows)
		}
		servicetest.CheckOutbox(t, rows[:1], "t1", "u1", "google.protobuf.StringValue")
		if got := servicetest.OfType(rows, "google.protobuf.Int64Value"); len(got) != 1 || got[0].Topic != "t2" {
			t.Fatalf("OfType %+v", got)
		}
		if n := servicetest.Count(t, d, `SELECT count(*) FROM outbox WHERE topic = ?`, "t1"); n != 1 {
			t.Fatalf("Count = %d", n)
		}
	})
}

func TestDeliverHandlesEveryTime(t *testing.T) {
	r := kafka.NewRouter()
	var got []string
	kafka.On(r, func(_ context.Context, ev *wrapperspb.StringValue, _ *kafka.Message) error {
		got = append(got, ev.GetValue())
		return nil
	})
	servicetest.Deliver(t, r, servicetest.Event(t, kafka.EventSpec{Topic: "t", Payload: wrapperspb.String("x")}), 2)
	if len(got) != 2 || got[0] != "x" || got[1] != "x" {
		t.Fatalf("handled %v", got)
	}
}

func TestAsAndAuth(t *testing.T) {
	c, ok := auth.FromContext(servicetest.As("u1", auth.RoleTeacher))
	if !ok || c.UserID != "u1" || c.Role != auth.RoleTeacher {
		t.Fatalf("claims %+v %v", c, ok)
	}
	iss, ver := servicetest.Auth(t)
	tok, _, err := iss.Issue("u2", auth.RoleLearner, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := ver.Verify(tok); err != nil || c.UserID != "u2" || c.Role != auth.RoleLearner {
		t.Fatalf("verified %+v %v", c, err)
	}
}

func TestClock(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := servicetest.NewClock(start)
	c.Advance(time.Hour)
	if !c.Now().Equal(start.Add(time.Hour)) {
		t.Fatalf("Now = %v", c.Now())
	}
}
