// Package notification is the notification service: each learner's in-app
// inbox, built from the progress, quiz, lesson and user events (exactly one
// notification per triggering event and learner), per-type preferences with
// quiet hours, a daily streak reminder, and a live stream of new
// notifications. It owns the notification-events topic.
package notification

import (
	"context"
	"embed"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	notificationv1 "github.com/puchi-dev/puchi/gen/go/puchi/notification/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/auth"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/outbox"
	"github.com/puchi-dev/puchi/platform/page"
	"github.com/puchi-dev/puchi/platform/service"
)

// Name is the service's name: consumer group "notification-service-group",
// SQLite file notification.db, PostgreSQL schema "notification".
const Name = "notification"

//go:embed migrations/*.sql
var migrations embed.FS

const typeReminder = notificationv1.NotificationType_NOTIFICATION_TYPE_STREAK_REMINDER

// Spec describes the service to the host: gRPC :50054, admin :8005, consuming
// [Topics]. The streak reminder loop is not part of the hosted parts: pass a
// [Reminders] in cfg.Reminders and run it as an app component (see
// [Reminders]).
func Spec(cfg Config) service.Spec {
	return service.Spec{
		Name: Name, GRPCPort: 50054, AdminPort: 8005, Migrations: migrations, Topics: Topics,
		Register: func(d service.Deps) error {
			s := New(d.DB, cfg)
			if d.Log != nil {
				s.log = d.Log
			}
			notificationv1.RegisterNotificationServiceServer(d.GRPC, s)
			s.Subscribe(d.Router, d.Group)
			if cfg.Reminders != nil {
				cfg.Reminders.bind(s)
			}
			return nil
		},
	}
}

// Config holds the clock and intervals. A zero field takes its default.
type Config struct {
	// Now is the clock: creation times, quiet hours, the reminder's local day
	// and time. Default time.Now.
	Now func() time.Time
	// ReminderInterval is how often the reminder loop looks for due reminders
	// (default 1 minute).
	ReminderInterval time.Duration
	// ReminderWindow is how late after a learner's reminder time the reminder
	// still goes out (default [DefaultReminderWindow]).
	ReminderWindow time.Duration
	// StreamPoll is how often an open stream looks in the database for new
	// notifications, the fallback for those another instance created (default
	// 1 second; this instance's own wake its streams at commit).
	StreamPoll time.Duration
	// StreamKeepAlive is how long a stream stays silent before a keep-alive
	// (default 15 seconds).
	StreamKeepAlive time.Duration
	// Reminders, when set, is bound to the service by Register; run it as an
	// app component to send the daily streak reminders.
	Reminders *Reminders
}

func (c Config) withDefaults() Config {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.ReminderInterval <= 0 {
		c.ReminderInterval = time.Minute
	}
	if c.ReminderWindow <= 0 {
		c.ReminderWindow = DefaultReminderWindow
	}
	if c.StreamPoll <= 0 {
		c.StreamPoll = time.Second
	}
	if c.StreamKeepAlive <= 0 {
		c.StreamKeepAlive = 15 * time.Second
	}
	return c
}

// Service implements notificationv1.NotificationServiceServer, the event
// handlers ([Service.Subscribe]) and the reminder loop ([Service.RunReminders]).
// Proto types stop here and in events.go. Safe for concurrent use.
type Service struct {
	notificationv1.UnimplementedNotificationServiceServer
	db    *db.DB
	store Store
	cfg   Config
	hub   *hub
	log   *slog.Logger
}

// New returns the service over an opened, migrated database. It registers a
// commit hook on d that wakes this process's streams.
func New(d *db.DB, cfg Config) *Service {
	s := &Service{db: d, cfg: cfg.withDefaults(), hub: newHub(), log: slog.Default()}
	d.AfterCommit(s.hub.committed)
	return s
}

func (s *Service) now() time.Time { return s.cfg.Now().UTC().Truncate(time.Millisecond) }

func toProto(n Notification) *notificationv1.Notification {
	p := &notificationv1.Notification{
		Id: n.ID, Type: n.Type, Title: n.Title, Body: n.Body, Data: n.Data, CreatedAt: timestamppb.New(n.CreatedAt),
		SourceEventId: n.SourceEventID,
	}
	if !n.ReadAt.IsZero() {
		p.ReadAt = timestamppb.New(n.ReadAt)
	}
	return p
}

func prefsProto(p Prefs) *notificationv1.Preferences {
	out := &notificationv1.Preferences{
		QuietHoursStart: p.Quiet.Start, QuietHoursEnd: p.Quiet.End, ReminderTime: p.ReminderTime, Timezone: p.Timezone,
	}
	for _, t := range Types {
		out.Types = append(out.Types, &notificationv1.TypePreference{Type: t, Enabled: p.Enabled(t)})
	}
	if !p.UpdatedAt.IsZero() {
		out.UpdatedAt = timestamppb.New(p.UpdatedAt)
	}
	return out
}

