package vocabulary

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	userv1 "github.com/puchi-dev/puchi/gen/go/puchi/user/v1"
	vocabularyv1 "github.com/puchi-dev/puchi/gen/go/puchi/vocabulary/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/auth"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/service"
	"github.com/puchi-dev/puchi/platform/service/servicetest"
)

type harness struct {
	s      *Service
	d      *db.DB
	clock  *servicetest.Clock
	router *kafka.Router
}

func newHarness(t *testing.T, d *db.DB, cfg Config) *harness {
	t.Helper()
	clock := servicetest.NewClock(time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC))
	cfg.Now = clock.Now
	spec := Spec(cfg)
	if spec.Name != Name || spec.GRPCPort != 50057 || spec.AdminPort != 8006 || len(spec.Topics) != 2 {
		t.Fatalf("spec: %+v", spec)
	}
	s, err := New(d, cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{s: s, d: d, clock: clock, router: kafka.NewRouter()}
	s.registerHandlers(service.Deps{DB: d, Router: h.router, Group: "vocabulary-service-group"})
	return h
}

func as(userID string) context.Context { return servicetest.As(userID, auth.RoleLearner) }

func newUserID() string { return uuid.Must(uuid.NewV7()).String() }

// deliver hands msg to the consumer as the Kafka consumer would.
func (h *harness) deliver(t *testing.T, msg kafka.Message) {
	t.Helper()
	servicetest.Deliver(t, h.router, msg, 1)
}

func lessonCompleted(t *testing.T, userID, lessonID string, terms ...string) kafka.Message {
	t.Helper()
	ev := &lessonv1.LessonCompleted{UserId: userID, AttemptId: newUserID(), LessonId: lessonID, CompletedAt: timestamppb.Now()}
	for _, term := range terms {
		ev.Words = append(ev.Words, &lessonv1.Word{Term: term, Translation: "vi:" + term, PartOfSpeech: "noun"})
	}
	return servicetest.Event(t, kafka.EventSpec{Topic: kafka.TopicLessonEvents, Key: userID, Source: "lesson", Subject: userID, Payload: ev})
}

// outboxRows returns the outbox rows of type ceType ("": all of them), oldest first.
func outboxRows(t *testing.T, d *db.DB, ceType string) []servicetest.OutboxRow {
	t.Helper()
	rows := servicetest.OutboxRows(t, d)
	if ceType == "" {
		return rows
	}
	return servicetest.OfType(rows, ceType)
}

const (
	typeAdded    = "puchi.vocabulary.v1.WordAdded"
	typeReviewed = "puchi.vocabulary.v1.WordReviewed"
	typeMastered = "puchi.vocabulary.v1.WordMastered"
)

var count = servicetest.Count

func deck(t *testing.T, h *harness, uid string) []*vocabularyv1.Card {
	t.Helper()
	resp, err := h.s.ListDeck(as(uid), &vocabularyv1.ListDeckRequest{PageSize: 200})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetCards()
}

