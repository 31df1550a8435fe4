package system_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	analyticsv1 "github.com/puchi-dev/puchi/gen/go/puchi/analytics/v1"
	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	mediav1 "github.com/puchi-dev/puchi/gen/go/puchi/media/v1"
	notificationv1 "github.com/puchi-dev/puchi/gen/go/puchi/notification/v1"
	"github.com/puchi-dev/puchi/services/content"
)

// completeLesson takes a lesson with every answer right and returns the XP awarded.
func (m *mesh) completeLesson(t *testing.T, token string, lessonID string, authored *lessonv1.LessonBundle) int32 {
	t.Helper()
	var lesson lessonv1.LessonView
	m.rest(t, 200, "GET", "/v1/lessons/"+lessonID, token, nil, nil, &lesson)
	var att lessonv1.Attempt
	m.rest(t, 200, "POST", "/v1/lessons/"+lessonID+"/attempts", token, nil, &lessonv1.StartLessonRequest{LessonId: lessonID}, &att)
	for i, view := range lesson.GetExercises() {
		m.rest(t, 200, "POST", "/v1/attempts/"+att.GetId()+"/answers", token, nil,
			&lessonv1.AnswerExerciseRequest{AttemptId: att.GetId(), ExerciseId: view.GetId(), Answer: answerFor(t, authored.GetExercises()[i])}, nil)
	}
	var done lessonv1.CompletionResult
	m.rest(t, 200, "POST", "/v1/attempts/"+att.GetId()+":complete", token, nil, &lessonv1.CompleteLessonRequest{AttemptId: att.GetId()}, &done)
	return done.GetXpAwarded()
}

// notifications lists the learner's inbox.
func (m *mesh) notifications(t *testing.T, token string) *notificationv1.ListNotificationsResponse {
	t.Helper()
	var list notificationv1.ListNotificationsResponse
	m.rest(t, 200, "GET", "/v1/notifications", token, nil, nil, &list)
	return &list
}

func countType(list *notificationv1.ListNotificationsResponse, typ notificationv1.NotificationType) int {
	n := 0
	for _, x := range list.GetNotifications() {
		if x.GetType() == typ {
			n++
		}
	}
	return n
}

