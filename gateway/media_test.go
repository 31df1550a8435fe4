package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	mediav1 "github.com/puchi-dev/puchi/gen/go/puchi/media/v1"
)

// fakeMedia is an in-memory media service with the real one's wire behaviour:
// a size cap and type sniffing while the upload streams (ErrorInfo reasons
// MEDIA_TOO_LARGE and UNSUPPORTED_MEDIA_TYPE, nothing stored), blobs stored
// once per sha256, private items visible only with the owner's token, and
// ReadContent sending a header message then chunks of at most 64 KiB.
type fakeMedia struct {
	mediav1.UnimplementedMediaServiceServer
	max int64

	mu        sync.Mutex
	items     map[string]*mediav1.Media
	blobs     map[string][]byte
	uploads   int // Upload calls
	maxChunk  int // largest chunk received
	chunks    int // chunks received
	idemKeys  []string
	readCalls int
}

func reasonErr(c codes.Code, reason, msg string) error {
	st, _ := status.New(c, msg).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: "puchi.dev"})
	return st.Err()
}

func bearer(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("authorization"); len(v) == 1 {
		return v[0]
	}
	return ""
}

func (f *fakeMedia) Upload(stream grpc.ClientStreamingServer[mediav1.UploadRequest, mediav1.UploadResponse]) error {
	f.mu.Lock()
	f.uploads++
	if md, _ := metadata.FromIncomingContext(stream.Context()); len(md.Get("idempotency-key")) == 1 {
		f.idemKeys = append(f.idemKeys, md.Get("idempotency-key")[0])
	}
	f.mu.Unlock()
	if bearer(stream.Context()) != "Bearer good" {
		return status.Error(codes.Unauthenticated, "sign in")
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	meta := first.GetMetadata()
	if meta == nil {
		return status.Error(codes.InvalidArgument, "metadata first")
	}
	var data []byte
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		f.mu.Lock()
		f.chunks++
		f.maxChunk = max(f.maxChunk, len(m.GetChunk()))
		f.mu.Unlock()
		data = append(data, m.GetChunk()...)
		if int64(len(data)) > f.max {
			return reasonErr(codes.ResourceExhausted, "MEDIA_TOO_LARGE", "too large")
		}
		if len(data) >= 8 && !bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) {
			return reasonErr(codes.InvalidArgument, "UNSUPPORTED_MEDIA_TYPE", "unsupported media type")
		}
	}
	sum := sha256.Sum256(data)
	sha := hex.EncodeToString(sum[:])
	vis := meta.GetVisibility()
	if vis == mediav1.MediaVisibility_MEDIA_VISIBILITY_UNSPECIFIED {
		vis = mediav1.MediaVisibility_MEDIA_VISIBILITY_PRIVATE
		if meta.GetPurpose() == mediav1.MediaPurpose_MEDIA_PURPOSE_AVATAR {
			vis = mediav1.MediaVisibility_MEDIA_VISIBILITY_PUBLIC
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	id := fmt.Sprintf("0190c8a0-0000-7000-8000-%012d", len(f.items)+1)
	m := &mediav1.Media{Id: id, OwnerId: "u-1", Filename: meta.GetFilename(), Sha256: sha, ContentType: "image/png",
		SizeBytes: int64(len(data)), Purpose: meta.GetPurpose(), Visibility: vis}
	f.items[id] = m
	f.blobs[sha] = data
	return stream.SendAndClose(&mediav1.UploadResponse{Media: m})
}

func (f *fakeMedia) ReadContent(req *mediav1.ReadContentRequest, stream grpc.ServerStreamingServer[mediav1.ReadContentResponse]) error {
	f.mu.Lock()
	f.readCalls++
	m, ok := f.items[req.GetMediaId()]
	var data []byte
	if ok {
		data = f.blobs[m.GetSha256()]
	}
	f.mu.Unlock()
	if !ok || (m.GetVisibility() == mediav1.MediaVisibility_MEDIA_VISIBILITY_PRIVATE && bearer(stream.Context()) != "Bearer good") {
		return reasonErr(codes.NotFound, "MEDIA_NOT_FOUND", "media not found")
	}
	size := int64(len(data))
	if req.GetOffset() >= size {
		return reasonErr(codes.OutOfRange, "RANGE_NOT_SATISFIABLE", "offset past the end")
	}
	n := req.GetLength()
	if n == 0 || n > size-req.GetOffset() {
		n = size - req.GetOffset()
	}
	if err := stream.Send(&mediav1.ReadContentResponse{ContentType: m.GetContentType(), SizeBytes: size, Sha256: m.GetSha256(),
		Offset: req.GetOffset(), Length: n}); err != nil {
		return err
	}
	part := data[req.GetOffset() : req.GetOffset()+n]
	for len(part) > 0 {
		k := min(len(part), 64<<10)
		if err := stream.Send(&mediav1.ReadContentResponse{Data: part[:k]}); err != nil {
			return err
		}
		part = part[k:]
	}
	return nil
}

// mediaGateway serves the fake media service on a loopback port and the
// gateway in front of it over real HTTP.
func mediaGateway(t *testing.T, maxUpload int64) (*fakeMedia, *httptest.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	f := &fakeMedia{max: maxUpload, items: map[string]*mediav1.Media{}, blobs: map[string][]byte{}}
	mediav1.RegisterMediaServiceServer(srv, f)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	cfg := testConfig(dial(t, ln.Addr().String()))
	cfg.Upstreams = map[string]*grpc.ClientConn{"media": cfg.Upstreams["user"]}
	cfg.MaxUploadBytes = maxUpload
	g := newGateway(t, cfg)
	hs := httptest.NewServer(g.Handler())
	t.Cleanup(hs.Close)
	return f, hs
}

// fakePNG is size bytes starting with the PNG signature.
func fakePNG(size int) []byte {
	b := make([]byte, size)
	copy(b, "\x89PNG\r\n\x1a\n")
	for i := 8; i < size; i++ {
		b[i] = byte(i * 7)
	}
	return b
}

// multipartBody builds an upload form: metadata JSON (omitted when "") and a
// file part of n bytes read from file. It returns the body, its length and
// content type.
func multipartBody(t *testing.T, meta, filename string, file io.Reader, n int64) (io.Reader, int64, string) {
	t.Helper()
	var head bytes.Buffer
	mw := multipart.NewWriter(&head)
	if meta != "" {
		if err := mw.WriteField("metadata", meta); err != nil {
			t.Fatal(err)
		}
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename="%s"`, filename))
	h.Set("Content-Type", "image/png")
	if _, err := mw.CreatePart(h); err != nil {
		t.Fatal(err)
	}
	tail := "\r\n--" + mw.Boundary() + "--\r\n"
	return io.MultiReader(bytes.NewReader(head.Bytes()), file, strings.NewReader(tail)),
		int64(head.Len()) + n + int64(len(tail)), mw.FormDataContentType()
}

func postMedia(t *testing.T, hs *httptest.Server, body io.Reader, length int64, ct string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, hs.URL+"/v1/media", body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = length
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Authorization", "Bearer good")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatalf("POST /v1/media: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func getContent(t *testing.T, hs *httptest.Server, path string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, hs.URL+path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func reasonIn(t *testing.T, b []byte) string {
	t.Helper()
	var body ErrorBody
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("error body %q: %v", b, err)
	}
	return body.Error.Reason
}

func TestMediaUploadAndContent(t *testing.T) {
	f, hs := mediaGateway(t, DefaultMaxUploadBytes)
	// 2 MiB: over the gateway's 1 MiB body cap, which the upload route skips.
	img := fakePNG(2<<20 + 123)
	body, n, ct := multipartBody(t, `{"purpose":"MEDIA_PURPOSE_AVATAR","filename":"me.png"}`, "ignored.png", bytes.NewReader(img), int64(len(img)))
	resp, b := postMedia(t, hs, body, n, ct, map[string]string{"Idempotency-Key": "k-1"})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %d %s", resp.StatusCode, b)
	}
	var m mediav1.Media
	if err := protojson.Unmarshal(b, &m); err != nil || m.GetSizeBytes() != int64(len(img)) || m.GetFilename() != "me.png" ||
		m.GetPurpose() != mediav1.MediaPurpose_MEDIA_PURPOSE_AVATAR || !strings.Contains(string(b), `"size_bytes"`) {
		t.Fatalf("upload body %s (%v)", b, err)
	}
	if resp.Header.Get("Location") != "/v1/media/"+m.GetId() || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("headers %v", resp.Header)
	}
	if f.maxChunk != 64<<10 || f.chunks != (len(img)+(64<<10)-1)/(64<<10) || len(f.idemKeys) != 1 || f.idemKeys[0] != "k-1" {
		t.Fatalf("streamed %d chunks of at most %d bytes, keys %v", f.chunks, f.maxChunk, f.idemKeys)
	}

	// Without metadata: the file part's name, purpose OTHER (private).
	small := fakePNG(1000)
	body, n, ct = multipartBody(t, "", "notes.png", bytes.NewReader(small), int64(len(small)))
	resp, b = postMedia(t, hs, body, n, ct, nil)
	var priv mediav1.Media
	if resp.StatusCode != http.StatusCreated || protojson.Unmarshal(b, &priv) != nil || priv.GetFilename() != "notes.png" ||
		priv.GetVisibility() != mediav1.MediaVisibility_MEDIA_VISIBILITY_PRIVATE {
		t.Fatalf("upload without metadata: %d %s", resp.StatusCode, b)
	}

	// The content, byte-identical, anonymously (public), with type, length, ETag.
	path := "/v1/media/" + m.GetId() + "/content"
	resp, b = getContent(t, hs, path, nil)
	etag := `"` + m.GetSha256() + `"`
	if resp.StatusCode != http.StatusOK || !bytes.Equal(b, img) || resp.Header.Get("Content-Type") != "image/png" ||
		resp.Header.Get("Content-Length") != strconv.Itoa(len(img)) || resp.Header.Get("ETag") != etag ||
		resp.Header.Get("Accept-Ranges") != "bytes" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("content: %d %v (%d bytes)", resp.StatusCode, resp.Header, len(b))
	}
	// If-None-Match → 304 with no body.
	resp, b = getContent(t, hs, path, map[string]string{"If-None-Match": `"other", ` + etag})
	if resp.StatusCode != http.StatusNotModified || len(b) != 0 || resp.Header.Get("ETag") != etag {
		t.Fatalf("If-None-Match: %d %q", resp.StatusCode, b)
	}
	// One range → 206.
	for _, tt := range []struct {
		rng      string
		off, end int
	}{{"bytes=10-19", 10, 19}, {"bytes=-5", len(img) - 5, len(img) - 1}, {"bytes=2000000-", 2000000, len(img) - 1}, {"bytes=5-999999999", 5, len(img) - 1}} {
		resp, b = getContent(t, hs, path, map[string]string{"Range": tt.rng, "Authorization": "Bearer good"})
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(b, img[tt.off:tt.end+1]) ||
			resp.Header.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/%d", tt.off, tt.end, len(img)) ||
			resp.Header.Get("Content-Length") != strconv.Itoa(tt.end-tt.off+1) {
			t.Fatalf("Range %s: %d %v (%d bytes)", tt.rng, resp.StatusCode, resp.Header, len(b))
		}
	}
	// Unsatisfiable → 416 with the size; an If-Range for other bytes serves it all.
	resp, b = getContent(t, hs, path, map[string]string{"Range": fmt.Sprintf("bytes=%d-", len(img))})
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", len(img)) ||
		reasonIn(t, b) != "RANGE_NOT_SATISFIABLE" {
		t.Fatalf("416: %d %v %s", resp.StatusCode, resp.Header, b)
	}
	resp, b = getContent(t, hs, path, map[string]string{"Range": "bytes=0-9", "If-Range": `"stale"`})
	if resp.StatusCode != http.StatusOK || len(b) != len(img) {
		t.Fatalf("If-Range mismatch: %d (%d bytes)", resp.StatusCode, len(b))
	}

	// The private item: not found anonymously, served with the owner's token;
	// a bad token is refused early; unknown ids are 404.
	ppath := "/v1/media/" + priv.GetId() + "/content"
	if resp, b = getContent(t, hs, ppath, nil); resp.StatusCode != http.StatusNotFound || reasonIn(t, b) != "MEDIA_NOT_FOUND" {
		t.Fatalf("anonymous private: %d %s", resp.StatusCode, b)
	}
	if resp, b = getContent(t, hs, ppath, map[string]string{"Authorization": "Bearer good"}); resp.StatusCode != http.StatusOK || !bytes.Equal(b, small) {
		t.Fatalf("owner private: %d", resp.StatusCode)
	}
	if resp, _ = getContent(t, hs, ppath, map[string]string{"Authorization": "Bearer bad"}); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bad token: %d", resp.StatusCode)
	}
	// The anonymous pass-through is for content only.
	if resp, _ = getContent(t, hs, "/v1/media/"+m.GetId(), nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous GetMedia passed the early check: %d", resp.StatusCode)
	}
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestMediaUploadRefusals(t *testing.T) {
	f, hs := mediaGateway(t, DefaultMaxUploadBytes)

	// 20 MiB declared: refused before a byte reaches the service.
	big := io.MultiReader(bytes.NewReader(fakePNG(8)), io.LimitReader(zeros{}, 20<<20-8))
	body, n, ct := multipartBody(t, `{"purpose":"MEDIA_PURPOSE_AVATAR"}`, "big.png", big, 20<<20)
	resp, b := postMedia(t, hs, body, n, ct, nil)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || reasonIn(t, b) != "MEDIA_TOO_LARGE" || f.uploads != 0 {
		t.Fatalf("20 MiB: %d %s (uploads %d)", resp.StatusCode, b, f.uploads)
	}
	// 11 MiB without a declared length: refused while streaming, nothing stored.
	big = io.MultiReader(bytes.NewReader(fakePNG(8)), io.LimitReader(zeros{}, 11<<20-8))
	body, _, ct = multipartBody(t, `{"purpose":"MEDIA_PURPOSE_AVATAR"}`, "big.png", big, 11<<20)
	resp, b = postMedia(t, hs, body, -1, ct, nil)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || reasonIn(t, b) != "MEDIA_TOO_LARGE" {
		t.Fatalf("11 MiB chunked: %d %s", resp.StatusCode, b)
	}
	// A script named .png: 415 from the service's sniffing.
	script := []byte("#!/bin/sh\necho pwned\n")
	body, n, ct = multipartBody(t, `{"purpose":"MEDIA_PURPOSE_AVATAR","filename":"script.png"}`, "script.png", bytes.NewReader(script), int64(len(script)))
	resp, b = postMedia(t, hs, body, n, ct, nil)
	if resp.StatusCode != http.StatusUnsupportedMediaType || reasonIn(t, b) != "UNSUPPORTED_MEDIA_TYPE" {
		t.Fatalf("script.png: %d %s", resp.StatusCode, b)
	}
	f.mu.Lock()
	stored := len(f.items)
	f.mu.Unlock()
	if stored != 0 {
		t.Fatalf("%d items stored by refused uploads", stored)
	}

	// Not multipart, bad metadata, no file part, no token.
	resp, b = postMedia(t, hs, strings.NewReader("{}"), 2, "application/json", nil)
	if resp.StatusCode != http.StatusBadRequest || reasonIn(t, b) != "MULTIPART_REQUIRED" {
		t.Fatalf("json body: %d %s", resp.StatusCode, b)
	}
	body, n, ct = multipartBody(t, `{"purpose":`, "a.png", bytes.NewReader(fakePNG(10)), 10)
	if resp, b = postMedia(t, hs, body, n, ct, nil); resp.StatusCode != http.StatusBadRequest || reasonIn(t, b) != "METADATA_INVALID" {
		t.Fatalf("bad metadata: %d %s", resp.StatusCode, b)
	}
	var onlyMeta bytes.Buffer
	mw := multipart.NewWriter(&onlyMeta)
	_ = mw.WriteField("metadata", `{"purpose":"MEDIA_PURPOSE_OTHER"}`)
	_ = mw.Close()
	if resp, b = postMedia(t, hs, &onlyMeta, int64(onlyMeta.Len()), mw.FormDataContentType(), nil); resp.StatusCode != http.StatusBadRequest || reasonIn(t, b) != "FILE_PART_REQUIRED" {
		t.Fatalf("no file: %d %s", resp.StatusCode, b)
	}
	body, n, ct = multipartBody(t, "", "a.png", bytes.NewReader(fakePNG(10)), 10)
	if resp, _ = postMedia(t, hs, body, n, ct, map[string]string{"Authorization": ""}); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %d", resp.StatusCode)
	}
}

func TestParseRange(t *testing.T) {
	for _, tt := range []struct {
		h               string
		off, n          int64
		ok, satisfiable bool
	}{
		{"bytes=0-9", 0, 10, true, true},
		{"bytes=5-", 5, 95, true, true},
		{"bytes=-10", 90, 10, true, true},
		{"bytes=-1000", 0, 100, true, true},
		{"bytes=90-200", 90, 10, true, true},
		{"bytes=100-", 0, 0, true, false},
		{"bytes=-0", 0, 0, true, false},
		{"bytes=0-1,5-6", 0, 0, false, false},
		{"bytes=9-3", 0, 0, false, false},
		{"items=0-1", 0, 0, false, false},
		{"bytes=a-b", 0, 0, false, false},
		{"bytes=5", 0, 0, false, false},
	} {
		off, n, ok, sat := parseRange(tt.h, 100)
		if off != tt.off || n != tt.n || ok != tt.ok || sat != tt.satisfiable {
			t.Errorf("parseRange(%q) = %d %d %v %v", tt.h, off, n, ok, sat)
		}
	}
	if !etagMatches(`W/"abc"`, `"abc"`) || !etagMatches("*", `"x"`) || etagMatches(`"abd"`, `"abc"`) {
		t.Error("etagMatches")
	}
	for path, want := range map[string]bool{"/v1/media/x/content": true, "/v1/media/x": false, "/v1/media/x/y/content": false, "/v1/media//content": false} {
		if got := isMediaContent(httptest.NewRequest(http.MethodGet, path, nil)); got != want {
			t.Errorf("isMediaContent(%s) = %v", path, got)
		}
	}
}
