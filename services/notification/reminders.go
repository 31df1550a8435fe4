package notification

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/puchi-dev/puchi/platform/db"
)

// Reminders is the app component that runs the daily streak reminder loop of
// the service its [Spec] registers:
//
//	rem := notification.NewReminders()
//	specs = append(specs, notification.Spec(notification.Config{Reminders: rem}))
//	// after service.Start / service.Mount:
//	app.Add(rem) // stops with the app's context; stop it before the databases close
//
// Run waits until Register has bound the service (or ctx ends). Several
// instances may run it at once: a reminder goes out once per learner and local
// day (reminders' primary key).
type Reminders struct {
	once  sync.Once
	ready chan struct{}
	svc   *Service
}

// NewReminders returns an unbound reminder component.
func NewReminders() *Reminders { return &Reminders{ready: make(chan struct{})} }

func (r *Reminders) bind(s *Service) {
	r.once.Do(func() {
		r.svc = s
		close(r.ready)
	})
}

// Name names the component.
func (r *Reminders) Name() string { return "notification reminders" }

// Run runs [Service.RunReminders] once the service is registered, until ctx ends.
func (r *Reminders) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-r.ready:
	}
	return r.svc.RunReminders(ctx)
}

// RunReminders sends the due streak reminders now and then every
// [Config.ReminderInterval] until ctx ends. Failures are logged and retried at
// the next tick; it returns nil when ctx ends.
func (s *Service) RunReminders(ctx context.Context) error {
	t := time.NewTicker(s.cfg.ReminderInterval)
	defer t.Stop()
	for {
		if n, err := s.SendReminders(ctx); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "notification: streak reminders failed", "err", err, "sent", n)
		} else if n > 0 {
			s.log.InfoContext(ctx, "notification: streak reminders sent", "sent", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// errReminderSent rolls back a reminder another instance sent meanwhile.
var errReminderSent = errors.New("notification: reminder already sent")

// SendReminders sends every reminder due at the clock's now ([DueReminders])
// and returns how many went out. Each is decided again in its own
// transaction, on fresh data, and recorded in reminders, so a tick that
// overlaps another (or another instance's) sends nothing twice.
func (s *Service) SendReminders(ctx context.Context) (int, error) {
	now := s.cfg.Now()
	latestToday := now.UTC().Add(14 * time.Hour).Format(dateLayout) // UTC+14 is the earliest zone
	learners, err := s.store.ReminderLearners(ctx, s.db, latestToday)
	if err != nil {
		return 0, err
	}
	sent := 0
	var errs []error
	for _, due := range DueReminders(now, s.cfg.ReminderWindow, learners) {
		ok, err := s.sendReminder(ctx, now, due.UserID)
		if err != nil {
			if ctx.Err() != nil {
				return sent, ctx.Err()
			}
			errs = append(errs, err)
			continue
		}
		if ok {
			sent++
		}
	}
	return sent, errors.Join(errs...)
}

func (s *Service) sendReminder(ctx context.Context, now time.Time, userID string) (bool, error) {
	sent := false
	err := s.db.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
		if erased, err := s.store.Erased(ctx, tx, userID); err != nil || erased {
			return err
		}
		l, found, err := s.store.Learner(ctx, tx, userID)
		if err != nil || !found {
			return err
		}
		due, ok := ReminderDue(now, s.cfg.ReminderWindow, ReminderLearner{
			UserID: userID, Timezone: l.Prefs.Timezone, ReminderTime: l.Prefs.ReminderTime, Quiet: l.Prefs.Quiet,
			ReminderMuted: !l.Prefs.Enabled(typeReminder), LastActivityDate: l.LastActivityDate,
			LastReminderDate: l.LastReminderDate,
		})
		if !ok {
			return nil
		}
		var streak int32
		if l.StreakDate != "" && l.StreakDate == addDays(due.LocalDate, -1) {
			streak = l.StreakDays
		}
		n, created, err := s.notify(ctx, tx, userID, "", ReminderMessage(due.LocalDate, streak))
		if err != nil || !created {
			return err
		}
		fresh, err := s.store.InsertReminder(ctx, tx, userID, due.LocalDate, n.ID, s.now())
		if err != nil {
			return err
		}
		if !fresh {
			return errReminderSent
		}
		sent = true
		return nil
	})
	if errors.Is(err, errReminderSent) {
		return false, nil
	}
	return sent, err
}

// addDays shifts a local date (YYYY-MM-DD) by n days; "" for a bad date.
func addDays(date string, n int) string {
	t, err := time.Parse(dateLayout, date)
	if err != nil {
		return ""
	}
	return t.AddDate(0, 0, n).Format(dateLayout)
}
