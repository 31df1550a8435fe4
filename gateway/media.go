package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	mediav1 "github.com/puchi-dev/puchi/gen/go/puchi/media/v1"
)

// The media service's two custom REST routes (see proto/puchi/media/v1):
//
//   - POST /v1/media: a multipart/form-data upload (an optional `metadata` part,
//     JSON of UploadMetadata, then the `file` part) streamed chunk by chunk to
//     the client-streaming Upload RPC, never buffered whole. The body is capped
//     here (the gateway's global body cap skips this route) at the upload cap
//     plus room for the multipart framing; a declared larger body is refused at
//     once with 413. Answers 201 with the Media, 413 for MEDIA_TOO_LARGE and 415
//     for UNSUPPORTED_MEDIA_TYPE.
//   - GET /v1/media/{media_id}/content[?thumbnail=true]: streams ReadContent
//     with Content-Type, Content-Length, ETag (the quoted sha256), 304 for a
//     matching If-None-Match, and one byte range (206 with Content-Range, 416
//     when unsatisfiable). Without an Authorization header it passes the early
//     token check: the service serves public items to anyone.

// DefaultMaxUploadBytes is the upload cap when Config.MaxUploadBytes is 0.
const DefaultMaxUploadBytes = 10 << 20

// uploadChunk is the size of the chunks sent to Upload (its maximum).
const uploadChunk = 64 << 10

// multipartSlack is what the multipart framing and the metadata part may add to
// the file's size in a request body.
const multipartSlack = 64 << 10

// metadataPartMax caps the `metadata` part.
const metadataPartMax = 16 << 10

type mediaRoutes struct {
	client   mediav1.MediaServiceClient
	maxBytes int64
}

// mountMedia adds the media routes to mux.
func mountMedia(mux *http.ServeMux, conn *grpc.ClientConn, maxBytes int64) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxUploadBytes
	}
	m := &mediaRoutes{client: mediav1.NewMediaServiceClient(conn), maxBytes: maxBytes}
	mux.HandleFunc("POST /v1/media", m.upload)
	mux.HandleFunc("GET /v1/media/{media_id}/content", m.content)
}

// isMediaUpload reports whether r is the media upload, which caps its own body.
func isMediaUpload(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.TrimSuffix(r.URL.Path, "/") == "/v1/media"
}

// isMediaContent reports whether r reads media content.
func isMediaContent(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/v1/media/")
	id, ok2 := strings.CutSuffix(rest, "/content")
	return ok && ok2 && id != "" && !strings.Contains(id, "/")
}

// limitBodyExceptMediaUpload is [limitBody] for every request but the media
// upload when media is mounted.
func limitBodyExceptMediaUpload(n int64, media bool, next http.Handler) http.Handler {
	limited := limitBody(n, next)
	if !media {
		return limited
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isMediaUpload(r) {
			next.ServeHTTP(w, r)
			return
		}
		limited.ServeHTTP(w, r)
	})
}

// anonymousMediaContent sends a media content read without an Authorization
// header straight to open (the service decides: public items are readable by
// anyone), and everything else to checked.
func anonymousMediaContent(open, checked http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isMediaContent(r) && r.Header.Get("Authorization") == "" {
			open.ServeHTTP(w, r)
			return
		}
		checked.ServeHTTP(w, r)
	})
}

// outgoing forwards the caller's token and idempotency key as gRPC metadata.
func outgoing(r *http.Request) context.Context {
	var kv []string
	if a := r.Header.Get("Authorization"); a != "" {
		kv = append(kv, "authorization", a)
	}
	if k := r.Header.Get("Idempotency-Key"); k != "" {
		kv = append(kv, "idempotency-key", k)
	}
	return metadata.AppendToOutgoingContext(r.Context(), kv...)
}

func (m *mediaRoutes) tooLarge(w http.ResponseWriter) {
	writeError(w, http.StatusRequestEntityTooLarge, "RESOURCE_EXHAUSTED", "MEDIA_TOO_LARGE",
		fmt.Sprintf("the file is larger than the %d-byte limit", m.maxBytes), nil, 0)
}

