package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"time"

	_ "golang.org/x/image/webp" // registers WebP with image.Decode / DecodeConfig

	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/auth"
)

// Content types the service accepts, sniffed from the bytes.
const (
	TypePNG  = "image/png"
	TypeJPEG = "image/jpeg"
	TypeWebP = "image/webp"
	TypeMP3  = "audio/mpeg"
	TypeWAV  = "audio/wav"
	TypeOGG  = "audio/ogg"
)

// SniffLen is how many leading bytes [Sniff] needs to decide (fewer is fine
// for a shorter file).
const SniffLen = 16

// Sniff returns the content type of a file from its first bytes, or "" when
// it is none of the accepted types. The file name and the declared type are
// never consulted.
func Sniff(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte("\x89PNG\r\n\x1a\n")):
		return TypePNG
	case bytes.HasPrefix(head, []byte{0xFF, 0xD8, 0xFF}):
		return TypeJPEG
	case len(head) >= 12 && string(head[:4]) == "RIFF" && string(head[8:12]) == "WEBP":
		return TypeWebP
	case len(head) >= 12 && string(head[:4]) == "RIFF" && string(head[8:12]) == "WAVE":
		return TypeWAV
	case bytes.HasPrefix(head, []byte("OggS")):
		return TypeOGG
	case bytes.HasPrefix(head, []byte("ID3")):
		return TypeMP3
	case isMP3Frame(head):
		return TypeMP3
	}
	return ""
}

// isMP3Frame reports whether head starts with an MPEG audio Layer III frame
// header: 11 sync bits, a defined version, layer III, a usable bitrate and
// sample rate index.
func isMP3Frame(head []byte) bool {
	if len(head) < 4 || head[0] != 0xFF || head[1]&0xE0 != 0xE0 {
		return false
	}
	version := (head[1] >> 3) & 0x03 // 01 is reserved
	layer := (head[1] >> 1) & 0x03   // 01 is layer III
	bitrate := head[2] >> 4          // 1111 is invalid
	rate := (head[2] >> 2) & 0x03    // 11 is reserved
	return version != 1 && layer == 1 && bitrate != 0x0F && rate != 0x03
}

// IsImage reports whether ct is one of the accepted image types.
func IsImage(ct string) bool { return ct == TypePNG || ct == TypeJPEG || ct == TypeWebP }

// IsAudio reports whether ct is one of the accepted audio types.
func IsAudio(ct string) bool { return ct == TypeMP3 || ct == TypeWAV || ct == TypeOGG }

// Purpose is what an item is for; stored as its name.
type Purpose string

// Purposes.
const (
	PurposeAvatar      Purpose = "avatar"
	PurposeLessonAudio Purpose = "lesson_audio"
	PurposeLessonImage Purpose = "lesson_image"
	PurposeOther       Purpose = "other"
)

// Visibility is who may read an item; stored as its name.
type Visibility string

// Visibilities.
const (
	Public  Visibility = "public"
	Private Visibility = "private"
)

// DefaultVisibility is the visibility of an upload that names none: public for
// avatars and lesson media, private otherwise.
func DefaultVisibility(p Purpose) Visibility {
	switch p {
	case PurposeAvatar, PurposeLessonAudio, PurposeLessonImage:
		return Public
	}
	return Private
}

// CheckUploader refuses lesson purposes to callers who are not teachers or
// admins.
func CheckUploader(p Purpose, role string) error {
	if (p == PurposeLessonAudio || p == PurposeLessonImage) && role != auth.RoleTeacher && role != auth.RoleAdmin {
		return apperr.Forbidden("LESSON_MEDIA_FORBIDDEN", "only teachers and admins upload lesson media")
	}
	return nil
}

// CheckPurposeType refuses content that does not fit its purpose: avatars and
// lesson images must be images, lesson audio must be audio.
func CheckPurposeType(p Purpose, ct string) error {
	switch {
	case (p == PurposeAvatar || p == PurposeLessonImage) && !IsImage(ct):
		return apperr.Invalid("purpose", "MEDIA_PURPOSE_MISMATCH", fmt.Sprintf("a %s must be an image (PNG, JPEG or WebP), not %s", p, ct))
	case p == PurposeLessonAudio && !IsAudio(ct):
		return apperr.Invalid("purpose", "MEDIA_PURPOSE_MISMATCH", fmt.Sprintf("lesson audio must be MP3, WAV or OGG, not %s", ct))
	}
	return nil
}

// Item is a stored media item's metadata.
type Item struct {
	ID          string
	OwnerID     string
	Filename    string
	SHA256      string // lowercase hex: the blob's key
	ContentType string
	Size        int64
	Purpose     Purpose
	Visibility  Visibility
	Width       int
	Height      int
	DurationMS  int64
	ThumbSHA256 string // the thumbnail's blob key; "" when there is none
	ThumbSize   int64
	ThumbType   string // content type of the thumbnail
	CreatedAt   time.Time
	ProcessedAt *time.Time
}

// HasThumbnail reports whether the item has a thumbnail.
func (it Item) HasThumbnail() bool { return it.ThumbSHA256 != "" }

// errItemNotFound is what a missing item, and another user's private item,
// look like.
func errItemNotFound(id string) error {
	return apperr.NotFound("MEDIA_NOT_FOUND", fmt.Sprintf("media %s not found", id))
}

// CanRead reports whether the caller (ok false: anonymous) may read it: a public
// item anyone, a private one its owner and admins.
func (it Item) CanRead(c auth.Claims, ok bool) bool {
	if it.Visibility == Public {
		return true
	}
	return ok && (c.UserID == it.OwnerID || c.Role == auth.RoleAdmin)
}