func TestLessonCompletedAddsWordsOnce(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		h := newHarness(t, d, Config{})
		uid, lesson1, lesson2 := newUserID(), newUserID(), newUserID()

		// The same event delivered twice (a redelivery) adds the words once.
		msg := lessonCompleted(t, uid, lesson1, "apple", "banana", "cherry", "apple")
		h.deliver(t, msg)
		h.deliver(t, msg)
		if n := len(deck(t, h, uid)); n != 3 {
			t.Fatalf("deck has %d cards, want 3", n)
		}
		// Completing another lesson (or this one again) that shares words adds only the new ones.
		h.deliver(t, lessonCompleted(t, uid, lesson2, "banana", "date"))
		h.deliver(t, lessonCompleted(t, uid, lesson1, "apple", "banana", "cherry"))
		cards := deck(t, h, uid)
		if len(cards) != 4 {
			t.Fatalf("deck has %d cards, want 4", len(cards))
		}
		for _, c := range cards {
			wantLesson := lesson1
			if c.GetTerm() == "date" {
				wantLesson = lesson2
			}
			if c.GetSourceLessonId() != wantLesson || c.GetSource() != vocabularyv1.CardSource_CARD_SOURCE_LESSON ||
				c.GetState() != vocabularyv1.CardState_CARD_STATE_NEW || c.GetTranslation() != "vi:"+c.GetTerm() {
				t.Errorf("card %+v", c)
			}
		}
		added := outboxRows(t, d, typeAdded)
		if len(added) != 4 {
			t.Fatalf("%d WordAdded events, want 4", len(added))
		}
		var ev vocabularyv1.WordAdded
		if err := proto.Unmarshal(added[3].Value, &ev); err != nil || ev.GetTerm() != "date" || ev.GetUserId() != uid ||
			ev.GetLessonId() != lesson2 || added[3].Key != uid || added[3].Topic != kafka.TopicVocabularyEvents {
			t.Fatalf("WordAdded %v %+v %v", &ev, added[3], err)
		}
		// Another learner's deck is their own.
		other := newUserID()
		h.deliver(t, lessonCompleted(t, other, lesson1, "apple"))
		if len(deck(t, h, other)) != 1 || len(deck(t, h, uid)) != 4 {
			t.Fatal("decks mixed up")
		}
		// A malformed event is permanent (dead-lettered), not retried forever.
		bad := lessonCompleted(t, "", lesson1, "x")
		if err := h.router.Handle(context.Background(), &bad); !kafka.IsPermanent(err) {
			t.Fatalf("bad event: %v", err)
		}
	})
}

func TestAddWordListAndStats(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		h := newHarness(t, d, Config{})
		uid := newUserID()
		ctx := as(uid)
		var ids []string
		for _, term := range []string{"one", "two", "three", "four", "five"} {
			resp, err := h.s.AddWord(ctx, &vocabularyv1.AddWordRequest{Term: term, Translation: "t-" + term})
			if err != nil {
				t.Fatal(err)
			}
			if c := resp.GetCard(); c.GetSource() != vocabularyv1.CardSource_CARD_SOURCE_MANUAL || c.GetState() != vocabularyv1.CardState_CARD_STATE_NEW {
				t.Fatalf("card %+v", c)
			}
			ids = append(ids, resp.GetCard().GetId())
			h.clock.Advance(time.Second)
		}
		// A duplicate term (after normalising white space) is AlreadyExists naming the term.
		_, err := h.s.AddWord(ctx, &vocabularyv1.AddWordRequest{Term: "  two ", Translation: "again"})
		if e, ok := apperr.As(err); !ok || e.Kind != apperr.KindConflict || e.Field != "term" || e.Reason != "TERM_ALREADY_IN_DECK" {
			t.Fatalf("duplicate: %v", err)
		}
		// An idempotent retry returns the first card and adds nothing.
		first, err := h.s.AddWord(ctx, &vocabularyv1.AddWordRequest{Term: "six", Translation: "6", IdempotencyKey: "k-6"})
		if err != nil {
			t.Fatal(err)
		}
		again, err := h.s.AddWord(ctx, &vocabularyv1.AddWordRequest{Term: "six", Translation: "6", IdempotencyKey: "k-6"})
		if err != nil || again.GetCard().GetId() != first.GetCard().GetId() {
			t.Fatalf("retry: %v %v", again, err)
		}
		ids = append(ids, first.GetCard().GetId())

		// Pages of 4, newest first, with the total.
		p1, err := h.s.ListDeck(ctx, &vocabularyv1.ListDeckRequest{PageSize: 4})
		if err != nil || len(p1.GetCards()) != 4 || p1.GetTotalCount() != 6 || p1.GetNextPageToken() == "" {
			t.Fatalf("page 1: %v %v", p1, err)
		}
		p2, err := h.s.ListDeck(ctx, &vocabularyv1.ListDeckRequest{PageSize: 4, PageToken: p1.GetNextPageToken()})
		if err != nil || len(p2.GetCards()) != 2 || p2.GetNextPageToken() != "" {
			t.Fatalf("page 2: %v %v", p2, err)
		}
		var got []string
		for _, c := range append(p1.GetCards(), p2.GetCards()...) {
			got = append(got, c.GetId())
		}
		for i := range got {
			if got[i] != ids[len(ids)-1-i] {
				t.Fatalf("order %v, want reverse of %v", got, ids)
			}
		}
		if _, err := h.s.ListDeck(ctx, &vocabularyv1.ListDeckRequest{PageToken: "garbage"}); apperr.KindOf(err) != apperr.KindInvalid {
			t.Fatalf("bad token: %v", err)
		}

		// Review one card: the state filter and the stats follow.
		if _, err := h.s.ReviewWord(ctx, &vocabularyv1.ReviewWordRequest{CardId: ids[0], Rating: vocabularyv1.Rating_RATING_AGAIN}); err != nil {
			t.Fatal(err)
		}
		learning, err := h.s.ListDeck(ctx, &vocabularyv1.ListDeckRequest{State: vocabularyv1.CardState_CARD_STATE_LEARNING})
		if err != nil || len(learning.GetCards()) != 1 || learning.GetCards()[0].GetId() != ids[0] || learning.GetTotalCount() != 1 {
			t.Fatalf("learning filter: %v %v", learning, err)
		}
		h.clock.Advance(2 * time.Minute)
		st, err := h.s.GetStats(ctx, &vocabularyv1.GetStatsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		s := st.GetStats()
		if s.GetTotalCards() != 6 || s.GetNewCards() != 5 || s.GetLearningCards() != 1 || s.GetDueNow() != 1 || s.GetDueToday() != 1 ||
			s.GetNewToday() != 1 || s.GetReviewsToday() != 0 || s.GetDailyNewLimit() != 50 || s.GetDailyReviewLimit() != 200 || s.GetRetention_30D() != 0 {
			t.Fatalf("stats %+v", s)
		}
		// Without a signed-in caller nothing is served.
		if _, err := h.s.ListDeck(context.Background(), &vocabularyv1.ListDeckRequest{}); apperr.KindOf(err) != apperr.KindUnauthenticated {
			t.Fatalf("anonymous: %v", err)
		}
	})
}