// writeMediaError answers with the error body of a gRPC error: as the other
// routes, except 413 for MEDIA_TOO_LARGE and 415 for UNSUPPORTED_MEDIA_TYPE.
func writeMediaError(w http.ResponseWriter, r *http.Request, err error) {
	st := status.Convert(err)
	_, d := errorFromStatus(st)
	var code int
	switch {
	case d.Reason == "MEDIA_TOO_LARGE":
		code = http.StatusRequestEntityTooLarge
	case d.Reason == "UNSUPPORTED_MEDIA_TYPE":
		code = http.StatusUnsupportedMediaType
	case st.Code() == codes.OutOfRange:
		code = http.StatusRequestedRangeNotSatisfiable
	default:
		grpcErrorHandler(r.Context(), nil, nil, w, r, err)
		return
	}
	writeError(w, code, d.Status, d.Reason, d.Message, d.Fields, 0)
}

func (m *mediaRoutes) upload(w http.ResponseWriter, r *http.Request) {
	limit := m.maxBytes + multipartSlack
	if r.ContentLength > limit {
		m.tooLarge(w)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	mr, err := r.MultipartReader()
	if err != nil {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "MULTIPART_REQUIRED",
			"send multipart/form-data with a `metadata` part (optional) and a `file` part", nil, 0)
		return
	}
	md := &mediav1.UploadMetadata{}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "FILE_PART_REQUIRED", "the form has no `file` part", nil, 0)
			return
		}
		if err != nil {
			m.bodyError(w, err)
			return
		}
		switch part.FormName() {
		case "metadata":
			b, err := io.ReadAll(io.LimitReader(part, metadataPartMax+1))
			if err != nil {
				m.bodyError(w, err)
				return
			}
			if len(b) > metadataPartMax {
				writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "METADATA_INVALID", "the `metadata` part is too large", nil, 0)
				return
			}
			if err := protojson.Unmarshal(b, md); err != nil {
				writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "METADATA_INVALID", "the `metadata` part is not UploadMetadata JSON: "+err.Error(), nil, 0)
				return
			}
		case "file":
			if md.GetFilename() == "" {
				md.Filename = part.FileName()
			}
			if md.GetPurpose() == mediav1.MediaPurpose_MEDIA_PURPOSE_UNSPECIFIED {
				md.Purpose = mediav1.MediaPurpose_MEDIA_PURPOSE_OTHER
			}
			if md.GetContentType() == "" {
				if ct, _, err := mime.ParseMediaType(part.Header.Get("Content-Type")); err == nil && ct != "application/octet-stream" {
					md.ContentType = ct
				}
			}
			m.send(w, r, md, part)
			return
		default:
			_, _ = io.Copy(io.Discard, part) // an unknown part is skipped
		}
	}
}

// bodyError answers a failure to read the request body.
func (m *mediaRoutes) bodyError(w http.ResponseWriter, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		m.tooLarge(w)
		return
	}
	writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "MULTIPART_INVALID", "the multipart body could not be read", nil, 0)
}

