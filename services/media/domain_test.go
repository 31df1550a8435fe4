package media

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"testing"
	"time"

	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/auth"
)

// pngBytes encodes a w×h gradient as PNG.
func pngBytes(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.NRGBA{R: uint8(x), G: uint8(y), B: 200, A: 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// jpegBytes encodes a w×h image as JPEG.
func jpegBytes(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{R: uint8(x * 3), G: 80, B: uint8(y), A: 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// wavBytes builds a PCM WAV: 16-bit mono at rate Hz holding ms milliseconds of
// silence, with a LIST chunk before "data" to exercise the chunk walk.
func wavBytes(rate, ms int) []byte {
	data := make([]byte, rate*2*ms/1000)
	var b bytes.Buffer
	le := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) }
	b.WriteString("RIFF")
	le(uint32(4 + 8 + 16 + 8 + 4 + 8 + len(data)))
	b.WriteString("WAVE")
	b.WriteString("fmt ")
	le(uint32(16))
	le(uint16(1))        // PCM
	le(uint16(1))        // mono
	le(uint32(rate))     // sample rate
	le(uint32(rate * 2)) // byte rate
	le(uint16(2))        // block align
	le(uint16(16))       // bits per sample
	b.WriteString("LIST")
	le(uint32(3)) // odd size: padded to 4
	b.WriteString("abc\x00")
	b.WriteString("data")
	le(uint32(len(data)))
	b.Write(data)
	return b.Bytes()
}

// mp3Bytes is an ID3v2 tag followed by one MPEG-1 Layer III frame header.
func mp3Bytes() []byte {
	return append([]byte("ID3\x04\x00\x00\x00\x00\x00\x00"), 0xFF, 0xFB, 0x90, 0x64, 0, 0, 0, 0, 0, 0, 0, 0)
}

func oggBytes() []byte { return append([]byte("OggS\x00\x02"), make([]byte, 30)...) }

func webpHeader() []byte { return []byte("RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x00") }

// webpBytes is a complete 1×1 lossless WebP (VP8L).
func webpBytes() []byte {
	return []byte("RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00")
}

// webpHeaderOf is a VP8L header declaring a w×h image (its pixels are not
// there: enough for DecodeConfig only).
func webpHeaderOf(w, h int) []byte {
	b := webpBytes()
	bits := uint32(w-1) | uint32(h-1)<<14 | 1<<28
	binary.LittleEndian.PutUint32(b[21:25], bits)
	return b
}

func TestSniff(t *testing.T) {
	tests := []struct {
		name string
		head []byte
		want string
	}{
		{"png", pngBytes(t, 3, 2), TypePNG},
		{"jpeg", jpegBytes(t, 3, 2), TypeJPEG},
		{"webp", webpHeader(), TypeWebP},
		{"webp lossless", webpBytes(), TypeWebP},
		{"wav", wavBytes(8000, 10), TypeWAV},
		{"mp3 with ID3", mp3Bytes(), TypeMP3},
		{"mp3 frame sync", []byte{0xFF, 0xFB, 0x90, 0x64, 0, 0}, TypeMP3},
		{"ogg", oggBytes(), TypeOGG},
		{"shell script named x.png", []byte("#!/bin/sh\nrm -rf /\n"), ""},
		{"html", []byte("<html><body>hi</body></html>"), ""},
		{"zip", []byte("PK\x03\x04\x14\x00\x00\x00"), ""},
		{"riff avi", []byte("RIFF\x24\x00\x00\x00AVI LIST"), ""},
		{"aac adts (layer 0) is not mp3", []byte{0xFF, 0xF1, 0x50, 0x80, 0, 0}, ""},
		{"reserved mpeg version", []byte{0xFF, 0xEB, 0x90, 0x64}, ""},
		{"empty", nil, ""},
		{"truncated png magic", []byte("\x89PN"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			head := tt.head[:min(len(tt.head), SniffLen)]
			if got := Sniff(head); got != tt.want {
				t.Fatalf("Sniff(% x) = %q, want %q", head, got, tt.want)
			}
		})
	}
}

func TestImageConfigAndThumbnail(t *testing.T) {
	for _, tt := range []struct {
		name         string
		data         []byte
		ct           string
		w, h         int
		thumbW, thmH int
		thumbType    string
	}{
		{"wide png", pngBytes(t, 600, 300), TypePNG, 600, 300, 256, 128, TypePNG},
		{"tall jpeg", jpegBytes(t, 100, 400), TypeJPEG, 100, 400, 64, 256, TypeJPEG},
		{"small png kept", pngBytes(t, 40, 30), TypePNG, 40, 30, 40, 30, TypePNG},
		{"webp", webpBytes(), TypeWebP, 1, 1, 1, 1, TypePNG},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w, h, err := ImageConfig(bytes.NewReader(tt.data))
			if err != nil || w != tt.w || h != tt.h {
				t.Fatalf("ImageConfig = %d×%d, %v; want %d×%d", w, h, err, tt.w, tt.h)
			}
			thumb, ct, err := Thumbnail(bytes.NewReader(tt.data), tt.ct)
			if err != nil || ct != tt.thumbType {
				t.Fatalf("Thumbnail: %q %v", ct, err)
			}
			cfg, format, err := image.DecodeConfig(bytes.NewReader(thumb))
			if err != nil || cfg.Width != tt.thumbW || cfg.Height != tt.thmH || "image/"+format != ct {
				t.Fatalf("thumbnail is %s %d×%d (%v), want %d×%d", format, cfg.Width, cfg.Height, err, tt.thumbW, tt.thmH)
			}
		})
	}
	if w, h, err := ImageConfig(bytes.NewReader(webpHeaderOf(300, 200))); err != nil || w != 300 || h != 200 {
		t.Fatalf("webp config %d×%d %v", w, h, err)
	}
	// Scaling keeps the colour of a flat image.
	flat := image.NewRGBA(image.Rect(0, 0, 1000, 10))
	for i := range flat.Pix {
		flat.Pix[i] = []byte{10, 100, 200, 255}[i%4]
	}
	if c := Scale(flat, 256).NRGBAAt(100, 1); c != (color.NRGBA{10, 100, 200, 255}) {
		t.Fatalf("scaled colour %v", c)
	}
}