// TestNotificationsAnalyticsAndMedia drives the support services through REST:
// notifications created by the learning flow (exactly once, live on an open
// stream), the learner's analytics and the admin overview, client events, and an
// avatar upload served back byte for byte.
func TestNotificationsAnalyticsAndMedia(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: boots the mesh")
	}
	demo, err := content.Demo()
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	m := boot(t, dataDir, "")
	waitFor(t, "the demo course", m.sys.DemoLoaded)
	tok, _ := m.signUp(t, "hoa@example.com", "hoa_pham", "Hoa Pham")
	otherTok, _ := m.signUp(t, "khanh@example.com", "khanh", "Khanh")
	adminTok, _ := m.signUp(t, "admin@example.com", "the_admin", "Admin")

	// The analytics service's admin port answers /health.
	for _, inst := range m.sys.Instances {
		if inst.Spec.Name == "analytics" {
			resp, err := http.Get("http://" + inst.AdminAddr() + "/health")
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("analytics /health: %v %v", resp, err)
			}
			resp.Body.Close()
		}
	}

	var courses lessonv1.ListCoursesResponse
	m.rest(t, 200, "GET", "/v1/courses", tok, nil, nil, &courses)
	var outline lessonv1.GetCourseResponse
	m.rest(t, 200, "GET", "/v1/courses/"+courses.GetCourses()[0].GetCourse().GetId(), tok, nil, nil, &outline)
	unit := outline.GetUnits()[0]

	// First lesson: the first_lesson achievement arrives in the inbox, once.
	m.completeLesson(t, tok, unit.GetLessons()[0].GetId(), demo.Course.GetUnits()[0].GetLessons()[0])
	waitFor(t, "the achievement notification", func() bool {
		return countType(m.notifications(t, tok), notificationv1.NotificationType_NOTIFICATION_TYPE_ACHIEVEMENT_UNLOCKED) >= 1
	})

	// Open the live stream, then reach the daily goal with the second lesson: the
	// notification arrives on the stream.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", m.base+"/v1/notifications:stream", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream: %v %v", resp, err)
	}
	defer resp.Body.Close()
	live := make(chan notificationv1.NotificationType, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var frame struct {
				Result json.RawMessage `json:"result"`
			}
			if json.Unmarshal(sc.Bytes(), &frame) != nil || frame.Result == nil {
				continue
			}
			var msg notificationv1.StreamNotificationsResponse
			if protojson.Unmarshal(frame.Result, &msg) == nil && msg.GetNotification() != nil {
				live <- msg.GetNotification().GetType()
			}
		}
	}()
	m.completeLesson(t, tok, unit.GetLessons()[1].GetId(), demo.Course.GetUnits()[0].GetLessons()[1])
	deadline := time.After(60 * time.Second)
	for got := false; !got; {
		select {
		case typ := <-live:
			got = typ == notificationv1.NotificationType_NOTIFICATION_TYPE_DAILY_GOAL_REACHED
		case <-deadline:
			t.Fatal("no daily-goal notification on the live stream")
		}
	}
	list := m.notifications(t, tok)
	if n := countType(list, notificationv1.NotificationType_NOTIFICATION_TYPE_DAILY_GOAL_REACHED); n != 1 {
		t.Fatalf("%d daily-goal notifications, want exactly 1", n)
	}
	if list.GetUnreadCount() < 2 {
		t.Fatalf("unread count %d", list.GetUnreadCount())
	}
	m.rest(t, 200, "POST", "/v1/notifications:readAll", tok, nil, &notificationv1.MarkAllReadRequest{}, nil)
	if got := m.notifications(t, tok).GetUnreadCount(); got != 0 {
		t.Fatalf("unread after read-all: %d", got)
	}

	// Analytics: the learner's own summary follows the events; admins see the
	// overview, learners do not.
	waitFor(t, "analytics to count two lessons", func() bool {
		var s analyticsv1.LearnerSummary
		m.rest(t, 200, "GET", "/v1/analytics/me", tok, nil, nil, &s)
		return s.GetLessonsCompleted() == 2
	})
	m.rest(t, 403, "GET", "/v1/analytics/overview", tok, nil, nil, nil)
	var ov analyticsv1.Overview
	m.rest(t, 200, "GET", "/v1/analytics/overview", adminTok, nil, nil, &ov)
	batch := &analyticsv1.IngestEventsRequest{Events: []*analyticsv1.ClientEvent{
		{Name: "screen.view", OccurredAt: timestamppb.Now(), Properties: map[string]string{"screen": "home"}},
	}}
	var ing analyticsv1.IngestEventsResponse
	m.rest(t, 200, "POST", "/v1/analytics/events", tok, nil, batch, &ing)
	if ing.GetAccepted() != 1 {
		t.Fatalf("ingest: %v", &ing)
	}
	bad := m.rest(t, 400, "POST", "/v1/analytics/events", tok, nil, &analyticsv1.IngestEventsRequest{Events: []*analyticsv1.ClientEvent{
		{Name: "Bad Name!", OccurredAt: timestamppb.Now()},
	}}, nil)
	if !strings.Contains(bad, "events[0].name") {
		t.Errorf("malformed batch: %s", bad)
	}

	// Media: an avatar is stored once and served back byte for byte; oversized
	// and disguised files are refused.
	var img bytes.Buffer
	pic := image.NewRGBA(image.Rect(0, 0, 40, 30))
	pic.Set(3, 4, color.RGBA{200, 10, 10, 255})
	if err := png.Encode(&img, pic); err != nil {
		t.Fatal(err)
	}
	first := m.upload(t, tok, "avatar.png", img.Bytes(), 201)
	second := m.upload(t, tok, "again.png", img.Bytes(), 201)
	if first.GetSha256() != second.GetSha256() || first.GetContentType() != "image/png" || first.GetWidth() != 40 {
		t.Fatalf("uploads: %v / %v", first, second)
	}
	creq, _ := http.NewRequest("GET", m.base+"/v1/media/"+first.GetId()+"/content", nil)
	creq.Header.Set("Authorization", "Bearer "+tok)
	cresp, err := http.DefaultClient.Do(creq)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(cresp.Body)
	cresp.Body.Close()
	if cresp.StatusCode != 200 || !bytes.Equal(body, img.Bytes()) || cresp.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("content: %d %q (%d bytes)", cresp.StatusCode, cresp.Header.Get("Content-Type"), len(body))
	}
	m.upload(t, tok, "script.png", []byte("#!/bin/sh\necho pwned\n"), 415)
	m.upload(t, tok, "huge.png", bytes.Repeat([]byte{0x89}, 20<<20), 413)
	var mine mediav1.ListMyMediaResponse
	m.rest(t, 200, "GET", "/v1/media", tok, nil, nil, &mine)
	if len(mine.GetMedia()) != 2 {
		t.Fatalf("refused uploads were stored: %d items", len(mine.GetMedia()))
	}
	// A private file is invisible to another learner; unknown ids are 404.
	private := m.uploadAs(t, tok, "notes.png", img.Bytes(), "MEDIA_PURPOSE_OTHER", 201)
	m.rest(t, 200, "GET", "/v1/media/"+private.GetId(), tok, nil, nil, nil)
	m.rest(t, 404, "GET", "/v1/media/"+private.GetId(), otherTok, nil, nil, nil)
	m.rest(t, 200, "GET", "/v1/media/"+first.GetId(), otherTok, nil, nil, nil) // avatars are public
	m.rest(t, 404, "GET", "/v1/media/01a229d6-0000-7000-8000-000000000000", tok, nil, nil, nil)

	// A restart replays nothing twice: the same notifications, once each.
	before := m.notifications(t, tok)
	m.stop()
	m2 := boot(t, dataDir, "")
	after := m2.notifications(t, tok)
	if len(after.GetNotifications()) != len(before.GetNotifications()) ||
		countType(after, notificationv1.NotificationType_NOTIFICATION_TYPE_DAILY_GOAL_REACHED) != 1 {
		t.Fatalf("after restart %d notifications, before %d", len(after.GetNotifications()), len(before.GetNotifications()))
	}
}

// upload posts a multipart avatar upload and decodes the created item.
func (m *mesh) upload(t *testing.T, token, name string, data []byte, want int) *mediav1.Media {
	t.Helper()
	return m.uploadAs(t, token, name, data, "MEDIA_PURPOSE_AVATAR", want)
}

func (m *mesh) uploadAs(t *testing.T, token, name string, data []byte, purpose string, want int) *mediav1.Media {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	meta, _ := w.CreateFormField("metadata")
	meta.Write([]byte(`{"purpose":"` + purpose + `"}`))
	part, _ := w.CreateFormFile("file", name)
	part.Write(data)
	w.Close()
	req, _ := http.NewRequest("POST", m.base+"/v1/media", &buf)
	req.Header.Set("Content-Type", w.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("upload %s: %d, want %d: %s", name, resp.StatusCode, want, raw)
	}
	var item mediav1.Media
	if want == 201 {
		if err := protojson.Unmarshal(raw, &item); err != nil {
			t.Fatalf("decode %s: %v", raw, err)
		}
	}
	return &item
}