// send streams the file part to Upload and answers with its result.
func (m *mediaRoutes) send(w http.ResponseWriter, r *http.Request, md *mediav1.UploadMetadata, file io.Reader) {
	ctx, cancel := context.WithCancel(outgoing(r))
	defer cancel()
	stream, err := m.client.Upload(ctx)
	if err != nil {
		writeMediaError(w, r, err)
		return
	}
	if err := stream.Send(&mediav1.UploadRequest{Payload: &mediav1.UploadRequest_Metadata{Metadata: md}}); err != nil && !errors.Is(err, io.EOF) {
		writeMediaError(w, r, err)
		return
	}
	buf := make([]byte, uploadChunk)
	var total int64
	for {
		n, rerr := io.ReadFull(file, buf)
		if n > 0 {
			total += int64(n)
			if total > m.maxBytes {
				cancel() // the service stores nothing of a cancelled upload
				m.tooLarge(w)
				return
			}
			if err := stream.Send(&mediav1.UploadRequest{Payload: &mediav1.UploadRequest_Chunk{Chunk: buf[:n]}}); err != nil {
				break // io.EOF: the service ended the call; CloseAndRecv has its status
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			cancel()
			m.bodyError(w, rerr)
			return
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		writeMediaError(w, r, err)
		return
	}
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(resp.GetMedia())
	if err != nil {
		writeError(w, http.StatusInternalServerError, "INTERNAL", "", "internal error", nil, 0)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", "/v1/media/"+resp.GetMedia().GetId())
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(b)
}

func (m *mediaRoutes) content(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithCancel(outgoing(r))
	defer cancel()
	req := &mediav1.ReadContentRequest{MediaId: r.PathValue("media_id")}
	switch r.URL.Query().Get("thumbnail") {
	case "true", "1":
		req.Thumbnail = true
	}
	stream, head, err := m.open(ctx, req)
	if err != nil {
		writeMediaError(w, r, err)
		return
	}
	etag := `"` + head.GetSha256() + `"`
	size := head.GetSizeBytes()
	h := w.Header()
	h.Set("ETag", etag)
	h.Set("Accept-Ranges", "bytes")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	code := http.StatusOK
	if rg := r.Header.Get("Range"); rg != "" && ifRangeHolds(r.Header.Get("If-Range"), etag) {
		off, n, ok, satisfiable := parseRange(rg, size)
		switch {
		case ok && !satisfiable:
			h.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
			writeError(w, http.StatusRequestedRangeNotSatisfiable, "OUT_OF_RANGE", "RANGE_NOT_SATISFIABLE",
				fmt.Sprintf("the range is outside the %d bytes of the content", size), nil, 0)
			return
		case ok && (off != 0 || n != size):
			cancel()
			ctx, cancel = context.WithCancel(outgoing(r))
			defer cancel()
			req.Offset, req.Length = off, n
			if stream, head, err = m.open(ctx, req); err != nil {
				writeMediaError(w, r, err)
				return
			}
			if head.GetSha256() != etag[1:len(etag)-1] {
				writeError(w, http.StatusConflict, "ABORTED", "CONTENT_CHANGED", "the content changed while it was read; retry", nil, 0)
				return
			}
			code = http.StatusPartialContent
			h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, off+n-1, size))
		}
	}
	h.Set("Content-Type", head.GetContentType())
	h.Set("Content-Length", strconv.FormatInt(head.GetLength(), 10))
	w.WriteHeader(code)
	if r.Method == http.MethodHead {
		return
	}
	if len(head.GetData()) > 0 {
		if _, err := w.Write(head.GetData()); err != nil {
			return
		}
	}
	for {
		msg, err := stream.Recv()
		if err != nil {
			return // io.EOF when done; otherwise the short body tells the client
		}
		if _, err := w.Write(msg.GetData()); err != nil {
			return
		}
	}
}

// open starts ReadContent and reads its first message.
func (m *mediaRoutes) open(ctx context.Context, req *mediav1.ReadContentRequest) (grpc.ServerStreamingClient[mediav1.ReadContentResponse], *mediav1.ReadContentResponse, error) {
	stream, err := m.client.ReadContent(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	head, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return nil, nil, status.Error(codes.Internal, "empty content stream")
	}
	if err != nil {
		return nil, nil, err
	}
	return stream, head, nil
}

// etagMatches reports whether an If-None-Match value names etag (weak
// comparison, as RFC 9110 asks for If-None-Match) or is "*".
func etagMatches(header, etag string) bool {
	for t := range strings.SplitSeq(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// ifRangeHolds reports whether a Range may be honoured under an If-Range value
// ("" always; otherwise it must be the strong etag).
func ifRangeHolds(ifRange, etag string) bool {
	return ifRange == "" || strings.TrimSpace(ifRange) == etag
}

// parseRange parses a single "bytes=" range against size. ok is false for a
// header to ignore (not bytes, several ranges, malformed: the whole content is
// served); satisfiable is false when the range lies outside the content (416).
func parseRange(header string, size int64) (off, n int64, ok, satisfiable bool) {
	spec, found := strings.CutPrefix(strings.TrimSpace(header), "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false, false
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false, false
	}
	if first == "" { // suffix: the last N bytes
		k, err := strconv.ParseInt(last, 10, 64)
		if err != nil || k < 0 {
			return 0, 0, false, false
		}
		if k == 0 {
			return 0, 0, true, false
		}
		k = min(k, size)
		return size - k, k, true, true
	}
	a, err := strconv.ParseInt(first, 10, 64)
	if err != nil || a < 0 {
		return 0, 0, false, false
	}
	end := size - 1
	if last != "" {
		b, err := strconv.ParseInt(last, 10, 64)
		if err != nil || b < a {
			return 0, 0, false, false
		}
		end = min(b, size-1)
	}
	if a >= size {
		return 0, 0, true, false
	}
	return a, end - a + 1, true, true
}
