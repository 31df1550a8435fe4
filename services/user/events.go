package user

import (
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	userv1 "github.com/puchi-dev/puchi/gen/go/puchi/user/v1"
	"github.com/puchi-dev/puchi/platform/kafka"
)

// The user service publishes to user-events and consumes nothing yet. Every event
// is keyed by the user id, so that one user's events stay in order.

func event(userID string, payload proto.Message, at time.Time) (kafka.Message, error) {
	return kafka.NewEvent(kafka.EventSpec{
		Topic: kafka.TopicUserEvents, Key: userID, Source: Name, Subject: userID, Payload: payload, Time: at,
	})
}

func registeredEvent(u User) (kafka.Message, error) {
	return event(u.ID, &userv1.UserRegistered{
		UserId: u.ID, Email: u.Email, Username: u.Username, DisplayName: u.DisplayName,
		NativeLanguage: u.NativeLanguage, TargetLanguage: u.TargetLanguage, Timezone: u.Timezone,
		DailyGoalXp: u.DailyGoalXP, RegisteredAt: timestamppb.New(u.CreatedAt),
	}, u.CreatedAt)
}

func profileUpdatedEvent(u User, changed []string) (kafka.Message, error) {
	return event(u.ID, &userv1.UserProfileUpdated{
		UserId: u.ID, ChangedFields: changed, DisplayName: u.DisplayName, NativeLanguage: u.NativeLanguage,
		TargetLanguage: u.TargetLanguage, Timezone: u.Timezone, DailyGoalXp: u.DailyGoalXP,
		AvatarMediaId: u.AvatarMediaID, UpdatedAt: timestamppb.New(u.UpdatedAt),
	}, u.UpdatedAt)
}

func deletedEvent(userID string, at time.Time) (kafka.Message, error) {
	return event(userID, &userv1.UserDeleted{UserId: userID, DeletedAt: timestamppb.New(at)}, at)
}