func TestDueQueueRespectsDailyLimits(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		h := newHarness(t, d, Config{DailyNewLimit: 3, DailyReviewLimit: 2})
		uid := newUserID()
		ctx := as(uid)
		h.deliver(t, lessonCompleted(t, uid, newUserID(), "w1", "w2", "w3", "w4", "w5"))

		q, err := h.s.GetDueQueue(ctx, &vocabularyv1.GetDueQueueRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(q.GetCards()) != 3 || q.GetNewCount() != 5 || q.GetNewLeftToday() != 3 || q.GetDueCount() != 0 || q.GetReviewsLeftToday() != 2 {
			t.Fatalf("first queue: %v", q)
		}
		for i, c := range q.GetCards() { // oldest new cards first: the lesson's order
			if c.GetTerm() != []string{"w1", "w2", "w3"}[i] {
				t.Fatalf("queue order: %v", q.GetCards())
			}
			if _, err := h.s.ReviewWord(ctx, &vocabularyv1.ReviewWordRequest{CardId: c.GetId(), Rating: vocabularyv1.Rating_RATING_EASY}); err != nil {
				t.Fatal(err)
			}
		}
		// Today's new-card limit is spent: nothing left to study.
		q, err = h.s.GetDueQueue(ctx, &vocabularyv1.GetDueQueueRequest{})
		if err != nil || len(q.GetCards()) != 0 || q.GetNewLeftToday() != 0 || q.GetNewCount() != 2 {
			t.Fatalf("after the new limit: %v %v", q, err)
		}
		// A month later: 3 reviews are due but only 2 fit the review limit; they
		// come first, then new cards (the new limit is a new day's).
		h.clock.Advance(30 * 24 * time.Hour)
		q, err = h.s.GetDueQueue(ctx, &vocabularyv1.GetDueQueueRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(q.GetCards()) != 4 || q.GetDueCount() != 3 || q.GetReviewsLeftToday() != 2 || q.GetNewLeftToday() != 3 {
			t.Fatalf("month later: %v", q)
		}
		for i, c := range q.GetCards() {
			isNew := c.GetState() == vocabularyv1.CardState_CARD_STATE_NEW
			if isNew != (i >= 2) {
				t.Fatalf("reviews must come first: %v", q.GetCards())
			}
		}
		if !q.GetCards()[0].GetDue().AsTime().Before(q.GetCards()[1].GetDue().AsTime()) &&
			!q.GetCards()[0].GetDue().AsTime().Equal(q.GetCards()[1].GetDue().AsTime()) {
			t.Fatalf("earliest due first: %v", q.GetCards())
		}
		// A limit on the queue's length is honoured.
		q, err = h.s.GetDueQueue(ctx, &vocabularyv1.GetDueQueueRequest{Limit: 1})
		if err != nil || len(q.GetCards()) != 1 || q.GetCards()[0].GetState() == vocabularyv1.CardState_CARD_STATE_NEW {
			t.Fatalf("limit 1: %v %v", q, err)
		}
		// Two reviews spend today's review limit.
		for _, c := range q.GetCards() {
			if _, err := h.s.ReviewWord(ctx, &vocabularyv1.ReviewWordRequest{CardId: c.GetId(), Rating: vocabularyv1.Rating_RATING_GOOD}); err != nil {
				t.Fatal(err)
			}
		}
		q, _ = h.s.GetDueQueue(ctx, &vocabularyv1.GetDueQueueRequest{})
		if q.GetReviewsLeftToday() != 1 || len(q.GetCards()) != 1+2 {
			t.Fatalf("after one review: %v", q)
		}
		if _, err := h.s.ReviewWord(ctx, &vocabularyv1.ReviewWordRequest{CardId: q.GetCards()[0].GetId(), Rating: vocabularyv1.Rating_RATING_GOOD}); err != nil {
			t.Fatal(err)
		}
		q, _ = h.s.GetDueQueue(ctx, &vocabularyv1.GetDueQueueRequest{})
		if q.GetReviewsLeftToday() != 0 || q.GetDueCount() != 1 || len(q.GetCards()) != 2 {
			t.Fatalf("review limit spent: %v", q)
		}
	})
}

