package system_test

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/puchi-dev/puchi/internal/system"
	"github.com/puchi-dev/puchi/platform/config"
	"github.com/puchi-dev/puchi/platform/service"
)

// s3Env selects the S3 media store at endpoint (host:port), with the default
// bucket and region.
func s3Env(endpoint string) map[string]string {
	return map[string]string{
		"PUCHI_MEDIA_STORE": "s3", "PUCHI_MEDIA_S3_ENDPOINT": endpoint,
		"PUCHI_MEDIA_S3_ACCESS_KEY": "puchi", "PUCHI_MEDIA_S3_SECRET_KEY": "puchi-secret-key",
	}
}

// bucketObjects lists a bucket of the fake server, read from its backend.
func bucketObjects(t *testing.T, backend *s3mem.Backend, bucket string) map[string]int64 {
	t.Helper()
	list, err := backend.ListBucket(bucket, nil, gofakes3.ListBucketPage{})
	if err != nil {
		t.Fatalf("list bucket %s: %v", bucket, err)
	}
	out := map[string]int64{}
	for _, c := range list.Contents {
		out[c.Key] = c.Size
	}
	return out
}

// TestMediaS3Store boots the whole system with PUCHI_MEDIA_STORE=s3 against an
// in-process S3 server (gofakes3 over real HTTP) and drives media through
// REST: the bytes land in the bucket, none under the data directory, and come
// back identical, whole and by range; deleting the items empties the bucket.
func TestMediaS3Store(t *testing.T) {
	backend := s3mem.New()
	srv := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(srv.Close)
	dataDir := t.TempDir()
	m := boot(t, dataDir, "", s3Env(strings.TrimPrefix(srv.URL, "http://")))

	const bucket = "puchi-media" // PUCHI_MEDIA_S3_BUCKET's default
	if ok, err := backend.BucketExists(bucket); !ok || err != nil {
		t.Fatalf("bucket %s not created at start: %v", bucket, err)
	}
	tok, _ := m.signUp(t, "s3@example.com", "s3learner", "Mai")

	var img bytes.Buffer
	pic := image.NewRGBA(image.Rect(0, 0, 320, 200))
	for x := range 320 {
		pic.Set(x, x%200, color.RGBA{uint8(x), 80, 160, 255})
	}
	if err := png.Encode(&img, pic); err != nil {
		t.Fatal(err)
	}
	item := m.upload(t, tok, "avatar.png", img.Bytes(), 201)
	if item.GetContentType() != "image/png" || item.GetSizeBytes() != int64(img.Len()) || !item.GetHasThumbnail() {
		t.Fatalf("uploaded %v", item)
	}

	// In the bucket: the content under its sha256, and its thumbnail.
	objs := bucketObjects(t, backend, bucket)
	if len(objs) != 2 || objs[item.GetSha256()] != int64(img.Len()) {
		t.Fatalf("bucket holds %v, want the content %s (%d bytes) and its thumbnail", objs, item.GetSha256(), img.Len())
	}
	obj, err := backend.GetObject(bucket, item.GetSha256(), nil)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := io.ReadAll(obj.Contents)
	_ = obj.Contents.Close()
	if !bytes.Equal(stored, img.Bytes()) {
		t.Fatal("the object in the bucket differs from the upload")
	}
	// Nothing under the local store's directory (nor anywhere in the data dir
	// by the blob's name).
	err = filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dataDir, p)
		if !d.IsDir() && (strings.HasPrefix(rel, "media"+string(filepath.Separator)) || strings.Contains(d.Name(), item.GetSha256())) {
			t.Errorf("local media file with the S3 store: %s", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Read back through REST: whole, then a range.
	get := func(headers map[string]string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", m.base+"/v1/media/"+item.GetId()+"/content", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}
	resp, body := get(nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, img.Bytes()) || resp.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("content: %d %q, %d bytes (want %d)", resp.StatusCode, resp.Header.Get("Content-Type"), len(body), img.Len())
	}
	resp, body = get(map[string]string{"Range": "bytes=100-163"})
	if resp.StatusCode != 206 || !bytes.Equal(body, img.Bytes()[100:164]) {
		t.Fatalf("range: %d %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Range"), len(body))
	}
	resp, body = get(map[string]string{"Range": "bytes=-10"})
	if resp.StatusCode != 206 || !bytes.Equal(body, img.Bytes()[img.Len()-10:]) {
		t.Fatalf("suffix range: %d %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Range"), len(body))
	}

	// A second item with the same bytes shares the objects; deleting both
	// removes them.
	again := m.uploadAs(t, tok, "copy.png", img.Bytes(), "MEDIA_PURPOSE_OTHER", 201)
	if n := len(bucketObjects(t, backend, bucket)); n != 2 {
		t.Fatalf("%d objects after a duplicate upload, want 2", n)
	}
	m.rest(t, 200, "DELETE", "/v1/media/"+item.GetId(), tok, nil, nil, nil)
	if _, ok := bucketObjects(t, backend, bucket)[item.GetSha256()]; !ok {
		t.Fatal("a blob still in use was deleted")
	}
	m.rest(t, 200, "DELETE", "/v1/media/"+again.GetId(), tok, nil, nil, nil)
	waitFor(t, "the bucket to be emptied", func() bool { return len(bucketObjects(t, backend, bucket)) == 0 })
}

