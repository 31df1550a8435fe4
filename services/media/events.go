package media

import (
	"context"
	"errors"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	mediav1 "github.com/puchi-dev/puchi/gen/go/puchi/media/v1"
	userv1 "github.com/puchi-dev/puchi/gen/go/puchi/user/v1"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/inbox"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/outbox"
	"github.com/puchi-dev/puchi/platform/service"
)

// The media service publishes MediaUploaded, MediaProcessed and MediaDeleted to
// media-events, keyed by the owner's id so that one user's events stay in order.
// It consumes UserDeleted (user-events): the user's private items are erased,
// through the inbox, so a redelivered event has no second effect.

// Topics are the topics the service consumes.
var Topics = []string{kafka.TopicUserEvents}

func event(ownerID string, payload proto.Message, at time.Time) (kafka.Message, error) {
	return kafka.NewEvent(kafka.EventSpec{
		Topic: kafka.TopicMediaEvents, Key: ownerID, Source: Name, Subject: ownerID, Payload: payload, Time: at,
	})
}

func uploadedEvent(it Item) (kafka.Message, error) {
	return event(it.OwnerID, &mediav1.MediaUploaded{
		MediaId: it.ID, OwnerId: it.OwnerID, Sha256: it.SHA256, ContentType: it.ContentType, SizeBytes: it.Size,
		Purpose: purposeToProto(it.Purpose), UploadedAt: timestamppb.New(it.CreatedAt), Visibility: visibilityToProto(it.Visibility),
	}, it.CreatedAt)
}

func processedEvent(it Item) (kafka.Message, error) {
	at := it.CreatedAt
	if it.ProcessedAt != nil {
		at = *it.ProcessedAt
	}
	return event(it.OwnerID, &mediav1.MediaProcessed{
		MediaId: it.ID, OwnerId: it.OwnerID, Width: int32(it.Width), Height: int32(it.Height), DurationMs: it.DurationMS,
		HasThumbnail: it.HasThumbnail(), ProcessedAt: timestamppb.New(at),
	}, at)
}

func deletedEvent(it Item, reason mediav1.MediaDeletionReason, at time.Time) (kafka.Message, error) {
	return event(it.OwnerID, &mediav1.MediaDeleted{
		MediaId: it.ID, OwnerId: it.OwnerID, DeletedAt: timestamppb.New(at), Reason: reason,
	}, at)
}

// deleteItem removes it in tx, publishes MediaDeleted and marks its blob for
// the sweep, which deletes the bytes once no item names them.
func (s *Service) deleteItem(ctx context.Context, tx *db.Tx, it Item, reason mediav1.MediaDeletionReason) error {
	gone, err := s.store.DeleteItem(ctx, tx, it.ID)
	if err != nil || !gone {
		return err
	}
	now := s.now()
	msg, err := deletedEvent(it, reason, now)
	if err != nil {
		return err
	}
	if err := outbox.Write(ctx, tx, msg); err != nil {
		return err
	}
	if err := s.store.MarkForGC(ctx, tx, it.SHA256, now); err != nil {
		return err
	}
	if it.HasThumbnail() {
		return s.store.MarkForGC(ctx, tx, it.ThumbSHA256, now)
	}
	return nil
}

// registerHandlers mounts the consumers on the service's router.
func (s *Service) registerHandlers(d service.Deps) {
	inbox.On(d.Router, d.DB, d.Group, s.onUserDeleted)
}

// onUserDeleted erases the user's private items (public ones, such as an
// avatar or lesson audio, stay), one MediaDeleted each.
func (s *Service) onUserDeleted(ctx context.Context, tx *db.Tx, ev *userv1.UserDeleted, _ *kafka.Message) error {
	if ev.GetUserId() == "" {
		return kafka.Permanent(errors.New("UserDeleted without user_id"))
	}
	items, err := s.store.PrivateItemsOf(ctx, tx, ev.GetUserId())
	if err != nil {
		return err
	}
	for _, it := range items {
		if err := s.deleteItem(ctx, tx, it, mediav1.MediaDeletionReason_MEDIA_DELETION_REASON_USER_DELETED); err != nil {
			return err
		}
	}
	if len(items) > 0 {
		s.gcPending.Store(true)
	}
	return nil
}
