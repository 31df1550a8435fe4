package distributed_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	progressv1 "github.com/puchi-dev/puchi/gen/go/puchi/progress/v1"
	vocabularyv1 "github.com/puchi-dev/puchi/gen/go/puchi/vocabulary/v1"
	"github.com/puchi-dev/puchi/internal/system"
	"github.com/puchi-dev/puchi/platform/auth"
	"github.com/puchi-dev/puchi/services/content"
)

// catchUp bounds how long a restarted service may take to rejoin its consumer
// group and process what it missed. Rejoining after SIGKILL can wait for the
// dead member's session to expire (librdkafka's default session timeout is
// 45 s); on a loaded machine it has taken up to two minutes.
const catchUp = 3 * time.Minute

// TestDistributedTopology runs Puchi as separate processes — `puchi broker`,
// one `puchi serve <svc>` per service on PostgreSQL, `puchi gateway` — seeds
// the demo course with `puchi content import`, and drives the learning flow
// through REST. Progress and then vocabulary are killed with SIGKILL while a
// lesson is completed, and started again: their consumer groups catch up, and
// XP and the deck reflect every lesson exactly once.
func TestDistributedTopology(t *testing.T) {
	if testing.Short() {
		t.Skip("distributed topology: builds the binary and starts a process per service")
	}
	pgURL := os.Getenv("PUCHI_TEST_POSTGRES_URL")
	if pgURL == "" {
		t.Skip("PUCHI_TEST_POSTGRES_URL is not set: the distributed topology runs every service on PostgreSQL " +
			"(CI sets it; e.g. PUCHI_TEST_POSTGRES_URL='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable')")
	}
	began := time.Now()
	dbURL := freshDatabase(t, pgURL)
	root := repoRoot(t)
	tmp := t.TempDir()
	bin := buildPuchi(t, root, tmp)
	t.Logf("built puchi in %s", time.Since(began).Round(time.Millisecond))

	// Every service that exists, from the composition root (what `puchi help`
	// lists under "Services").
	services := system.ServiceNames(&system.Config{})

	// One signing key for everyone, created before any process starts so that
	// no two processes race to create it.
	keyFile := filepath.Join(tmp, "keys", "jwt-ed25519.pem")
	if _, err := auth.LoadOrCreateKey(keyFile); err != nil {
		t.Fatal(err)
	}

	brokerAddr, gatewayAddr := freePort(t), freePort(t)
	grpcAddr, adminAddr := map[string]string{}, map[string]string{}
	for _, s := range services {
		grpcAddr[s], adminAddr[s] = freePort(t), freePort(t)
	}
	common := append(baseEnv(),
		"KAFKA_BROKERS="+brokerAddr,
		"PUCHI_DATABASE_URL="+dbURL,
		"PUCHI_JWT_KEY_FILE="+keyFile,
		"PUCHI_DEMO_CONTENT=false", // seeded below, through `puchi content import`
		"PUCHI_LOG_FORMAT=text",
		// Mutual TLS between the processes, as in production: one dev CA in a
		// folder they all share (it is created safely by whoever comes first).
		"PUCHI_TLS=on",
		"PUCHI_TLS_DIR="+filepath.Join(tmp, "tls"),
	)
	for _, s := range services {
		common = append(common, envName(s, "ADDR")+"="+grpcAddr[s])
	}
	dataDir := func(name string) string { return "PUCHI_DATA_DIR=" + filepath.Join(tmp, "data", name) }

	c := newCluster(t, bin)
	cl := &client{c: c, base: "http://" + gatewayAddr, http: &http.Client{Timeout: 30 * time.Second}}

	// The broker, then every service (in parallel), then the gateway.
	c.start("broker", append(baseEnv(), "PUCHI_BROKER_ADDR="+brokerAddr, "PUCHI_LOG_FORMAT=text", dataDir("broker")), "broker")
	c.waitFor("the broker on "+brokerAddr, time.Minute, func() bool { return tcpOpen(brokerAddr) })
	procs := map[string]*proc{}
	for _, s := range services {
		env := append(append([]string{}, common...), dataDir(s),
			envName(s, "GRPC_ADDR")+"="+grpcAddr[s], envName(s, "ADMIN_ADDR")+"="+adminAddr[s])
		procs[s] = c.start(s, env, "serve", s)
	}
	for _, s := range services {
		took := c.waitFor(s+" ready", time.Minute, func() bool { return httpOK("http://" + adminAddr[s] + "/ready") })
		t.Logf("%s ready after another %s", s, took.Round(time.Millisecond))
	}
	c.start("gateway", append(append([]string{}, common...), dataDir("gateway"), "PUCHI_GATEWAY_ADDR="+gatewayAddr,
		"PUCHI_GATEWAY_RATE_LIMIT=0", "PUCHI_GATEWAY_AUTH_RATE_LIMIT=0"), "gateway")
	allServing := func() bool {
		code, raw, err := cl.do("GET", "/health", "", nil, nil)
		if err != nil || code != 200 {
			return false
		}
		var h struct {
			Services map[string]string `json:"services"`
		}
		if json.Unmarshal(raw, &h) != nil {
			return false
		}
		for _, s := range services {
			if h.Services[s] != "SERVING" {
				return false
			}
		}
		return true
	}
	c.waitFor("the gateway's /health to report every service SERVING", time.Minute, allServing)
	t.Logf("topology up (broker, %d services, gateway) after %s", len(services), time.Since(began).Round(time.Millisecond))

	// The demo course, imported through the lesson and quiz processes.
	importCtx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	imp := exec.CommandContext(importCtx, bin, "content", "import", filepath.Join(root, "services", "content", "demo.yaml"))
	imp.Env = common
	if out, err := imp.CombinedOutput(); err != nil {
		t.Fatalf("puchi content import: %v\n%s", err, out)
	} else if !strings.Contains(string(out), "created") {
		t.Fatalf("puchi content import did not create the course:\n%s", out)
	}

	demo, err := content.Demo()
	if err != nil {
		t.Fatal(err)
	}
	authored := demo.Course.GetUnits()[0].GetLessons()
	if len(authored) < 3 {
		t.Fatalf("the demo's first unit has %d lessons, the test needs 3", len(authored))
	}

	// A learner, the catalogue and the first unit's outline.
	var reg struct {
		Tokens struct {
			AccessToken string `json:"access_token"`
		} `json:"tokens"`
	}
	body, _ := json.Marshal(map[string]string{
		"email": "lan@example.com", "password": "correct horse battery", "display_name": "Lan", "username": "lan",
		"native_language": "vi", "target_language": "en", "timezone": "Asia/Ho_Chi_Minh",
	})
	code, raw, err := cl.do("POST", "/v1/auth/register", "", nil, body)
	if err != nil || code != 200 || json.Unmarshal(raw, &reg) != nil || reg.Tokens.AccessToken == "" {
		t.Fatalf("register: %d %v %s", code, err, raw)
	}
	tok := reg.Tokens.AccessToken

	var courses lessonv1.ListCoursesResponse
	cl.rest(200, "GET", "/v1/courses", tok, nil, nil, &courses)
	if len(courses.GetCourses()) != 1 {
		t.Fatalf("courses after the import: %v", &courses)
	}
	courseID := courses.GetCourses()[0].GetCourse().GetId()
	outline := func() []*lessonv1.LessonSummary {
		var o lessonv1.GetCourseResponse
		cl.rest(200, "GET", "/v1/courses/"+courseID, tok, nil, nil, &o)
		if len(o.GetUnits()) == 0 || len(o.GetUnits()[0].GetLessons()) < 3 {
			t.Fatalf("course outline: %v", &o)
		}
		return o.GetUnits()[0].GetLessons()
	}

	// complete takes lesson i of the first unit (it must be available): start,
	// answer every exercise right, complete; it returns the XP awarded.
	complete := func(i int) int64 {
		t.Helper()
		l := outline()[i]
		if l.GetTitle() != authored[i].GetTitle() || l.GetStatus() != lessonv1.LessonStatus_LESSON_STATUS_AVAILABLE {
			t.Fatalf("lesson %d: %q %v, want %q available", i, l.GetTitle(), l.GetStatus(), authored[i].GetTitle())
		}
		var view lessonv1.LessonView
		cl.rest(200, "GET", "/v1/lessons/"+l.GetId(), tok, nil, nil, &view)
		var att lessonv1.Attempt
		cl.rest(200, "POST", "/v1/lessons/"+l.GetId()+"/attempts", tok, map[string]string{"Idempotency-Key": "start-" + l.GetId()},
			&lessonv1.StartLessonRequest{LessonId: l.GetId()}, &att)
		for j, ex := range view.GetExercises() {
			var res lessonv1.AnswerResult
			cl.rest(200, "POST", "/v1/attempts/"+att.GetId()+"/answers", tok, nil, &lessonv1.AnswerExerciseRequest{
				AttemptId: att.GetId(), ExerciseId: ex.GetId(), Answer: answerFor(t, authored[i].GetExercises()[j]),
			}, &res)
			if !res.GetCorrect() {
				t.Fatalf("lesson %d exercise %d graded wrong: %v", i, j, &res)
			}
		}
		var done lessonv1.CompletionResult
		cl.rest(200, "POST", "/v1/attempts/"+att.GetId()+":complete", tok, nil, &lessonv1.CompleteLessonRequest{AttemptId: att.GetId()}, &done)
		if done.GetXpAwarded() != authored[i].GetXpReward() || done.GetAlreadyCompleted() {
			t.Fatalf("lesson %d completion: %v (reward %d)", i, &done, authored[i].GetXpReward())
		}
		return int64(done.GetXpAwarded())
	}

	// waitProgress waits until progress reports exactly xp from exactly n lessons.
	// Events of one learner share a partition, so by the time the last lesson's
	// XP shows, any redelivery of an earlier event has been handled already: a
	// duplicate would show as XP above the sum.
	waitProgress := func(what string, xp int64, n int32) {
		t.Helper()
		var p progressv1.Progress
		took := c.waitFor(what, catchUp, func() bool {
			return cl.get("/v1/progress/me", tok, &p) && p.GetTotalXp() >= xp && p.GetLessonsCompleted() >= n
		})
		if p.GetTotalXp() != xp || p.GetLessonsCompleted() != n {
			t.Fatalf("%s: progress %v, want total_xp %d from %d lessons", what, &p, xp, n)
		}
		t.Logf("%s after %s", what, took.Round(time.Millisecond))
	}
	// waitDeck waits until the deck holds exactly the words of lessons 0..last.
	waitDeck := func(what string, last int) {
		t.Helper()
		terms := map[string]bool{}
		for _, l := range authored[:last+1] {
			for _, w := range l.GetWords() {
				terms[strings.ToLower(strings.TrimSpace(w.GetTerm()))] = true
			}
		}
		var st vocabularyv1.DeckStats
		took := c.waitFor(what, catchUp, func() bool {
			return cl.get("/v1/vocabulary/stats", tok, &st) && int(st.GetTotalCards()) >= len(terms)
		})
		if int(st.GetTotalCards()) != len(terms) {
			t.Fatalf("%s: deck %v, want %d cards", what, &st, len(terms))
		}
		t.Logf("%s after %s", what, took.Round(time.Millisecond))
	}

	// 1. Everything up: the first lesson moves XP and fills the review queue.
	xp := complete(0)
	waitProgress("XP for lesson 1", xp, 1)
	waitDeck("lesson 1's words in the deck", 0)
	var due vocabularyv1.GetDueQueueResponse
	cl.rest(200, "GET", "/v1/vocabulary/due", tok, nil, nil, &due)
	if len(due.GetCards()) == 0 {
		t.Fatal("the review queue is empty after the first lesson")
	}

	// 2. Progress crashes; lesson 2 (unlocked by lesson 1) is completed while it
	// is down; progress starts again and its consumer group catches up.
	c.kill9(procs["progress"])
	xp += complete(1)
	if code, _, err := cl.do("GET", "/v1/progress/me", tok, nil, nil); err == nil && code == 200 {
		t.Fatal("progress answered while its process was killed")
	}
	c.restart(procs["progress"])
	waitProgress("progress to catch up with lesson 2 after SIGKILL", xp, 2)
	waitDeck("lesson 2's words in the deck", 1)

	// 3. The same with vocabulary and lesson 3.
	c.kill9(procs["vocabulary"])
	xp += complete(2)
	c.restart(procs["vocabulary"])
	waitDeck("vocabulary to catch up with lesson 3 after SIGKILL", 2)
	waitProgress("XP for lesson 3", xp, 3)
	c.waitFor("every service SERVING again", time.Minute, allServing)

	t.Logf("distributed topology test took %s", time.Since(began).Round(time.Millisecond))
}