func TestReviewWord(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		h := newHarness(t, d, Config{})
		alice, bob := newUserID(), newUserID()
		add, err := h.s.AddWord(as(alice), &vocabularyv1.AddWordRequest{Term: "hello", Translation: "xin chào"})
		if err != nil {
			t.Fatal(err)
		}
		cardID := add.GetCard().GetId()

		// Bob cannot review (or even see) Alice's card; unknown cards are NotFound too.
		for _, id := range []string{cardID, newUserID()} {
			_, err := h.s.ReviewWord(as(bob), &vocabularyv1.ReviewWordRequest{CardId: id, Rating: vocabularyv1.Rating_RATING_GOOD})
			if e, ok := apperr.As(err); !ok || e.Kind != apperr.KindNotFound || e.Reason != "CARD_NOT_FOUND" {
				t.Fatalf("foreign card %s: %v", id, err)
			}
		}
		// Out-of-range ratings and future times are refused, naming the field.
		for _, r := range []vocabularyv1.Rating{0, 5} {
			_, err := h.s.ReviewWord(as(alice), &vocabularyv1.ReviewWordRequest{CardId: cardID, Rating: r})
			if e, ok := apperr.As(err); !ok || e.Kind != apperr.KindInvalid || e.Field != "rating" {
				t.Fatalf("rating %d: %v", r, err)
			}
		}
		now := h.clock.Now()
		_, err = h.s.ReviewWord(as(alice), &vocabularyv1.ReviewWordRequest{CardId: cardID, Rating: vocabularyv1.Rating_RATING_GOOD,
			ReviewedAt: timestamppb.New(now.Add(time.Hour))})
		if e, ok := apperr.As(err); !ok || e.Field != "reviewed_at" {
			t.Fatalf("future: %v", err)
		}
		if n := len(outboxRows(t, d, typeReviewed)); n != 0 {
			t.Fatalf("refused reviews published %d events", n)
		}

		// A review made offline 5 minutes ago; retried with its idempotency key.
		req := &vocabularyv1.ReviewWordRequest{CardId: cardID, Rating: vocabularyv1.Rating_RATING_GOOD,
			ReviewedAt: timestamppb.New(now.Add(-5 * time.Minute)), IdempotencyKey: "r-1"}
		first, err := h.s.ReviewWord(as(alice), req)
		if err != nil {
			t.Fatal(err)
		}
		retry, err := h.s.ReviewWord(as(alice), req)
		if err != nil || !proto.Equal(first, retry) {
			t.Fatalf("retry: %v %v", retry, err)
		}
		r := first.GetResult()
		c := r.GetCard()
		if r.GetStateBefore() != vocabularyv1.CardState_CARD_STATE_NEW || c.GetState() != vocabularyv1.CardState_CARD_STATE_LEARNING ||
			c.GetStep() != 1 || c.GetReps() != 1 || !c.GetDue().AsTime().Equal(now.Add(5*time.Minute)) ||
			!c.GetLastReview().AsTime().Equal(now.Add(-5*time.Minute)) || c.GetStability() <= 0 || r.GetNewlyMastered() {
			t.Fatalf("first review: %v", r)
		}
		reviewed := outboxRows(t, d, typeReviewed)
		if len(reviewed) != 1 || reviewed[0].Key != alice {
			t.Fatalf("%d WordReviewed events", len(reviewed))
		}
		var ev vocabularyv1.WordReviewed
		if err := proto.Unmarshal(reviewed[0].Value, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.GetCardId() != cardID || ev.GetTerm() != "hello" || ev.GetRating() != vocabularyv1.Rating_RATING_GOOD ||
			ev.GetStateBefore() != vocabularyv1.CardState_CARD_STATE_NEW || ev.GetStateAfter() != vocabularyv1.CardState_CARD_STATE_LEARNING ||
			ev.GetStability() != c.GetStability() || ev.GetDifficulty() != c.GetDifficulty() || ev.GetReps() != 1 ||
			ev.GetStabilityBefore() != 0 || ev.GetStep() != 1 || ev.GetReviewId() == "" || !ev.GetDue().AsTime().Equal(c.GetDue().AsTime()) {
			t.Fatalf("WordReviewed %v", &ev)
		}
		// A review dated before the last one is refused.
		_, err = h.s.ReviewWord(as(alice), &vocabularyv1.ReviewWordRequest{CardId: cardID, Rating: vocabularyv1.Rating_RATING_GOOD,
			ReviewedAt: timestamppb.New(now.Add(-time.Hour))})
		if e, ok := apperr.As(err); !ok || e.Reason != "REVIEWED_AT_BEFORE_LAST_REVIEW" {
			t.Fatalf("before last review: %v", err)
		}

		// Easy at every due date: the card is mastered once, when first
		// scheduled 21 days or more ahead; WordMastered is published once.
		mastered := 0
		for i := 0; i < 6; i++ {
			cards := deck(t, h, alice)
			if due := cards[0].GetDue().AsTime(); due.After(h.clock.Now()) {
				h.clock.Advance(due.Sub(h.clock.Now()))
			}
			resp, err := h.s.ReviewWord(as(alice), &vocabularyv1.ReviewWordRequest{CardId: cardID, Rating: vocabularyv1.Rating_RATING_EASY})
			if err != nil {
				t.Fatal(err)
			}
			res := resp.GetResult()
			if res.GetNewlyMastered() {
				mastered++
				if res.GetScheduledDays() < MasteredDays || !res.GetCard().GetMastered() {
					t.Fatalf("mastered at %d days", res.GetScheduledDays())
				}
			} else if res.GetScheduledDays() >= MasteredDays && !res.GetCard().GetMastered() {
				t.Fatalf("not mastered at %d days", res.GetScheduledDays())
			}
		}
		if mastered != 1 || len(outboxRows(t, d, typeMastered)) != 1 || len(outboxRows(t, d, typeReviewed)) != 7 {
			t.Fatalf("mastered %d times, %d WordMastered, %d WordReviewed", mastered,
				len(outboxRows(t, d, typeMastered)), len(outboxRows(t, d, typeReviewed)))
		}
		var m vocabularyv1.WordMastered
		if err := proto.Unmarshal(outboxRows(t, d, typeMastered)[0].Value, &m); err != nil || m.GetCardId() != cardID || m.GetUserId() != alice {
			t.Fatalf("WordMastered %v %v", &m, err)
		}
		if n := count(t, d, `SELECT COUNT(*) FROM reviews WHERE card_id = ?`, cardID); n != 7 {
			t.Fatalf("%d reviews stored, want 7", n)
		}
		st, err := h.s.GetStats(as(alice), &vocabularyv1.GetStatsRequest{})
		if err != nil || st.GetStats().GetMasteredCards() != 1 || st.GetStats().GetReviewCards() != 1 || st.GetStats().GetRetention_30D() != 1 {
			t.Fatalf("stats: %v %v", st, err)
		}
	})
}