func TestThumbSize(t *testing.T) {
	for _, tt := range []struct{ w, h, ww, wh int }{
		{256, 256, 256, 256}, {512, 256, 256, 128}, {256, 512, 128, 256}, {10000, 1, 256, 1}, {1, 10000, 1, 256}, {3, 2, 3, 2},
	} {
		if w, h := ThumbSize(tt.w, tt.h, 256); w != tt.ww || h != tt.wh {
			t.Errorf("ThumbSize(%d, %d) = %d×%d, want %d×%d", tt.w, tt.h, w, h, tt.ww, tt.wh)
		}
	}
}

func TestWAVDuration(t *testing.T) {
	b := wavBytes(8000, 1500)
	d, err := WAVDuration(bytes.NewReader(b), int64(len(b)))
	if err != nil || d != 1500*time.Millisecond {
		t.Fatalf("duration %v %v, want 1.5s", d, err)
	}
	// A streamed header claiming more data than present counts what is there.
	trunc := b[:len(b)-8000]
	if d, err := WAVDuration(bytes.NewReader(trunc), int64(len(trunc))); err != nil || d != 1000*time.Millisecond {
		t.Fatalf("truncated: %v %v", d, err)
	}
	if _, err := WAVDuration(bytes.NewReader(oggBytes()), int64(len(oggBytes()))); err == nil {
		t.Fatal("ogg read as wav")
	}
}

func TestVisibilityRules(t *testing.T) {
	for p, want := range map[Purpose]Visibility{PurposeAvatar: Public, PurposeLessonAudio: Public, PurposeLessonImage: Public, PurposeOther: Private} {
		if got := DefaultVisibility(p); got != want {
			t.Errorf("DefaultVisibility(%s) = %s", p, got)
		}
	}
	priv := Item{OwnerID: "a", Visibility: Private}
	if !priv.CanRead(auth.Claims{UserID: "a"}, true) || priv.CanRead(auth.Claims{UserID: "b"}, true) || priv.CanRead(auth.Claims{}, false) ||
		!priv.CanRead(auth.Claims{UserID: "c", Role: auth.RoleAdmin}, true) {
		t.Error("private item read rules")
	}
	if !(Item{Visibility: Public}).CanRead(auth.Claims{}, false) {
		t.Error("public item unreadable anonymously")
	}
	if apperr.KindOf(CheckUploader(PurposeLessonAudio, auth.RoleLearner)) != apperr.KindForbidden || CheckUploader(PurposeLessonAudio, auth.RoleTeacher) != nil ||
		CheckUploader(PurposeAvatar, auth.RoleLearner) != nil {
		t.Error("uploader rules")
	}
	if CheckPurposeType(PurposeAvatar, TypeMP3) == nil || CheckPurposeType(PurposeAvatar, TypeWebP) != nil ||
		CheckPurposeType(PurposeLessonAudio, TypePNG) == nil || CheckPurposeType(PurposeOther, TypeOGG) != nil {
		t.Error("purpose/type rules")
	}
}

func TestClampRange(t *testing.T) {
	for _, tt := range []struct{ size, off, n, wo, wn int64 }{
		{10, 0, 0, 0, 10}, {10, 3, 0, 3, 7}, {10, 3, 4, 3, 4}, {10, 9, 100, 9, 1},
	} {
		o, n, err := ClampRange(tt.size, tt.off, tt.n)
		if err != nil || o != tt.wo || n != tt.wn {
			t.Errorf("ClampRange(%d,%d,%d) = %d,%d,%v", tt.size, tt.off, tt.n, o, n, err)
		}
	}
	if _, _, err := ClampRange(10, 10, 0); err == nil {
		t.Error("offset at the end accepted")
	}
}
