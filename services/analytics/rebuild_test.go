package analytics

import (
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	analyticsv1 "github.com/puchi-dev/puchi/gen/go/puchi/analytics/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/kafka/kafkatest"
	"github.com/puchi-dev/puchi/platform/service/servicetest"
)

// TestRebuildFromTheLog produces a known set of events, lets the live
// consumer project them, rebuilds from the beginning and checks that the
// numbers are identical after the swap, and that reads during the rebuild
// answered from the old generation.
func TestRebuildFromTheLog(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker")
	}
	kc := kafkatest.Start(t)
	kafkatest.EnsureTopics(t, kc, kafka.Topics...)
	sc := newScenario()
	msgs := sc.events(t)
	for i := range msgs {
		msgs[i].Timestamp = time.Now() // as a relay publishes them; ce_time keeps the event time
	}
	kafkatest.Produce(t, kc, msgs...)

	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		s := New(d, Config{Kafka: kc, Now: func() time.Time { return testNow }, RebuildPoll: 100 * time.Millisecond, RetireDelay: time.Millisecond})
		s.log = kafkatest.Logger(t)
		live := kafka.NewRouter()
		s.Subscribe(live, testGroup+"-"+string(d.Dialect()))
		_, stop := kafkatest.RunConsumer(t, kc, kafka.ConsumerConfig{Group: testGroup + "-" + string(d.Dialect()), Topics: Topics}, live.Handle)
		defer stop()

		want := wantOverview(t)
		overview := func() *analyticsv1.Overview {
			ov, err := s.GetOverview(admin(), overviewReq())
			if err != nil {
				t.Error(err)
				return nil
			}
			return ov.GetOverview()
		}
		kafkatest.WaitFor(t, "the live projections", func() bool { return proto.Equal(overview(), want) })
		before, _ := s.store.State(t.Context(), d)

		var mu sync.Mutex
		var during *analyticsv1.Overview
		var conflict error
		var buildingRows int
		s.beforeSwap = func(r Rebuild) {
			mu.Lock()
			defer mu.Unlock()
			during = overview() // caught up, not swapped: the old generation answers
			buildingRows = servicetest.Count(t, d, `SELECT count(*) FROM applied_events WHERE generation = ?`, r.Generation)
			_, conflict = s.Rebuild(admin(), &analyticsv1.RebuildRequest{})
		}
		resp, err := s.Rebuild(admin(), &analyticsv1.RebuildRequest{})
		if err != nil {
			t.Fatal(err)
		}
		id := resp.GetRebuild().GetId()
		if resp.GetRebuild().GetState() != analyticsv1.RebuildState_REBUILD_STATE_RUNNING {
			t.Fatalf("started %v", resp.GetRebuild())
		}
		var st *analyticsv1.RebuildStatus
		kafkatest.WaitFor(t, "the rebuild to finish", func() bool {
			r, err := s.GetRebuildStatus(admin(), &analyticsv1.GetRebuildStatusRequest{RebuildId: id})
			if err != nil {
				t.Fatal(err)
			}
			st = r.GetRebuild()
			return st.GetState() != analyticsv1.RebuildState_REBUILD_STATE_RUNNING
		})
		s.wg.Wait()
		if st.GetState() != analyticsv1.RebuildState_REBUILD_STATE_SWAPPED || st.GetLag() != 0 || st.GetConsumed() < int64(len(msgs)) || st.GetFinishedAt() == nil {
			t.Fatalf("rebuild ended %v", st)
		}
		mu.Lock()
		defer mu.Unlock()
		if !proto.Equal(during, want) {
			t.Errorf("overview during the rebuild\n got %v\nwant %v", during, want)
		}
		if buildingRows != len(msgs) {
			t.Errorf("the new generation had %d events before the swap, want %d", buildingRows, len(msgs))
		}
		if apperr.KindOf(conflict) != apperr.KindConflict {
			t.Errorf("a second rebuild while one runs: %v", conflict)
		}
		after, _ := s.store.State(t.Context(), d)
		if after.Current == before.Current || after.Building != "" {
			t.Fatalf("state before %+v after %+v", before, after)
		}
		if got := overview(); !proto.Equal(got, want) {
			t.Fatalf("overview after the rebuild\n got %v\nwant %v", got, want)
		}
		sum, err := s.GetMySummary(as(sc.u1), &analyticsv1.GetMySummaryRequest{})
		if err != nil || !proto.Equal(sum.GetSummary(), wantU1()) {
			t.Fatalf("summary after the rebuild %v %v", sum, err)
		}
		if n := servicetest.Count(t, d, `SELECT count(*) FROM event_counts WHERE generation <> ?`, after.Current); n != 0 {
			t.Errorf("%d rows of the old generation remain", n)
		}
	})
}