// Concurrent reviews of one card each apply once, in some order: no update is lost.
func TestConcurrentReviewsOfOneCard(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		h := newHarness(t, d, Config{})
		uid := newUserID()
		add, err := h.s.AddWord(as(uid), &vocabularyv1.AddWordRequest{Term: "race", Translation: "đua"})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				if _, err := h.s.ReviewWord(as(uid), &vocabularyv1.ReviewWordRequest{CardId: add.GetCard().GetId(), Rating: vocabularyv1.Rating_RATING_HARD}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if c := deck(t, h, uid)[0]; c.GetReps() != 4 || count(t, d, `SELECT COUNT(*) FROM reviews`) != 4 {
			t.Fatalf("card %v after 4 concurrent reviews", c)
		}
	})
}

func TestUserDeletedErasesTheDeck(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		h := newHarness(t, d, Config{})
		alice, bob := newUserID(), newUserID()
		for _, uid := range []string{alice, bob} {
			h.deliver(t, lessonCompleted(t, uid, newUserID(), "a", "b"))
			c := deck(t, h, uid)[0]
			if _, err := h.s.ReviewWord(as(uid), &vocabularyv1.ReviewWordRequest{CardId: c.GetId(), Rating: vocabularyv1.Rating_RATING_GOOD, IdempotencyKey: "k"}); err != nil {
				t.Fatal(err)
			}
		}
		msg := servicetest.Event(t, kafka.EventSpec{Topic: kafka.TopicUserEvents, Key: alice, Source: "user", Subject: alice,
			Payload: &userv1.UserDeleted{UserId: alice, DeletedAt: timestamppb.Now()}})
		h.deliver(t, msg)
		h.deliver(t, msg) // a redelivery is harmless
		for table, want := range map[string]int{"cards": 0, "reviews": 0, "idempotency_keys": 0} {
			if n := count(t, d, `SELECT COUNT(*) FROM `+table+` WHERE user_id = ?`, alice); n != want {
				t.Errorf("%s: %d rows of the deleted learner", table, n)
			}
		}
		if len(deck(t, h, bob)) != 2 || count(t, d, `SELECT COUNT(*) FROM reviews WHERE user_id = ?`, bob) != 1 {
			t.Fatal("another learner's deck was touched")
		}
	})
}
