package notification

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"

	notificationv1 "github.com/puchi-dev/puchi/gen/go/puchi/notification/v1"
	"github.com/puchi-dev/puchi/platform/auth"
)

// backlogLimit bounds the notifications a stream sends first for created_after,
// and each batch read when it catches up.
const backlogLimit = 100

// pendingTTL is how long a learner touched by a transaction stays "pending":
// every commit in that time wakes their streams. The hook cannot tell which
// transaction committed, so a touch is kept past the first commit after it;
// a wake that finds nothing costs one indexed query, a missed one at most
// [Config.StreamPoll].
const pendingTTL = 2 * time.Second

// hub wakes this process's open streams of a learner right after a
// transaction that created a notification for them commits
// ([db.DB.AfterCommit] runs [hub.committed]). Notifications created by other
// instances reach streams through their poll.
type hub struct {
	mu      sync.Mutex
	subs    map[string]map[chan struct{}]struct{}
	pending map[string]time.Time // learner → when a transaction last touched them (wall clock)
}

func newHub() *hub {
	return &hub{subs: map[string]map[chan struct{}]struct{}{}, pending: map[string]time.Time{}}
}

// subscribe returns a channel that receives (coalesced) wake-ups for the
// learner, and the function that ends the subscription.
func (h *hub) subscribe(userID string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs[userID] == nil {
		h.subs[userID] = map[chan struct{}]struct{}{}
	}
	h.subs[userID][ch] = struct{}{}
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.subs[userID], ch)
		if len(h.subs[userID]) == 0 {
			delete(h.subs, userID)
		}
	}
}

// touch marks the learner as having a notification in a transaction that has
// not committed yet. Only learners with open streams are remembered.
func (h *hub) touch(userID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs[userID]) > 0 {
		h.pending[userID] = time.Now()
	}
}

// committed is the commit hook: it wakes the streams of every pending learner,
// without blocking, and forgets touches older than pendingTTL.
func (h *hub) committed() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for u, at := range h.pending {
		for ch := range h.subs[u] {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
		if time.Since(at) > pendingTTL {
			delete(h.pending, u)
		}
	}
}

// StreamNotifications sends the caller's new notifications as they are
// created, until the client goes away: the first message is either the
// created_after backlog or a keep-alive carrying the unread count, so a client
// knows at once that the stream is open. Notifications created during the
// learner's quiet hours stay in the inbox and are not pushed (a backlog
// includes them: the client asked for it).
func (s *Service) StreamNotifications(req *notificationv1.StreamNotificationsRequest, stream grpc.ServerStreamingServer[notificationv1.StreamNotificationsResponse]) error {
	ctx := stream.Context()
	u, err := auth.RequireUser(ctx)
	if err != nil {
		return err
	}
	wake, unsubscribe := s.hub.subscribe(u)
	defer unsubscribe()
	// Subscribed before reading the high-water mark: a notification committed
	// in between is above it and is found by the first wake or poll.
	last, err := s.store.MaxSeq(ctx, s.db, u)
	if err != nil {
		return err
	}
	send := func(m *notificationv1.StreamNotificationsResponse) error {
		if err := stream.Send(m); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		return nil
	}
	var backlog []Notification
	if req.GetCreatedAfter() != nil {
		if backlog, err = s.store.CreatedAfter(ctx, s.db, u, req.GetCreatedAfter().AsTime(), last, backlogLimit); err != nil {
			return err
		}
	}
	unread, err := s.store.UnreadCount(ctx, s.db, u)
	if err != nil {
		return err
	}
	if len(backlog) == 0 {
		if err := send(&notificationv1.StreamNotificationsResponse{UnreadCount: unread}); err != nil {
			return err
		}
	}
	for _, m := range withUnread(backlog, unread) {
		if err := send(m); err != nil {
			return err
		}
	}

	poll := time.NewTicker(s.cfg.StreamPoll)
	defer poll.Stop()
	keepAlive := time.NewTimer(s.cfg.StreamKeepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-keepAlive.C:
			unread, err := s.store.UnreadCount(ctx, s.db, u)
			if err != nil {
				return quiet(ctx, err)
			}
			if err := send(&notificationv1.StreamNotificationsResponse{UnreadCount: unread}); err != nil {
				return err
			}
			keepAlive.Reset(s.cfg.StreamKeepAlive)
			continue
		case <-wake:
		case <-poll.C:
		}
		msgs, err := s.newSince(ctx, u, &last)
		if err != nil {
			return quiet(ctx, err)
		}
		for _, m := range msgs {
			if err := send(m); err != nil {
				return err
			}
		}
		if len(msgs) > 0 {
			keepAlive.Reset(s.cfg.StreamKeepAlive)
		}
	}
}

// quiet hides the error of a query cancelled because the client went away.
func quiet(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// newSince reads the learner's notifications above *last (advancing it past
// every one, silent ones included) and returns the messages to push.
func (s *Service) newSince(ctx context.Context, userID string, last *int64) ([]*notificationv1.StreamNotificationsResponse, error) {
	var push []Notification
	for {
		batch, err := s.store.After(ctx, s.db, userID, *last, backlogLimit)
		if err != nil {
			return nil, err
		}
		for _, n := range batch {
			*last = n.Seq
			if !n.Silent {
				push = append(push, n)
			}
		}
		if len(batch) < backlogLimit {
			break
		}
	}
	if len(push) == 0 {
		return nil, nil
	}
	unread, err := s.store.UnreadCount(ctx, s.db, userID)
	if err != nil {
		return nil, err
	}
	return withUnread(push, unread), nil
}

// withUnread builds the messages for ns (oldest first) given the unread count
// now: each carries the count as it was when that notification was the
// newest, i.e. without the unread ones after it.
func withUnread(ns []Notification, unread int32) []*notificationv1.StreamNotificationsResponse {
	out := make([]*notificationv1.StreamNotificationsResponse, len(ns))
	for i := len(ns) - 1; i >= 0; i-- {
		out[i] = &notificationv1.StreamNotificationsResponse{Notification: toProto(ns[i]), UnreadCount: max(unread, 0)}
		if ns[i].ReadAt.IsZero() {
			unread--
		}
	}
	return out
}