// TestMediaS3StoreConfigErrors: a bad S3 configuration fails config loading
// naming the variables, and an unreachable server fails the start.
func TestMediaS3StoreConfigErrors(t *testing.T) {
	base := map[string]string{"PUCHI_DATA_DIR": t.TempDir(), "PUCHI_BROKER_ADDR": "127.0.0.1:0"}
	load := func(extra map[string]string) (*system.Config, error) {
		env := maps.Clone(base)
		maps.Copy(env, extra)
		cfg := &system.Config{}
		return cfg, config.Load(cfg, config.MapLookup(env))
	}
	if cfg, err := load(nil); err != nil || cfg.MediaStore != "local" || cfg.MediaS3Bucket != "puchi-media" ||
		cfg.MediaS3Region != "us-east-1" || cfg.MediaS3TLS || cfg.MediaS3().Prefix != "" {
		t.Fatalf("defaults: %+v %v", cfg, err)
	}
	if cfg, err := load(map[string]string{"PUCHI_MEDIA_S3_PREFIX": "puchi/media"}); err != nil || cfg.MediaS3().Prefix != "puchi/media" {
		t.Fatalf("PUCHI_MEDIA_S3_PREFIX: %+v %v", cfg, err)
	}
	_, err := load(map[string]string{"PUCHI_MEDIA_STORE": "gcs"})
	if err == nil || !strings.Contains(err.Error(), `PUCHI_MEDIA_STORE: "gcs" is not local or s3`) {
		t.Fatalf("unknown store: %v", err)
	}
	_, err = load(map[string]string{"PUCHI_MEDIA_STORE": "s3"})
	for _, v := range []string{"PUCHI_MEDIA_S3_ENDPOINT", "PUCHI_MEDIA_S3_ACCESS_KEY", "PUCHI_MEDIA_S3_SECRET_KEY"} {
		if err == nil || !strings.Contains(err.Error(), v) {
			t.Fatalf("s3 without settings: %v, want it to name %s", err, v)
		}
	}
	_, err = load(map[string]string{"PUCHI_MEDIA_STORE": "s3", "PUCHI_MEDIA_S3_ENDPOINT": "http://minio:9000",
		"PUCHI_MEDIA_S3_ACCESS_KEY": "k", "PUCHI_MEDIA_S3_SECRET_KEY": "s"})
	if err == nil || !strings.Contains(err.Error(), "PUCHI_MEDIA_S3_ENDPOINT") || !strings.Contains(err.Error(), "host:port") {
		t.Fatalf("endpoint with a scheme: %v", err)
	}

	// A valid configuration whose server is down: the media service does not
	// start, and says where it looked.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	cfg, err := load(s3Env(addr))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(slogString(cfg), "puchi-secret-key") {
		t.Fatal("the S3 secret key shows up in the logged configuration")
	}
	sys, err := system.Build(context.Background(), cfg, system.Options{
		Embedded: true, Services: []string{"media"},
		Addrs:  map[string]service.Addrs{"media": {GRPC: "127.0.0.1:0", Admin: "127.0.0.1:0"}},
		Lookup: config.MapLookup(nil), Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err == nil {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = sys.Run(ctx) // starts and stops at once
		t.Fatal("the system started with an unreachable S3 server")
	}
	if want := "media: S3 store at http://" + addr + ": "; !strings.Contains(err.Error(), want) {
		t.Fatalf("start with the S3 server down: %v, want %q", err, want)
	}
	t.Log(err)
}

// slogString is cfg as a JSON log line would show it.
func slogString(cfg *system.Config) string {
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "cfg", cfg, "secret", cfg.MediaS3SecretKey, "s3", cfg.MediaS3())
	return buf.String()
}