// ListNotifications returns a page of the caller's notifications, newest first.
func (s *Service) ListNotifications(ctx context.Context, req *notificationv1.ListNotificationsRequest) (*notificationv1.ListNotificationsResponse, error) {
	u, err := auth.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	size := page.Size(req.GetPageSize())
	cur, err := page.Decode(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	var before int64
	if cur.Key != "" {
		if before, err = strconv.ParseInt(cur.Key, 10, 64); err != nil || before <= 0 {
			return nil, apperr.Invalid("page_token", "PAGE_TOKEN_INVALID", "page_token is not a token this API returned")
		}
	}
	items, err := s.store.List(ctx, s.db, u, req.GetUnreadOnly(), before, size)
	if err != nil {
		return nil, err
	}
	unread, err := s.store.UnreadCount(ctx, s.db, u)
	if err != nil {
		return nil, err
	}
	resp := &notificationv1.ListNotificationsResponse{
		UnreadCount: unread,
		NextPageToken: page.Next(items, size, func(n Notification) page.Cursor {
			return page.Cursor{Key: strconv.FormatInt(n.Seq, 10), ID: n.ID}
		}),
	}
	for _, n := range items {
		resp.Notifications = append(resp.Notifications, toProto(n))
	}
	return resp, nil
}

func notFound(id string) error {
	return apperr.NotFound("NOTIFICATION_NOT_FOUND", fmt.Sprintf("notification %s not found", id))
}

// MarkRead marks one of the caller's notifications read; another learner's is
// not found. Marking it again changes nothing and publishes nothing.
func (s *Service) MarkRead(ctx context.Context, req *notificationv1.MarkReadRequest) (*notificationv1.MarkReadResponse, error) {
	u, err := auth.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	id := req.GetNotificationId()
	var out Notification
	err = s.db.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
		now := s.now()
		changed, err := s.store.MarkRead(ctx, tx, u, id, now)
		if err != nil {
			return err
		}
		n, found, err := s.store.Get(ctx, tx, u, id)
		if err != nil {
			return err
		}
		if !found {
			return notFound(id)
		}
		out = n
		if !changed {
			return nil
		}
		return s.publishRead(ctx, tx, u, id, false, 1, now)
	})
	if err != nil {
		return nil, err
	}
	return &notificationv1.MarkReadResponse{Notification: toProto(out)}, nil
}

// MarkAllRead marks the caller's unread notifications read (those created up
// to created_before, when set).
func (s *Service) MarkAllRead(ctx context.Context, req *notificationv1.MarkAllReadRequest) (*notificationv1.MarkAllReadResponse, error) {
	u, err := auth.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	var before time.Time
	if req.GetCreatedBefore() != nil {
		before = req.GetCreatedBefore().AsTime()
	}
	resp := &notificationv1.MarkAllReadResponse{}
	err = s.db.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
		now := s.now()
		n, err := s.store.MarkAllRead(ctx, tx, u, now, before)
		if err != nil {
			return err
		}
		if resp.UnreadCount, err = s.store.UnreadCount(ctx, tx, u); err != nil {
			return err
		}
		resp.MarkedCount = int32(n)
		if n == 0 {
			return nil
		}
		return s.publishRead(ctx, tx, u, "", true, int32(n), now)
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *Service) publishRead(ctx context.Context, tx *db.Tx, userID, id string, all bool, count int32, at time.Time) error {
	ev, err := kafka.NewEvent(kafka.EventSpec{
		Topic: kafka.TopicNotificationEvents, Key: userID, Source: Name, Subject: userID, Time: at,
		Payload: &notificationv1.NotificationRead{
			NotificationId: id, UserId: userID, All: all, ReadAt: timestamppb.New(at), Count: count,
		},
	})
	if err != nil {
		return err
	}
	return outbox.Write(ctx, tx, ev)
}

// GetPreferences returns the caller's preferences (the defaults until changed).
func (s *Service) GetPreferences(ctx context.Context, _ *notificationv1.GetPreferencesRequest) (*notificationv1.GetPreferencesResponse, error) {
	u, err := auth.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	l, _, err := s.store.Learner(ctx, s.db, u)
	if err != nil {
		return nil, err
	}
	return &notificationv1.GetPreferencesResponse{Preferences: prefsProto(l.Prefs)}, nil
}

// UpdatePreferences changes the fields present in the request.
func (s *Service) UpdatePreferences(ctx context.Context, req *notificationv1.UpdatePreferencesRequest) (*notificationv1.UpdatePreferencesResponse, error) {
	u, err := auth.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	change := PrefsChange{
		Types: map[Type]bool{}, QuietStart: req.QuietHoursStart, QuietEnd: req.QuietHoursEnd, ReminderTime: req.ReminderTime,
	}
	for _, tp := range req.GetTypes() {
		if _, dup := change.Types[tp.GetType()]; dup {
			return nil, apperr.Invalid("types", "TYPE_REPEATED", fmt.Sprintf("type %s is listed twice", tp.GetType()))
		}
		change.Types[tp.GetType()] = tp.GetEnabled()
	}
	var out Prefs
	err = s.db.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
		ok, err := s.learner(ctx, tx, u)
		if err != nil {
			return err
		}
		if !ok {
			return apperr.NotFound("USER_DELETED", "this account was deleted")
		}
		l, _, err := s.store.Learner(ctx, tx, u)
		if err != nil {
			return err
		}
		if out, err = l.Prefs.Apply(change, s.now()); err != nil {
			return err
		}
		return s.store.SavePrefs(ctx, tx, u, out)
	})
	if err != nil {
		return nil, err
	}
	return &notificationv1.UpdatePreferencesResponse{Preferences: prefsProto(out)}, nil
}