// ClampRange resolves a read of length bytes at offset (length 0: to the end) of
// content of size bytes: an offset at or past the end is refused; a length past
// the end stops at the end.
func ClampRange(size, offset, length int64) (int64, int64, error) {
	if offset < 0 || length < 0 {
		return 0, 0, apperr.Invalid("offset", "RANGE_INVALID", "offset and length must not be negative")
	}
	if offset >= size {
		return 0, 0, errRangeNotSatisfiable(offset, size)
	}
	if length == 0 || length > size-offset {
		length = size - offset
	}
	return offset, length, nil
}

// Metadata is what processing learns about the content.
type Metadata struct {
	Width, Height int
	DurationMS    int64
}

// maxDecodePixels bounds the images decoded for a thumbnail (a small file can
// declare a huge canvas); larger ones keep their dimensions but get no
// thumbnail.
const maxDecodePixels = 40_000_000

// ThumbMax is the longest side of a thumbnail, in pixels.
const ThumbMax = 256

// ImageConfig reads an image's dimensions without decoding its pixels.
func ImageConfig(r io.Reader) (int, int, error) {
	cfg, _, err := image.DecodeConfig(r)
	if err != nil {
		return 0, 0, err
	}
	return cfg.Width, cfg.Height, nil
}

// Thumbnail decodes the image in r (of type ct) and returns a thumbnail whose
// longest side is at most [ThumbMax] pixels, PNG for PNG and WebP sources (they
// may be transparent), JPEG for JPEG, and its content type.
func Thumbnail(r io.Reader, ct string) ([]byte, string, error) {
	src, _, err := image.Decode(r)
	if err != nil {
		return nil, "", fmt.Errorf("decode image: %w", err)
	}
	dst := Scale(src, ThumbMax)
	var buf bytes.Buffer
	if ct == TypeJPEG {
		if err := jpeg.Encode(&buf, dst, &jpeg.Options{Quality: 80}); err != nil {
			return nil, "", err
		}
		return buf.Bytes(), TypeJPEG, nil
	}
	if err := png.Encode(&buf, dst); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), TypePNG, nil
}

// ThumbSize is the size of the thumbnail of a w×h image: the longest side
// shrunk to max (never enlarged), the aspect ratio kept, at least 1 pixel.
func ThumbSize(w, h, limit int) (int, int) {
	if w <= limit && h <= limit {
		return w, h
	}
	if w >= h {
		return limit, max(1, h*limit/w)
	}
	return max(1, w*limit/h), limit
}

// Scale returns src shrunk so that its longest side is at most limit pixels, by
// averaging up to 4×4 evenly spread source pixels per destination pixel (a
// box filter with a bounded cost).
func Scale(src image.Image, limit int) *image.NRGBA {
	b := src.Bounds()
	w, h := ThumbSize(b.Dx(), b.Dy(), limit)
	dst := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		y0, y1 := b.Min.Y+y*b.Dy()/h, b.Min.Y+(y+1)*b.Dy()/h
		for x := range w {
			x0, x1 := b.Min.X+x*b.Dx()/w, b.Min.X+(x+1)*b.Dx()/w
			var r, g, bl, a, n uint64
			for _, sy := range samples(y0, y1) {
				for _, sx := range samples(x0, x1) {
					cr, cg, cb, ca := src.At(sx, sy).RGBA()
					r, g, bl, a, n = r+uint64(cr), g+uint64(cg), bl+uint64(cb), a+uint64(ca), n+1
				}
			}
			// Average premultiplied values, then un-premultiply for NRGBA.
			c := color.RGBA64{R: uint16(r / n), G: uint16(g / n), B: uint16(bl / n), A: uint16(a / n)}
			dst.Set(x, y, c)
		}
	}
	return dst
}

// samples returns up to 4 evenly spread coordinates in [lo, hi) (lo alone when
// the span is empty).
func samples(lo, hi int) []int {
	span := hi - lo
	if span <= 1 {
		return []int{lo}
	}
	n := min(span, 4)
	out := make([]int, n)
	for i := range n {
		out[i] = lo + (2*i+1)*span/(2*n)
	}
	return out
}

var errNotWAV = errors.New("not a WAV file")

// WAVDuration reads the duration of a RIFF/WAVE file of size bytes from its
// "fmt " and "data" chunks. A data chunk that claims more than the file holds
// (a streamed header) counts only the bytes present.
func WAVDuration(r io.ReaderAt, size int64) (time.Duration, error) {
	var hdr [12]byte
	if _, err := r.ReadAt(hdr[:], 0); err != nil || string(hdr[:4]) != "RIFF" || string(hdr[8:12]) != "WAVE" {
		return 0, errNotWAV
	}
	var byteRate uint32
	for off := int64(12); off+8 <= size; {
		var ch [8]byte
		if _, err := r.ReadAt(ch[:], off); err != nil {
			return 0, err
		}
		id, n := string(ch[:4]), int64(binary.LittleEndian.Uint32(ch[4:8]))
		body := off + 8
		switch id {
		case "fmt ":
			var f [16]byte
			if n < 16 {
				return 0, fmt.Errorf("wav: fmt chunk of %d bytes", n)
			}
			if _, err := r.ReadAt(f[:], body); err != nil {
				return 0, err
			}
			byteRate = binary.LittleEndian.Uint32(f[8:12])
		case "data":
			if byteRate == 0 {
				return 0, errors.New("wav: data before a usable fmt chunk")
			}
			n = min(n, size-body)
			return time.Duration(n) * time.Second / time.Duration(byteRate), nil
		}
		off = body + n + n%2 // chunks are padded to an even size
	}
	return 0, errors.New("wav: no data chunk")
}