// envName is PUCHI_<SERVICE>_<SUFFIX>, e.g. PUCHI_USER_GRPC_ADDR.
func envName(service, suffix string) string {
	return "PUCHI_" + strings.ToUpper(service) + "_" + suffix
}

// answerFor builds the right answer to an authored exercise.
func answerFor(t *testing.T, ex *lessonv1.Exercise) *lessonv1.Answer {
	t.Helper()
	switch k := ex.GetKind().(type) {
	case *lessonv1.Exercise_MultipleChoice:
		return &lessonv1.Answer{Value: &lessonv1.Answer_ChoiceIndex{ChoiceIndex: k.MultipleChoice.GetCorrectIndex()}}
	case *lessonv1.Exercise_Translate:
		return &lessonv1.Answer{Value: &lessonv1.Answer_Text{Text: k.Translate.GetAcceptedAnswers()[0]}}
	case *lessonv1.Exercise_FillBlank:
		return &lessonv1.Answer{Value: &lessonv1.Answer_Text{Text: k.FillBlank.GetAcceptedAnswers()[0]}}
	case *lessonv1.Exercise_Listen:
		return &lessonv1.Answer{Value: &lessonv1.Answer_Text{Text: k.Listen.GetAcceptedAnswers()[0]}}
	case *lessonv1.Exercise_MatchPairs:
		return &lessonv1.Answer{Value: &lessonv1.Answer_Pairs{Pairs: &lessonv1.MatchPairsAnswer{Pairs: k.MatchPairs.GetPairs()}}}
	}
	t.Fatalf("exercise %v has no kind", ex)
	return nil
}
